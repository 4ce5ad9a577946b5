// The lazy, bounded map behind Executor::map and friends: pulls input a little ahead of
// the consumer, keeps at most `window` units (tasks or chunks) in flight, yields results
// in input order, and cancels whatever is still pending when it is dropped.
#pragma once

#include <cstddef>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "concur/future.hpp"

namespace concur {

// Options of map(): pass any of concur::timeout(d), concur::chunksize(n),
// concur::buffersize(n) after the ranges, like Python's keyword arguments.
struct MapOptions {
  std::optional<std::chrono::steady_clock::duration> timeout;  // from the call, for all results
  std::size_t chunksize = 0;   // items per message (process pools); 0 = the default, 1
  std::size_t buffersize = 0;  // results computed ahead of the consumer; 0 = executor's choice
};

// map(..., concur::timeout(2s)): TimeoutError when a result is not ready by then.
template <class Rep, class Period>
MapOptions timeout(std::chrono::duration<Rep, Period> d) {
  using D = std::chrono::steady_clock::duration;
  MapOptions o;
  // Saturate rather than overflow (hours::max() in nanoseconds wraps to a negative count,
  // i.e. "already expired"): too long to represent means no limit, and deadline_after()
  // turns D::max() into a deadline that never comes.
  if (std::chrono::duration<double>(d) >= std::chrono::duration<double>(D::max()))
    o.timeout = D::max();
  else if (d <= d.zero())
    o.timeout = D::zero();
  else
    o.timeout = std::chrono::ceil<D>(d);
  return o;
}
// map(..., concur::chunksize(256)): items sent together to a worker process.
inline MapOptions chunksize(std::size_t n) {
  if (n < 1) throw std::invalid_argument("chunksize must be >= 1");
  MapOptions o;
  o.chunksize = n;
  return o;
}
// map(..., concur::buffersize(n)): at most n results computed ahead of the consumer.
inline MapOptions buffersize(std::size_t n) {
  if (n < 1) throw std::invalid_argument("buffersize must be >= 1");
  MapOptions o;
  o.buffersize = n;
  return o;
}

namespace detail {

inline MapOptions merge(MapOptions a, const MapOptions& b) {
  if (b.timeout) a.timeout = b.timeout;
  if (b.chunksize) a.chunksize = b.chunksize;
  if (b.buffersize) a.buffersize = b.buffersize;
  return a;
}

template <class T>
inline constexpr bool is_map_option_v = std::is_same_v<std::remove_cvref_t<T>, MapOptions>;

// map of a void function yields std::monostate (Python yields None).
template <class R>
using map_value_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

// Splits map(fn, ranges..., options...) into the ranges and the merged options, then calls
// k(options, ranges...).
template <class K, class... Xs>
decltype(auto) split_map_args(K&& k, Xs&&... xs) {
  constexpr std::size_t n = sizeof...(Xs);
  constexpr std::size_t n_opts = (std::size_t{0} + ... + (is_map_option_v<Xs> ? 1 : 0));
  constexpr std::size_t n_ranges = n - n_opts;
  static_assert(n_ranges >= 1, "map() needs at least one input range");
  auto all = std::forward_as_tuple(std::forward<Xs>(xs)...);
  return [&]<std::size_t... I, std::size_t... J>(std::index_sequence<I...>,
                                                 std::index_sequence<J...>) -> decltype(auto) {
    static_assert((!is_map_option_v<std::tuple_element_t<I, std::tuple<Xs...>>> && ...),
                  "map(): options (concur::timeout, chunksize, buffersize) go after the ranges");
    static_assert((std::ranges::input_range<std::tuple_element_t<I, std::tuple<Xs...>>> && ...),
                  "map(): every argument before the options must be an input range");
    MapOptions opts;
    ((opts = merge(opts, std::get<n_ranges + J>(all))), ...);
    return std::forward<K>(k)(opts, std::get<I>(std::move(all))...);
  }(std::make_index_sequence<n_ranges>{}, std::make_index_sequence<n_opts>{});
}

// Walks several ranges in step (stops at the shortest), producing argument tuples.
template <class... Views>
class Zip {
 public:
  using Tuple = std::tuple<std::ranges::range_value_t<Views>...>;

  explicit Zip(Views... views) : views_(std::move(views)...) {
    its_ = std::apply([](auto&... v) { return std::make_tuple(std::ranges::begin(v)...); },
                      views_);
  }
  Zip(const Zip&) = delete;

  std::optional<Tuple> next() {
    if (exhausted()) return std::nullopt;
    auto out = std::apply([](auto&... it) { return Tuple(*it...); }, its_);
    std::apply([](auto&... it) { (++it, ...); }, its_);
    return out;
  }

  // Total items left, when every range knows its size (for default chunk sizes).
  std::optional<std::size_t> size_hint() {
    if constexpr ((std::ranges::sized_range<Views> && ...)) {
      std::size_t n = SIZE_MAX;
      std::apply([&](auto&... v) { ((n = std::min<std::size_t>(n, std::ranges::size(v))), ...); },
                 views_);
      return n;
    } else {
      return std::nullopt;
    }
  }

