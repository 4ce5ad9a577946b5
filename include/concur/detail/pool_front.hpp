// The multiprocessing.Pool API (apply, map, imap, imap_unordered, starmap and their
// _async forms, close/terminate/join) written once over an executor, so that Pool (worker
// processes) and ThreadPool (threads) share one front end and differ only in the engine
// underneath. Only the executor's public submit() is used: chunks travel as one task
// calling detail::run_chunk, which the process engine ships as a single message.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/map.hpp"
#include "concur/errors.hpp"
#include "concur/future.hpp"

namespace concur {

// Python's multiprocessing.pool.AsyncResult: the pending result of apply_async/map_async.
template <class T>
class AsyncResult {
 public:
  explicit AsyncResult(Future<T> f) : future_(std::move(f)) {}

  // The result (rethrowing the task's exception); blocks until ready.
  decltype(auto) get() const { return future_.result(); }
  // As get(), but TimeoutError once `timeout` passes.
  template <class Rep, class Period>
  decltype(auto) get(std::chrono::duration<Rep, Period> timeout) const {
    return future_.result(timeout);
  }
  // Blocks until ready.
  void wait() const { future_.wait(); }
  // Blocks until ready or `timeout` passes; true if ready.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return future_.wait(timeout);
  }
  // Whether the call has completed.
  bool ready() const noexcept { return future_.done(); }
  // Whether it completed without an exception; std::logic_error if not ready (Python:
  // ValueError).
  bool successful() const {
    if (!ready()) throw std::logic_error("AsyncResult is not ready");
    return !future_.cancelled() && !future_.state()->stored_exception();
  }
  // The underlying future, for wait()/as_completed()/then()/co_await.
  const Future<T>& future() const noexcept { return future_; }

 private:
  Future<T> future_;
};

namespace detail {
template <class F>
struct CallbackTag {
  F fn;
};
template <class F>
struct ErrorCallbackTag {
  F fn;
};
}  // namespace detail

// apply_async(fn, args..., concur::callback(f)): f(result) runs when the call succeeds.
template <class F>
detail::CallbackTag<std::decay_t<F>> callback(F&& f) {
  return {std::forward<F>(f)};
}
// apply_async(fn, args..., concur::error_callback(f)): f(std::exception_ptr) on failure.
template <class F>
detail::ErrorCallbackTag<std::decay_t<F>> error_callback(F&& f) {
  return {std::forward<F>(f)};
}

namespace detail {

template <class T>
struct is_callback_tag : std::false_type {};
template <class F>
struct is_callback_tag<CallbackTag<F>> : std::true_type {};
template <class F>
struct is_callback_tag<ErrorCallbackTag<F>> : std::true_type {};
template <class T>
inline constexpr bool is_callback_tag_v = is_callback_tag<std::remove_cvref_t<T>>::value;

// Runs fn over a chunk of argument tuples in a worker; one task, one message.
template <class Fn, class Tuple>
auto run_chunk(Fn fn, std::vector<Tuple> items) {
  using R = decltype(std::apply(fn, std::move(items.front())));
  std::vector<map_value_t<R>> out;
  out.reserve(items.size());
  for (auto& t : items) {
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(t));
      out.emplace_back();
    } else {
      out.push_back(std::apply(fn, std::move(t)));
    }
  }
  return out;
}

// The future an AsyncResult watches: with callback/error_callback tags, one that completes
// only after the callbacks have run (Python's AsyncResult sets its event after calling
// them, so get() never returns before the callback has finished). The outcome moves from
// f, which nobody else holds.
template <class T, class... Tags>
Future<T> with_callbacks(Future<T> f, Tags&&... tags) {
  if constexpr (sizeof...(Tags) == 0) {
    return f;
  } else {
    Future<T> out;
    f.add_done_callback([out, ... fns = std::forward<Tags>(tags)](const Future<T>& done) mutable {
      auto* st = done.state();
      std::exception_ptr error;
      if (st->cancelled()) error = std::make_exception_ptr(CancelledError());
      else error = st->stored_exception();
      auto call = [&](auto& tag) {
        using Tag = std::remove_cvref_t<decltype(tag)>;
        try {
          if constexpr (std::is_same_v<Tag, CallbackTag<std::decay_t<decltype(tag.fn)>>>) {
            if (error) return;
            if constexpr (std::is_void_v<T>) tag.fn();
            else tag.fn(std::as_const(st->mutable_value()));
          } else {
            if (error) tag.fn(error);
          }
        } catch (...) {
          report_callback_exception(std::current_exception());
        }
      };
      (call(fns), ...);
      if (error) {
        out.state()->try_set_exception(error);
      } else if (out.state()->try_begin_complete()) {
        if constexpr (std::is_void_v<T>) out.state()->store_value();
        else out.state()->store_value(std::move(st->mutable_value()));
        out.state()->end_complete();
      }
    });
    return out;
  }
}

