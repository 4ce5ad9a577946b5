// The state shared by a Future and whatever completes it: status, outcome, the callbacks
// and waiters to notify. One heap object per task; executors derive their task types from
// it, so submitting work costs a single allocation.
//
// Status lives in one 32-bit word so that the common paths (done()? / complete with nobody
// listening / wait on a finished future) are a single atomic operation, and so that
// blocked waiters can sleep on it with a futex.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/unique_function.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

class SharedState;

// A 4-byte mutex for the short critical sections of a shared state (Drepper's three-state
// futex lock): a task's state is allocated per submit, so its size matters.
class TinyMutex {
 public:
  void lock() noexcept {
    std::uint32_t c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    for (int i = 0; i < 100 && c != 0; ++i) {  // holders leave within nanoseconds
      cpu_relax();
      c = 0;
      if (state_.compare_exchange_weak(c, 1, std::memory_order_acquire)) return;
    }
    if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      futex_wait(&state_, 2);
      c = state_.exchange(2, std::memory_order_acquire);
    }
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) futex_wake(&state_, 1);
  }

 private:
  std::atomic<std::uint32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
};

// Something that watches several futures at once (wait(), as_completed()). notify() is
// called with the state's lock held, so it must be short and must not block.
class Waiter {
 public:
  virtual void notify(SharedState* state) noexcept = 0;

 protected:
  ~Waiter() = default;
};

// Implemented by tasks that can run in another process (see the process pool).
class RemoteWork;

// Intrusive link so executors can queue tasks without allocating queue nodes.
struct QueueLink {
  std::atomic<QueueLink*> next_link{nullptr};
};

// Tells the process pool (detail/remote_call.hpp) that SharedState has help_wait().
#define CONCUR_SHARED_STATE_HAS_HELP_WAIT 1

class SharedState : public QueueLink {
 public:
  // Status values (low bits of word_). Order matters: done() is status >= kCancelled.
  static constexpr std::uint32_t kPending = 0;
  static constexpr std::uint32_t kRunning = 1;
  static constexpr std::uint32_t kCompleting = 2;  // outcome being written by its producer
  static constexpr std::uint32_t kCancelled = 3;
  static constexpr std::uint32_t kFinished = 4;
  static constexpr std::uint32_t kStatusMask = 7;
  static constexpr std::uint32_t kSleepers = 8;    // a thread may be futex-waiting on word_
  static constexpr std::uint32_t kListeners = 16;  // callbacks or waiters registered

  SharedState() noexcept = default;
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;
  virtual ~SharedState() = default;

  // ---- reference counting (intrusive: one allocation per task)
  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // ---- observers
  std::uint32_t status() const noexcept {
    return word_.load(std::memory_order_acquire) & kStatusMask;
  }
  bool done() const noexcept { return status() >= kCancelled; }
  bool cancelled() const noexcept { return status() == kCancelled; }
  bool running() const noexcept {
    auto s = status();
    return s == kRunning || s == kCompleting;
  }
  // The stored exception; meaningful once status() == kFinished.
  const std::exception_ptr& stored_exception() const noexcept { return exception_; }
  bool has_exception() const noexcept { return status() == kFinished && exception_ != nullptr; }