 private:
  bool exhausted() {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return ((std::get<I>(its_) == std::ranges::end(std::get<I>(views_))) || ...);
    }(std::index_sequence_for<Views...>{});
  }

  std::tuple<Views...> views_;
  std::tuple<std::ranges::iterator_t<Views>...> its_;
};

// Keeps a map() input alive while the lazy map walks it: a reference to an lvalue range,
// the range itself (moved in) for an rvalue. (std::views::all would do, but clang 14 cannot
// instantiate libstdc++ 12's views.)
template <class R>
class RangeHold {
 public:
  explicit RangeHold(R& r) noexcept : r_(&r) {}
  auto begin() const { return std::ranges::begin(*r_); }
  auto end() const { return std::ranges::end(*r_); }
  auto size() const
    requires std::ranges::sized_range<R>
  {
    return std::ranges::size(*r_);
  }

 private:
  R* r_;
};
template <class R>
class RangeOwn {
 public:
  explicit RangeOwn(R&& r) : r_(std::move(r)) {}
  auto begin() { return std::ranges::begin(r_); }
  auto end() { return std::ranges::end(r_); }
  auto size()
    requires std::ranges::sized_range<R>
  {
    return std::ranges::size(r_);
  }

 private:
  R r_;
};
template <class R>
auto hold_range(R&& r) {
  if constexpr (std::is_lvalue_reference_v<R>)
    return RangeHold<std::remove_reference_t<R>>(r);
  else
    return RangeOwn<R>(std::move(r));
}

template <class... Rs>
auto make_zip(Rs&&... rs) {
  return std::make_unique<Zip<decltype(hold_range(std::forward<Rs>(rs)))...>>(
      hold_range(std::forward<Rs>(rs))...);
}

// Lazily produces results. Submit is called with a batch of argument tuples and returns
// one unit per tuple (chunked == false: Future<R>) or one unit for the whole batch
// (chunked == true: Future<std::vector<R>>).
template <class R, class ZipT, class Submit, bool Chunked>
class MapEngine {
  using V = map_value_t<R>;
  using Unit = std::conditional_t<Chunked, Future<std::vector<V>>, Future<R>>;
  using Tuple = typename ZipT::Tuple;

 public:
  MapEngine(std::unique_ptr<ZipT> zip, Submit submit, std::size_t chunk, std::size_t window,
            Deadline deadline)
      : zip_(std::move(zip)),
        submit_(std::move(submit)),
        chunk_(Chunked ? chunk : 1),
        window_(window ? window : 1),
        deadline_(deadline) {
    refill(/*defer_submit_errors=*/false);  // work starts at the call, as in Python
  }
  MapEngine(const MapEngine&) = delete;
  ~MapEngine() {
    for (auto& u : inflight_) u.cancel();
  }

  // The next result, or nullopt at the end. Rethrows the element's exception, then ends.
  std::optional<V> next() {
    if (finished_) return std::nullopt;
    try {
      if constexpr (Chunked) {
        while (pos_ >= chunk_values_.size()) {
          chunk_values_.clear();
          pos_ = 0;
          if (!take_front([&](Unit& u) { chunk_values_ = std::move(u.state()->mutable_value()); }))
            return std::nullopt;
        }
        return std::move(chunk_values_[pos_++]);
      } else {
        std::optional<V> out;
        if (!take_front([&](Unit& u) {
              if constexpr (std::is_void_v<R>) out.emplace();
              else out.emplace(std::move(u.state()->mutable_value()));
            }))
          return std::nullopt;
        return out;
      }
    } catch (...) {
      finish();
      throw;
    }
  }

 private:
  // Waits for the oldest unit and hands it to `use`; false at the end of input.
  template <class Use>
  bool take_front(Use&& use) {
    if (inflight_.empty()) refill();
    if (inflight_.empty()) {
      finished_ = true;
      if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
      return false;
    }
    Unit u = std::move(inflight_.front());
    inflight_.pop_front();
    if (!u.state()->wait(deadline_)) {
      inflight_.push_front(std::move(u));
      throw TimeoutError("map(): result not ready before the timeout");
    }
    if (u.cancelled()) throw CancelledError();
    if (auto& e = u.state()->stored_exception()) std::rethrow_exception(e);
    use(u);
    // Top up in batches (when half the window has drained) so that handing work over
    // costs one queue operation and at most one wake-up per batch, not per item.
    if (inflight_.size() <= window_ / 2) refill();
    return true;
  }

