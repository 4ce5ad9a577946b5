// concur/wait.hpp: waiting on many futures at once.
//
//  - wait(futures[, timeout][, return_when]) blocks until the condition holds
//    (FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, the default) or the timeout
//    passes, and returns {done, not_done}.
//  - as_completed(futures[, timeout]) is an input range yielding each future once, as it
//    finishes, those already finished first; past the timeout (counted from the call) the
//    iteration throws TimeoutError naming how many are unfinished.
//
// Both take any input range of Future<T> or AnyFuture (use AnyFuture, or a braced list,
// to mix result types and executors). A future listed twice counts once. A cancelled future
// counts as done at once. Results keep the input order (first occurrence).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "concur/future.hpp"

namespace concur {

enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::FIRST_COMPLETED;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::FIRST_EXCEPTION;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::ALL_COMPLETED;

// A Future<T> or an AnyFuture.
template <class F>
concept future_like = requires(const F& f) {
  { f.state() } -> std::convertible_to<detail::SharedState*>;
};

// A range whose elements are futures.
template <class R>
concept future_range =
    std::ranges::input_range<R> && future_like<std::remove_cvref_t<std::ranges::range_value_t<R>>>;

// What wait() returns; use with structured bindings: auto [done, not_done] = wait(fs);
template <class F>
struct DoneAndNotDone {
  std::vector<F> done;
  std::vector<F> not_done;
};

namespace detail {

// The distinct futures of a range, in first-occurrence order.
template <class F, class R>
std::vector<F> unique_futures(R&& fs) {
  std::vector<F> out;
  if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(fs));
  std::unordered_set<const void*> seen;
  for (auto&& f : fs)
    if (seen.insert(f.state()).second) out.push_back(f);
  return out;
}

// Waits for a condition over many futures: counts completions and wakes the waiting
// thread only when the condition becomes true.
class ConditionWaiter final : public Waiter {
 public:
  ConditionWaiter(ReturnWhen rw, std::size_t pending) : rw_(rw), remaining_(pending) {}

  void notify(SharedState* s) noexcept override {
    bool exc = s->has_exception();
    std::size_t left = remaining_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    bool met = rw_ == ReturnWhen::FIRST_COMPLETED || left == 0 ||
               (rw_ == ReturnWhen::FIRST_EXCEPTION && exc);
    if (met && !met_.exchange(1, std::memory_order_acq_rel)) futex_wake(&met_);
  }

  // True once the condition holds; false on timeout.
  bool wait(const Deadline& deadline) noexcept {
    if (spin_until([this] { return met_.load(std::memory_order_acquire) != 0; },
                   std::chrono::microseconds(5)))
      return true;
    while (!met_.load(std::memory_order_acquire)) {
      if (expired(deadline)) return false;
      futex_wait(&met_, 0, deadline);
    }
    return true;
  }

 private:
  ReturnWhen rw_;
  std::atomic<std::size_t> remaining_;
  std::atomic<std::uint32_t> met_{0};
};

template <class F>
DoneAndNotDone<F> wait_impl(std::vector<F> fs, const Deadline& deadline, ReturnWhen rw) {
  // One pass decides whether the condition already holds and collects the futures it was
  // judged on as open: each of those is then registered or, when it finished since,
  // counted at once. (Scanning again for the open ones would drop any that finished in
  // between, and the wait would then sleep to its timeout.)
  std::vector<SharedState*> open;
  bool met = false;
  for (const auto& f : fs) {
    auto* s = f.state();
    if (!s->done())
      open.push_back(s);
    else if (rw == ReturnWhen::FIRST_COMPLETED ||
             (rw == ReturnWhen::FIRST_EXCEPTION && s->has_exception()))
      met = true;
  }
  if (open.empty()) met = true;

  if (!met && !expired(deadline)) {
    ConditionWaiter waiter(rw, open.size());
    std::vector<SharedState*> registered;
    registered.reserve(open.size());
    for (auto* s : open) {
      if (s->add_waiter(&waiter)) registered.push_back(s);
      else waiter.notify(s);  // finished between the scan and the registration
    }
    waiter.wait(deadline);
    // Taking each state's lock here also waits out a notify() still running on `waiter`.
    for (auto* s : registered) s->remove_waiter(&waiter);
  }

  DoneAndNotDone<F> out;
  for (auto& f : fs) (f.state()->done() ? out.done : out.not_done).push_back(std::move(f));
  return out;
}

}  // namespace detail

// Waits until every future is done.
template <future_range R>
auto wait(R&& fs) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return detail::wait_impl(detail::unique_futures<F>(fs), std::nullopt, ALL_COMPLETED);
}
// Waits until `return_when` holds.
template <future_range R>
auto wait(R&& fs, ReturnWhen return_when) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return detail::wait_impl(detail::unique_futures<F>(fs), std::nullopt, return_when);
}
// Waits until `return_when` holds or `timeout` passes.
template <future_range R, class Rep, class Period>
auto wait(R&& fs, std::chrono::duration<Rep, Period> timeout,
          ReturnWhen return_when = ALL_COMPLETED) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return detail::wait_impl(detail::unique_futures<F>(fs), detail::deadline_after(timeout),
                           return_when);
}
// The same for a braced list of futures of any result types.
inline DoneAndNotDone<AnyFuture> wait(std::initializer_list<AnyFuture> fs,
                                      ReturnWhen return_when = ALL_COMPLETED) {
  return detail::wait_impl(detail::unique_futures<AnyFuture>(fs), std::nullopt, return_when);
}
template <class Rep, class Period>
DoneAndNotDone<AnyFuture> wait(std::initializer_list<AnyFuture> fs,
                               std::chrono::duration<Rep, Period> timeout,
                               ReturnWhen return_when = ALL_COMPLETED) {
  return detail::wait_impl(detail::unique_futures<AnyFuture>(fs),
                           detail::deadline_after(timeout), return_when);
}