  // ---- transitions (Python's Future methods)
  bool cancel() noexcept {
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t s = w & kStatusMask;
      if (s == kCancelled) return true;
      if (s != kPending) return false;
      if (word_.compare_exchange_weak(w, (w & ~kStatusMask) | kCancelled,
                                      std::memory_order_acq_rel, std::memory_order_acquire)) {
        on_done(w);
        return true;
      }
    }
  }

  // Executors call this before running a task: false if it was cancelled (and so must not
  // run), true if it is now running. Any other state is a programming error.
  bool set_running_or_notify_cancel() {
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t s = w & kStatusMask;
      if (s == kCancelled) return false;
      if (s != kPending) throw InvalidStateError("future in unexpected state: " + status_name(s));
      if (word_.compare_exchange_weak(w, (w & ~kStatusMask) | kRunning,
                                      std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
  }

  // Cancels a future that is already running; only an executor that can really stop the
  // work (the process pool, by killing the worker) may do this.
  bool cancel_running() noexcept {
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t s = w & kStatusMask;
      if (s != kRunning && s != kPending) return s == kCancelled;
      if (word_.compare_exchange_weak(w, (w & ~kStatusMask) | kCancelled,
                                      std::memory_order_acq_rel, std::memory_order_acquire)) {
        on_done(w);
        return true;
      }
    }
  }

  // Claims the right to write the outcome (pending/running -> completing). False when the
  // future already has an outcome or was cancelled.
  bool try_begin_complete() noexcept {
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t s = w & kStatusMask;
      if (s != kPending && s != kRunning) return false;
      if (word_.compare_exchange_weak(w, (w & ~kStatusMask) | kCompleting,
                                      std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
  }

  // Publishes the outcome written after try_begin_complete() and notifies everyone.
  void end_complete() noexcept {
    // Only the claimant changes the status bits now, so an add moves completing -> finished
    // while keeping the flag bits that waiters may set concurrently.
    std::uint32_t old = word_.fetch_add(kFinished - kCompleting, std::memory_order_acq_rel);
    on_done(old);
  }

  void set_exception(std::exception_ptr e) {
    if (!e) throw InvalidStateError("set_exception() needs a non-null exception");
    if (!try_begin_complete()) throw_already_done();
    exception_ = std::move(e);
    end_complete();
  }

  // Stores an exception if the future is still open; used when failing work in bulk
  // (broken pool, shutdown) where a concurrent cancel is not an error.
  bool try_set_exception(std::exception_ptr e) noexcept {
    if (!try_begin_complete()) return false;
    exception_ = std::move(e);
    end_complete();
    return true;
  }

  [[noreturn]] void throw_already_done() const {
    throw InvalidStateError("future already has an outcome (" + status_name(status()) + ")");
  }

  // ---- blocking. True once done; false if the deadline passed first.
  bool wait(const Deadline& deadline = std::nullopt) const noexcept {
    if (done()) return true;
    help_wait(deadline);
    if (done()) return true;
    if (!expired(deadline) && spin_until([this] { return done(); })) return true;
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if ((w & kStatusMask) >= kCancelled) return true;
      if (!(w & kSleepers)) {
        if (!word_.compare_exchange_weak(w, w | kSleepers, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
          continue;
        w |= kSleepers;
      }
      if (expired(deadline)) return false;
      futex_wait(&word_, w, deadline);
      w = word_.load(std::memory_order_acquire);
    }
  }

  // ---- callbacks and waiters.
  using Callback = unique_function<void()>;

  // Registers cb to run when the future is done. Returns false, without taking cb, when it
  // is already done: the caller then runs it itself, in its own thread (Python's rule).
  bool add_callback(Callback& cb) {
    std::lock_guard lock(mu_);
    if (!mark_listening()) return false;
    listeners().callbacks.push_back(std::move(cb));
    return true;
  }

  // Registers w; false if the future is already done (w is then not registered).
  bool add_waiter(Waiter* w) {
    std::lock_guard lock(mu_);
    if (!mark_listening()) return false;
    listeners().waiters.push_back(w);
    return true;
  }
  void remove_waiter(Waiter* w) noexcept {
    std::lock_guard lock(mu_);
    if (!listeners_) return;
    auto& ws = listeners_->waiters;
    for (auto it = ws.begin(); it != ws.end(); ++it)
      if (*it == w) {
        ws.erase(it);
        return;
      }
  }

  // ---- executor hooks
  // Runs the task's work in this thread and records the outcome without publishing it:
  // the worker publishes with end_complete() once it has done its own bookkeeping, so that
  // whoever the result wakes sees the worker already idle. Returns false when there is
  // nothing to publish (the task had been cancelled).
  virtual bool run() noexcept { return false; }
  // Tasks that can be shipped to another process return their remote face.
  virtual RemoteWork* as_remote() noexcept { return nullptr; }
  // Stop a running task (process pools kill the worker). False when not possible.
  virtual bool request_kill() noexcept { return false; }
  // Called by wait() before it spins or sleeps: a process pool's task lets the waiting
  // thread collect results itself for a bounded time, which saves the hop through the
  // pool's collector thread (a blocking wake-up, ~25 us) on the way back.
  virtual void help_wait(const Deadline& /*deadline*/) const noexcept {}
  // Whether callbacks or waiters were registered (then the outcome is published by the
  // process pool's collector thread, not by whichever thread happened to collect it).
  bool has_listeners() const noexcept {
    return (word_.load(std::memory_order_acquire) & kListeners) != 0;
  }

  static std::string status_name(std::uint32_t s) {
    switch (s) {
      case kPending: return "pending";
      case kRunning: return "running";
      case kCompleting: return "completing";
      case kCancelled: return "cancelled";
      default: return "finished";
    }
  }

 protected:
  std::exception_ptr exception_;

 private:
  // Sets kListeners unless already done (then false). Caller holds mu_.
  bool mark_listening() noexcept {
    std::uint32_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if ((w & kStatusMask) >= kCancelled) return false;
      if (w & kListeners) return true;
      if (word_.compare_exchange_weak(w, w | kListeners, std::memory_order_acq_rel,
                                      std::memory_order_acquire))
        return true;
    }
  }

  void on_done(std::uint32_t old_word) noexcept {
    if (old_word & kSleepers) futex_wake(&word_);
    if (!(old_word & kListeners)) return;
    std::vector<Callback> callbacks;
    {
      std::lock_guard lock(mu_);
      if (!listeners_) return;
      for (Waiter* w : listeners_->waiters) w->notify(this);
      listeners_->waiters.clear();
      callbacks.swap(listeners_->callbacks);
    }
    for (auto& cb : callbacks) run_callback(cb);
  }

  // Most futures never get a callback or a waiter: keep those lists out of line.
  struct Listeners {
    std::vector<Callback> callbacks;
    std::vector<Waiter*> waiters;
  };
  Listeners& listeners() {
    if (!listeners_) listeners_ = std::make_unique<Listeners>();
    return *listeners_;
  }

  static void run_callback(Callback& cb) noexcept;

  mutable std::atomic<std::uint32_t> word_{kPending};  // waiters set kSleepers
  std::atomic<std::uint32_t> refs_{0};
  TinyMutex mu_;
  std::unique_ptr<Listeners> listeners_;
};

// Reports an exception that escaped a done-callback (Python logs it and goes on).
void report_callback_exception(std::exception_ptr e) noexcept;

inline void SharedState::run_callback(Callback& cb) noexcept {
  try {
    cb();
  } catch (...) {
    report_callback_exception(std::current_exception());
  }
}

// A shared state that holds a T (or nothing, for void).
template <class T>
class FutureState : public SharedState {
 public:
  template <class... A>
  void set_value(A&&... a) {
    if (!try_begin_complete()) throw_already_done();
    store_value(std::forward<A>(a)...);
    end_complete();
  }

  // Writes the outcome after a successful try_begin_complete(); a throwing constructor
  // becomes the stored exception.
  template <class... A>
  void store_value(A&&... a) noexcept {
    try {
      if constexpr (std::is_void_v<T>)
        static_assert(sizeof...(A) == 0, "a void future takes no value");
      else
        value_.emplace(std::forward<A>(a)...);
    } catch (...) {
      exception_ = std::current_exception();
    }
  }
  void store_exception(std::exception_ptr e) noexcept { exception_ = std::move(e); }

  // Precondition: finished without exception.
  const auto& value() const noexcept {
    if constexpr (!std::is_void_v<T>) return *value_;
    else return value_;
  }
  auto& mutable_value() noexcept { return *value_; }

 private:
  struct Nothing {};
  [[no_unique_address]] std::conditional_t<std::is_void_v<T>, Nothing, std::optional<T>> value_;
};

// Intrusive owning pointer to a shared state.
template <class S>
class StatePtr {
 public:
  StatePtr() noexcept = default;
  explicit StatePtr(S* s) noexcept : p_(s) {
    if (p_) p_->retain();
  }
  StatePtr(const StatePtr& o) noexcept : StatePtr(o.p_) {}
  StatePtr(StatePtr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, S*>>>
  StatePtr(const StatePtr<U>& o) noexcept : StatePtr(o.get()) {}  // NOLINT: upcast
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, S*>>>
  StatePtr(StatePtr<U>&& o) noexcept : p_(o.detach()) {}  // NOLINT: upcast
  StatePtr& operator=(StatePtr o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~StatePtr() {
    if (p_) p_->release();
  }

  // Adopts a pointer whose reference the caller already holds.
  static StatePtr adopt(S* s) noexcept {
    StatePtr r;
    r.p_ = s;
    return r;
  }
  S* detach() noexcept { return std::exchange(p_, nullptr); }
  S* get() const noexcept { return p_; }
  S* operator->() const noexcept { return p_; }
  S& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  S* p_ = nullptr;
};

using TaskPtr = StatePtr<SharedState>;

}  // namespace concur::detail