// Splits (args..., tags...) and calls k(tuple_of_args, tags...).
template <class K, class... Xs>
decltype(auto) split_callback_tags(K&& k, Xs&&... xs) {
  constexpr std::size_t n = sizeof...(Xs);
  constexpr std::size_t n_tags = (std::size_t{0} + ... + (is_callback_tag_v<Xs> ? 1 : 0));
  auto all = std::forward_as_tuple(std::forward<Xs>(xs)...);
  return [&]<std::size_t... I, std::size_t... J>(std::index_sequence<I...>,
                                                 std::index_sequence<J...>) -> decltype(auto) {
    static_assert((!is_callback_tag_v<std::tuple_element_t<I, std::tuple<Xs...>>> && ...),
                  "concur::callback / concur::error_callback go after the arguments");
    return std::forward<K>(k)(std::forward_as_tuple(std::get<I>(std::move(all))...),
                              std::get<n - n_tags + J>(std::move(all))...);
  }(std::make_index_sequence<n - n_tags>{}, std::make_index_sequence<n_tags>{});
}

// Completes a Future<std::vector<V>> from chunk futures, in order; the first failure wins.
template <class V>
Future<std::vector<V>> gather_chunks(std::vector<Future<std::vector<V>>> chunks) {
  Future<std::vector<V>> out;
  struct Shared {
    std::vector<std::vector<V>> parts;
    std::atomic<std::size_t> left;
    Future<std::vector<V>> out;
  };
  auto shared = std::make_shared<Shared>();
  shared->parts.resize(chunks.size());
  shared->left.store(chunks.size());
  shared->out = out;
  if (chunks.empty()) {
    out.set_result(std::vector<V>{});
    return out;
  }
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    chunks[i].add_done_callback([shared, i](const Future<std::vector<V>>& f) {
      auto* st = f.state();
      if (st->cancelled()) {
        shared->out.state()->try_set_exception(std::make_exception_ptr(CancelledError()));
      } else if (auto e = st->stored_exception()) {
        shared->out.state()->try_set_exception(e);
      } else {
        shared->parts[i] = std::move(f.state()->mutable_value());
      }
      if (shared->left.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
          shared->out.state()->try_begin_complete()) {
        std::vector<V> all;
        std::size_t total = 0;
        for (auto& p : shared->parts) total += p.size();
        all.reserve(total);
        for (auto& p : shared->parts)
          all.insert(all.end(), std::make_move_iterator(p.begin()), std::make_move_iterator(p.end()));
        shared->out.state()->store_value(std::move(all));
        shared->out.state()->end_complete();
      }
    });
  }
  return out;
}

// imap_unordered: chunks in flight (bounded), results in completion order.
template <class V, class Unit, class Next, class SubmitChunk>
class UnorderedEngine final : public MapResults<V>::Source {
 public:
  UnorderedEngine(Next next_chunk, SubmitChunk submit, std::size_t window)
      : next_chunk_(std::move(next_chunk)), submit_(std::move(submit)), window_(window),
        q_(std::make_shared<Queue>()) {
    refill();
  }
  ~UnorderedEngine() override {
    for (auto& u : inflight_) u.cancel();
  }