  // Tops the pipeline up to the window. An exception from the input is kept until the
  // results before it have been yielded; so is one from submitting (e.g. ShutdownError
  // once the executor is shut down), except at the call, where map() itself raises it.
  void refill(bool defer_submit_errors = true) {
    if (input_done_) return;
    std::size_t room = window_ > inflight_.size() ? window_ - inflight_.size() : 0;
    if (room == 0) return;
    std::vector<Tuple> batch;
    std::size_t want = room * chunk_;
    batch.reserve(std::min<std::size_t>(want, 1024));
    try {
      while (batch.size() < want) {
        auto t = zip_->next();
        if (!t) {
          input_done_ = true;
          break;
        }
        batch.push_back(std::move(*t));
      }
    } catch (...) {
      input_done_ = true;
      input_error_ = std::current_exception();
    }
    if (batch.empty()) return;
    try {
      if constexpr (Chunked) {
        std::vector<std::vector<Tuple>> chunks;
        for (std::size_t i = 0; i < batch.size(); i += chunk_) {
          auto end = std::min(batch.size(), i + chunk_);
          chunks.emplace_back(
              std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i)),
              std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(end)));
        }
        for (auto& u : submit_(std::move(chunks))) inflight_.push_back(std::move(u));
      } else {
        for (auto& u : submit_(std::move(batch))) inflight_.push_back(std::move(u));
      }
    } catch (...) {
      // Thrown from take_front() it would discard the result just taken (and cancel the
      // finished ones behind it): report it where the first unsubmitted item would be.
      if (!defer_submit_errors) throw;
      input_done_ = true;
      input_error_ = std::current_exception();
    }
  }

  void finish() {
    finished_ = true;
    for (auto& u : inflight_) u.cancel();
    inflight_.clear();
  }

  std::unique_ptr<ZipT> zip_;
  Submit submit_;
  std::size_t chunk_;
  std::size_t window_;
  Deadline deadline_;
  std::deque<Unit> inflight_;
  std::vector<V> chunk_values_;
  std::size_t pos_ = 0;
  bool input_done_ = false;
  bool finished_ = false;
  std::exception_ptr input_error_;
};

}  // namespace detail

// The lazy range of results that map() returns; iterate it once. Dropping it cancels the
// work not yet started.
template <class V>
class MapResults {
 public:
  struct Source {
    virtual ~Source() = default;
    virtual std::optional<V> next() = 0;
  };

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = V;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    V& operator*() const noexcept { return *owner_->current_; }
    V* operator->() const noexcept { return &*owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      if (!owner_->current_) owner_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.owner_ == nullptr;
    }

   private:
    friend class MapResults;
    explicit iterator(MapResults* owner) : owner_(owner) {}
    MapResults* owner_ = nullptr;
  };

  explicit MapResults(std::unique_ptr<Source> source) : source_(std::move(source)) {}

  // Waits for the first result.
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return current_ ? iterator(this) : iterator();
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  // Collects every remaining result (Python's list(executor.map(...))).
  std::vector<V> to_vector() {
    std::vector<V> out;
    for (auto& v : *this) out.push_back(std::move(v));
    return out;
  }

 private:
  void advance() {
    current_.reset();
    try {
      current_ = source_->next();
    } catch (...) {
      // A failed step must leave the range at its end. g++ 12 -O2 was seen dropping the
      // reset() above as a dead store when next() throws (the landing pad reads current_),
      // so an element that raised left the previous result in place.
      current_.reset();
      throw;
    }
  }
  std::unique_ptr<Source> source_;
  std::optional<V> current_;
  bool started_ = false;
};

namespace detail {
template <class V, class Engine>
struct EngineSource final : MapResults<V>::Source {
  template <class... A>
  explicit EngineSource(A&&... a) : engine(std::forward<A>(a)...) {}
  std::optional<V> next() override { return engine.next(); }
  Engine engine;
};

// Builds the MapResults for fn over the zipped ranges. `submit_items(vector<tuple>)`
// returns vector<Future<R>>; `submit_chunks(vector<vector<tuple>>)` returns
// vector<Future<vector<V>>>, and is used when chunksize > 1.
template <class R, class SubmitItems, class SubmitChunks, class... Rs>
auto make_map_results(const MapOptions& opts, std::size_t window_items, SubmitItems submit_items,
                      SubmitChunks submit_chunks, Rs&&... ranges) {
  using V = map_value_t<R>;
  auto zip = make_zip(std::forward<Rs>(ranges)...);
  using ZipT = typename decltype(zip)::element_type;
  Deadline deadline;
  if (opts.timeout) deadline = deadline_after(*opts.timeout);
  std::size_t chunk = opts.chunksize ? opts.chunksize : 1;
  std::size_t window = opts.buffersize ? opts.buffersize : window_items;
  if (chunk > 1) {
    using Engine = MapEngine<R, ZipT, SubmitChunks, true>;
    std::size_t units = (window + chunk - 1) / chunk;
    return MapResults<V>(std::make_unique<EngineSource<V, Engine>>(
        std::move(zip), std::move(submit_chunks), chunk, units < 2 ? 2 : units, deadline));
  }
  using Engine = MapEngine<R, ZipT, SubmitItems, false>;
  return MapResults<V>(std::make_unique<EngineSource<V, Engine>>(
      std::move(zip), std::move(submit_items), 1, window, deadline));
}
}  // namespace detail

}  // namespace concur