// The range returned by as_completed(). Move-only; iterate it once.
template <class F>
class AsCompleted {
  struct State final : detail::Waiter {
    std::mutex mu;
    std::deque<detail::SharedState*> finished;  // notified, not yet yielded
    std::atomic<std::uint32_t> seq{0};
    // Registered and not yet yielded, keyed by state. A future is let go once yielded (as
    // CPython's bpo-14406 requires): the range must not keep every result alive.
    std::unordered_map<const void*, F> pending;
    std::vector<F> ready;  // finished before the call, in input order
    std::size_t ready_pos = 0;
    std::size_t total = 0;
    std::size_t yielded = 0;
    detail::Deadline deadline;
    std::optional<F> current;

    void notify(detail::SharedState* s) noexcept override {
      // All of it under the lock: once advance() has taken `s` (and let its future go),
      // nothing but the lock keeps ~State from running, so this must be done by then.
      std::lock_guard lock(mu);
      finished.push_back(s);
      seq.fetch_add(1, std::memory_order_release);
      detail::futex_wake(&seq);
    }

    // Moves to the next finished future; false when all have been yielded.
    bool advance() {
      if (ready_pos < ready.size()) {
        current = std::move(ready[ready_pos++]);
        ++yielded;
        return true;
      }
      if (yielded == total) {
        current.reset();
        return false;
      }
      for (;;) {
        std::uint32_t seen = seq.load(std::memory_order_acquire);
        {
          std::lock_guard lock(mu);
          if (!finished.empty()) {
            auto* s = finished.front();
            finished.pop_front();
            auto it = pending.find(s);
            // Only registered states notify, so this cannot miss; saying so keeps g++'s
            // -Wnull-dereference quiet in user code built with it.
            if (it == pending.end()) continue;
            current = std::move(it->second);
            pending.erase(it);
            ++yielded;
            return true;
          }
        }
        if (detail::spin_until([&] { return seq.load(std::memory_order_acquire) != seen; },
                               std::chrono::microseconds(5)))
          continue;
        if (detail::expired(deadline))
          throw TimeoutError(std::to_string(total - yielded) + " (of " + std::to_string(total) +
                             ") futures unfinished");
        detail::futex_wait(&seq, seen, deadline);
      }
    }

    ~State() {
      // Taking each state's lock also waits out a notify() still running on this waiter.
      // Yielded futures need no removal: their notify() ran to its end under `mu`.
      for (auto& [key, f] : pending) f.state()->remove_waiter(this);
    }
  };

 public:
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = F;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    const F& operator*() const noexcept { return *st_->current; }
    const F* operator->() const noexcept { return &*st_->current; }
    iterator& operator++() {
      if (!st_->advance()) st_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.st_ == nullptr;
    }

   private:
    friend class AsCompleted;
    explicit iterator(State* st) : st_(st) {}
    State* st_ = nullptr;
  };

  AsCompleted(std::vector<F> fs, detail::Deadline deadline) {
    if (fs.empty()) return;
    st_ = std::make_unique<State>();
    st_->deadline = deadline;
    st_->total = fs.size();
    std::vector<F> later;
    for (auto& f : fs) (f.state()->done() ? st_->ready : later).push_back(std::move(f));
    for (auto& f : later) {
      auto* s = f.state();
      if (s->add_waiter(st_.get())) {
        st_->pending.emplace(static_cast<const void*>(s), std::move(f));
      } else {  // finished meanwhile: yield it among the first
        st_->ready.push_back(std::move(f));
      }
    }
  }

  // Blocks until the first future finishes (TimeoutError past the deadline).
  iterator begin() {
    if (!st_) return iterator();
    if (!started_) {
      started_ = true;
      exhausted_ = !st_->advance();
    }
    return exhausted_ ? iterator() : iterator(st_.get());
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  // How many futures were given (after removing duplicates).
  std::size_t size() const noexcept { return st_ ? st_->total : 0; }

 private:
  std::unique_ptr<State> st_;
  bool started_ = false;
  bool exhausted_ = false;
};

// Yields the futures as they finish.
template <future_range R>
auto as_completed(R&& fs) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return AsCompleted<F>(detail::unique_futures<F>(fs), std::nullopt);
}
// Yields the futures as they finish; TimeoutError once `timeout` (from now) passes.
template <future_range R, class Rep, class Period>
auto as_completed(R&& fs, std::chrono::duration<Rep, Period> timeout) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return AsCompleted<F>(detail::unique_futures<F>(fs), detail::deadline_after(timeout));
}
inline AsCompleted<AnyFuture> as_completed(std::initializer_list<AnyFuture> fs) {
  return AsCompleted<AnyFuture>(detail::unique_futures<AnyFuture>(fs), std::nullopt);
}
template <class Rep, class Period>
AsCompleted<AnyFuture> as_completed(std::initializer_list<AnyFuture> fs,
                                    std::chrono::duration<Rep, Period> timeout) {
  return AsCompleted<AnyFuture>(detail::unique_futures<AnyFuture>(fs),
                                detail::deadline_after(timeout));
}

}  // namespace concur