  std::optional<V> next() override {
    for (;;) {
      if (pos_ < current_.size()) return std::move(current_[pos_++]);
      if (finished_) return std::nullopt;
      current_.clear();
      pos_ = 0;
      if (inflight_.empty()) {
        finished_ = true;
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        return std::nullopt;
      }
      Unit done = q_->pop();
      std::erase(inflight_, done);
      refill();
      auto* st = done.state();
      if (st->cancelled() || st->stored_exception()) {
        finish();
        if (st->cancelled()) throw CancelledError();
        std::rethrow_exception(st->stored_exception());
      }
      current_ = std::move(st->mutable_value());
    }
  }

 private:
  struct Queue {
    std::mutex mu;
    std::deque<Unit> done;
    std::atomic<std::uint32_t> seq{0};
    void push(const Unit& u) {
      {
        std::lock_guard l(mu);
        done.push_back(u);
      }
      seq.fetch_add(1, std::memory_order_release);
      futex_wake(&seq);
    }
    Unit pop() {
      for (;;) {
        std::uint32_t seen = seq.load(std::memory_order_acquire);
        {
          std::lock_guard l(mu);
          if (!done.empty()) {
            Unit u = std::move(done.front());
            done.pop_front();
            return u;
          }
        }
        if (!spin_until([&] { return seq.load(std::memory_order_acquire) != seen; }))
          futex_wait(&seq, seen);
      }
    }
  };

  void refill() {
    while (!input_done_ && inflight_.size() < window_) {
      std::optional<Unit> u;
      try {
        u = next_chunk_(submit_);
      } catch (...) {
        input_error_ = std::current_exception();
        input_done_ = true;
        break;
      }
      if (!u) {
        input_done_ = true;
        break;
      }
      inflight_.push_back(*u);
      u->add_done_callback([q = q_](const Unit& f) { q->push(f); });
    }
  }

  void finish() {
    finished_ = true;
    for (auto& u : inflight_) u.cancel();
    inflight_.clear();
  }

  Next next_chunk_;
  SubmitChunk submit_;
  std::size_t window_;
  std::shared_ptr<Queue> q_;
  std::vector<Unit> inflight_;
  std::vector<V> current_;
  std::size_t pos_ = 0;
  bool input_done_ = false;
  bool finished_ = false;
  std::exception_ptr input_error_;
};

// Python's rule for a pool's size: unset means one per CPU; fewer than one is an error.
inline std::size_t resolve_processes(std::optional<int> n) {
  if (!n) return online_cpus();
  if (*n < 1) throw std::invalid_argument("Number of processes must be at least 1");
  return static_cast<std::size_t>(*n);
}

// The Pool API over an executor `Exec` with `processes` workers.
template <class Exec>
class PoolFront {
 public:
  // Calls fn(args...) in a worker and waits for the result.
  template <class F, class... Args>
  decltype(auto) apply(F&& fn, Args&&... args) {
    auto f = submit_checked(std::forward<F>(fn), std::forward<Args>(args)...);
    using R = typename decltype(f)::value_type;
    if constexpr (std::is_void_v<R>) f.result();
    else return R(f.result());
  }

  // Schedules fn(args...); optional trailing concur::callback(f) / concur::error_callback(f).
  template <class F, class... Xs>
  auto apply_async(F&& fn, Xs&&... args_then_callbacks) {
    return split_callback_tags(
        [&](auto&& args, auto&&... tags) {
          auto f = std::apply(
              [&](auto&&... a) {
                return submit_checked(std::forward<F>(fn), std::forward<decltype(a)>(a)...);
              },
              std::move(args));
          using T = typename decltype(f)::value_type;
          return AsyncResult<T>(with_callbacks(std::move(f), std::forward<decltype(tags)>(tags)...));
        },
        std::forward<Xs>(args_then_callbacks)...);
  }

  // fn over every element, results in order (blocks). chunksize 0: Python's default,
  // ceil(len / (4 * processes)), at most 65 536 items per chunk.
  template <class F, std::ranges::input_range R>
  auto map(F&& fn, R&& items, std::size_t chunksize = 0) {
    return map_async(std::forward<F>(fn), std::forward<R>(items), chunksize).get();
  }

  // As map, without blocking; optional trailing callbacks get the whole result vector.
  template <class F, std::ranges::input_range R, class... Tags>
  auto map_async(F&& fn, R&& items, std::size_t chunksize = 0, Tags&&... tags) {
    using Tuple = std::tuple<std::ranges::range_value_t<R>>;
    if constexpr (std::ranges::sized_range<R>) {
      // Chunks are cut straight from the input: no intermediate copy of it.
      auto feed = [&items](auto&& sink) {
        for (auto&& x : items) sink(Tuple(std::forward<decltype(x)>(x)));
      };
      return star_async<Tuple>(std::forward<F>(fn), std::ranges::size(items), feed, chunksize,
                               std::forward<Tags>(tags)...);
    } else {
      return star_async<Tuple>(std::forward<F>(fn), wrap_range(std::forward<R>(items)), chunksize,
                               std::forward<Tags>(tags)...);
    }
  }

  // fn(*args) for every tuple of arguments, results in order (blocks).
  template <class F, std::ranges::input_range R>
  auto starmap(F&& fn, R&& tuples, std::size_t chunksize = 0) {
    return starmap_async(std::forward<F>(fn), std::forward<R>(tuples), chunksize).get();
  }
  template <class F, std::ranges::input_range R, class... Tags>
  auto starmap_async(F&& fn, R&& tuples, std::size_t chunksize = 0, Tags&&... tags) {
    using Tuple = std::ranges::range_value_t<R>;
    std::vector<Tuple> all;
    for (auto&& t : tuples) all.emplace_back(std::forward<decltype(t)>(t));
    return star_async<Tuple>(std::forward<F>(fn), std::move(all), chunksize,
                             std::forward<Tags>(tags)...);
  }

  // Lazily yields fn(x) in input order; input is pulled a bounded distance ahead.
  template <class F, std::ranges::input_range R>
  auto imap(F&& fn, R&& items, std::size_t chunksize = 1) {
    check_running();
    using Fn = std::decay_t<F>;
    using Elem = std::ranges::range_value_t<R>;
    using Res = std::invoke_result_t<Fn, Elem>;
    using V = map_value_t<Res>;
    using Tuple = std::tuple<Elem>;
    Fn f(std::forward<F>(fn));
    auto submit_items = [this, f](std::vector<Tuple>&& tuples) {
      std::vector<Future<Res>> out;
      out.reserve(tuples.size());
      for (auto& t : tuples) out.push_back(exec().submit(f, std::move(std::get<0>(t))));
      return out;
    };
    auto submit_chunks = [this, f](std::vector<std::vector<Tuple>>&& chunks) {
      std::vector<Future<std::vector<V>>> out;
      for (auto& c : chunks) out.push_back(exec().submit(&run_chunk<Fn, Tuple>, f, std::move(c)));
      return out;
    };
    MapOptions opts;
    opts.chunksize = chunksize ? chunksize : 1;
    return make_map_results<Res>(opts, window_items(opts.chunksize), std::move(submit_items),
                                 std::move(submit_chunks), std::forward<R>(items));
  }

  // Lazily yields fn(x) in completion order.
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F&& fn, R&& items, std::size_t chunksize = 1) {
    check_running();
    using Fn = std::decay_t<F>;
    using Elem = std::ranges::range_value_t<R>;
    using Res = std::invoke_result_t<Fn, Elem>;
    using V = map_value_t<Res>;
    using Tuple = std::tuple<Elem>;
    using Unit = Future<std::vector<V>>;
    std::size_t chunk = chunksize ? chunksize : 1;
    auto zip = make_zip(std::forward<R>(items));
    auto next_chunk = [zip = std::shared_ptr(std::move(zip)), chunk,
                       f = Fn(std::forward<F>(fn))](auto& submit) -> std::optional<Unit> {
      std::vector<Tuple> c;
      c.reserve(chunk);
      while (c.size() < chunk) {
        auto t = zip->next();
        if (!t) break;
        c.push_back(std::move(*t));
      }
      if (c.empty()) return std::nullopt;
      return submit(f, std::move(c));
    };
    auto submit = [this](const Fn& f, std::vector<Tuple>&& c) {
      return exec().submit(&run_chunk<Fn, Tuple>, f, std::move(c));
    };
    using Engine = UnorderedEngine<V, Unit, decltype(next_chunk), decltype(submit)>;
    std::size_t window = std::max<std::size_t>(2, window_items(chunk) / chunk);
    return MapResults<V>(std::make_unique<Engine>(std::move(next_chunk), std::move(submit), window));
  }

  // No more work may be submitted; workers exit once the queued work is done.
  void close() {
    State expected = State::run;
    state_.compare_exchange_strong(expected, State::close);
    exec().shutdown(false);
  }
  // Stops at once: queued work is cancelled (its results raise CancelledError) and, for
  // processes, running work is killed.
  void terminate() {
    state_.store(State::terminate);
    terminate_now();
  }
  // Waits for the workers to exit; std::logic_error unless close() or terminate() came first.
  void join() {
    if (state_.load() == State::run) throw std::logic_error("Pool is still running: close() or terminate() first");
    exec().shutdown(true);
  }

 protected:
  enum class State { run, close, terminate };

  explicit PoolFront(std::size_t processes) : processes_(processes) {}
  ~PoolFront() = default;

  virtual Exec& exec() = 0;
  virtual void terminate_now() = 0;

  void check_running() const {
    if (state_.load() != State::run) throw ShutdownError("Pool not running");
  }

  std::size_t window_items(std::size_t chunk) const {
    return std::max<std::size_t>(4 * processes_ * chunk, 2 * chunk);
  }

 private:
  template <class F, class... Args>
  auto submit_checked(F&& fn, Args&&... args) {
    check_running();
    return exec().submit(std::forward<F>(fn), std::forward<Args>(args)...);
  }

  template <class R>
  static auto wrap_range(R&& items) {
    using Tuple = std::tuple<std::ranges::range_value_t<R>>;
    std::vector<Tuple> all;
    if constexpr (std::ranges::sized_range<R>) all.reserve(std::ranges::size(items));
    for (auto&& x : items) all.emplace_back(std::forward<decltype(x)>(x));
    return all;
  }

  template <class Tuple, class F, class... Tags>
  auto star_async(F&& fn, std::vector<Tuple> all, std::size_t chunksize, Tags&&... tags) {
    auto feed = [&all](auto&& sink) {
      for (auto& t : all) sink(std::move(t));
    };
    return star_async<Tuple>(std::forward<F>(fn), all.size(), feed, chunksize,
                             std::forward<Tags>(tags)...);
  }

  // Submits fn over the `total` tuples feed(sink) produces, in chunks; one future for all.
  template <class Tuple, class F, class Feed, class... Tags>
  auto star_async(F&& fn, std::size_t total, Feed&& feed, std::size_t chunksize,
                  Tags&&... tags) {
    check_running();
    using Fn = std::decay_t<F>;
    using Res = decltype(std::apply(std::declval<Fn&>(), std::declval<Tuple>()));
    using V = map_value_t<Res>;
    if (chunksize == 0) {
      // Python's default, ceil(len / (4 * processes)), capped: beyond ~64 Ki items a chunk
      // only adds latency (the first result waits for the whole first chunk) and memory
      // (each chunk is a message), while 8 huge chunks keep too few in flight to overlap
      // encoding, transfer and work; 10 M ints map ~2x faster with the cap.
      std::size_t per = 4 * processes_;
      chunksize = std::clamp<std::size_t>((total + per - 1) / per, 1, kMaxDefaultChunk);
    }
    Fn f(std::forward<F>(fn));
    std::vector<Future<std::vector<V>>> chunks;
    chunks.reserve((total + chunksize - 1) / chunksize);
    std::vector<Tuple> c;
    c.reserve(std::min(chunksize, total));
    auto flush = [&] {
      chunks.push_back(exec().submit(&run_chunk<Fn, Tuple>, f, std::move(c)));
      c = {};
      c.reserve(chunksize);
    };
    feed([&](Tuple&& t) {
      c.push_back(std::move(t));
      if (c.size() == chunksize) flush();
    });
    if (!c.empty()) flush();
    auto out = gather_chunks<V>(std::move(chunks));
    return AsyncResult<std::vector<V>>(with_callbacks(std::move(out), std::forward<Tags>(tags)...));
  }

  static constexpr std::size_t kMaxDefaultChunk = std::size_t{1} << 16;

  std::size_t processes_;
  std::atomic<State> state_{State::run};
};

}  // namespace detail
}  // namespace concur
