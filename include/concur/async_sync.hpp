// concur/async_sync.hpp: asyncio's synchronisation primitives for Asio coroutines.
//
// AsyncLock, AsyncSemaphore, AsyncBoundedSemaphore, AsyncEvent and AsyncQueue<T> suspend
// the awaiting coroutine instead of blocking its thread, and each has an RAII guard
// (`auto g = co_await lock.scoped();` is Python's `async with lock:`).
//
// Guarantees:
// - Safe on a multi-threaded io_context: any thread may acquire, release, set or put;
//   state is guarded by a mutex held only for a few instructions.
// - A waiter is resumed by a post to its own coroutine's executor, never inline in the
//   releasing thread, and waiters are served in FIFO order (no barging: a release hands
//   the lock or permit straight to the oldest waiter).
// - Cancellation (an Asio cancellation slot bound to the coroutine, e.g. through
//   concur::Task::cancel(), gather or wait_for) of a coroutine parked on a primitive
//   unlinks it, so no waiter is left behind, and the coroutine resumes with
//   concur::CancelledError. A waiter that was already granted the lock/permit/item when
//   the cancellation arrives resumes normally with it (nothing is lost); its guard then
//   releases it during unwinding.
// - As with every Asio operation, cancellation signals themselves are not thread-safe:
//   on a multi-threaded io_context run coroutines that may be cancelled on strands
//   (concur::create_task, gather and concur::run already do).
// - A primitive must outlive every coroutine parked on it.
#pragma once

#include "concur/detail/async_config.hpp"  // before any Asio header

#include <asio/awaitable.hpp>

#include <cstddef>
#include <deque>
#include <optional>
#include <utility>

#include "concur/detail/async_waiters.hpp"
#include "concur/errors.hpp"

namespace concur {

// RAII ownership of one unit of a lock or semaphore; releases it when destroyed.
template <class Primitive>
class [[nodiscard]] AsyncGuard {
 public:
  // An empty guard owning nothing.
  AsyncGuard() noexcept = default;
  // Adopts one unit the caller already acquired on `p`.
  explicit AsyncGuard(Primitive& p) noexcept : p_(&p) {}
  AsyncGuard(AsyncGuard&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
  AsyncGuard& operator=(AsyncGuard&& other) noexcept {
    if (this != &other) {
      reset();
      p_ = std::exchange(other.p_, nullptr);
    }
    return *this;
  }
  AsyncGuard(const AsyncGuard&) = delete;
  AsyncGuard& operator=(const AsyncGuard&) = delete;
  ~AsyncGuard() { reset(); }

  // Releases now (idempotent).
  void reset() noexcept {
    if (p_) std::exchange(p_, nullptr)->release();
  }
  // Gives up ownership without releasing; returns the primitive.
  Primitive* detach() noexcept { return std::exchange(p_, nullptr); }
  // Whether this guard still owns a unit.
  bool owns() const noexcept { return p_ != nullptr; }
  explicit operator bool() const noexcept { return owns(); }

 private:
  Primitive* p_ = nullptr;
};

// Mutual exclusion between coroutines (asyncio.Lock). Not recursive; FIFO fair.
class AsyncLock : detail::AsyncParking {
 public:
  AsyncLock() = default;
  AsyncLock(const AsyncLock&) = delete;
  AsyncLock& operator=(const AsyncLock&) = delete;

  // Suspends until the lock is ours.
  asio::awaitable<void> acquire() {
    if (try_acquire()) co_return;
    co_await park(waiters_, [this] { return grant_locked(); });
  }
  // Takes the lock if it is free and nobody is queued; never suspends.
  bool try_acquire() noexcept {
    std::lock_guard lock(mutex_);
    return grant_locked();
  }
  // Releases the lock, handing it to the oldest waiter if any. Throws
  // InvalidStateError if the lock is not held.
  void release() {
    detail::AsyncWaiter* next;
    {
      std::lock_guard lock(mutex_);
      if (!locked_) throw InvalidStateError("AsyncLock released while not locked");
      next = waiters_.pop_front();
      if (!next) locked_ = false;  // else ownership passes straight to `next`
    }
    if (next) next->resume(nullptr);
  }
  // Acquires and returns a guard that releases on destruction (`async with lock`).
  asio::awaitable<AsyncGuard<AsyncLock>> scoped() {
    co_await acquire();
    co_return AsyncGuard<AsyncLock>(*this);
  }
  // Whether someone holds the lock.
  bool locked() const noexcept {
    std::lock_guard lock(mutex_);
    return locked_;
  }
  // Number of coroutines parked waiting for the lock.
  std::size_t waiting() const noexcept {
    std::lock_guard lock(mutex_);
    return waiters_.size();
  }

 private:
  bool grant_locked() noexcept {
    if (locked_ || !waiters_.empty()) return false;
    locked_ = true;
    return true;
  }
  bool locked_ = false;
  detail::AsyncWaitList waiters_;
};

// Counting semaphore (asyncio.Semaphore). FIFO fair.
class AsyncSemaphore : protected detail::AsyncParking {
 public:
  // A semaphore with `initial` permits.
  explicit AsyncSemaphore(std::size_t initial = 1) : value_(initial) {}
  AsyncSemaphore(const AsyncSemaphore&) = delete;
  AsyncSemaphore& operator=(const AsyncSemaphore&) = delete;
  virtual ~AsyncSemaphore() = default;

  // Suspends until a permit is ours.
  asio::awaitable<void> acquire() {
    if (try_acquire()) co_return;
    co_await park(waiters_, [this] { return grant_locked(); });
  }
  // Takes a permit if one is free and nobody is queued; never suspends.
  bool try_acquire() noexcept {
    std::lock_guard lock(mutex_);
    return grant_locked();
  }
  // Returns a permit, handing it to the oldest waiter if any.
  virtual void release() {
    detail::AsyncWaiter* next;
    {
      std::lock_guard lock(mutex_);
      next = waiters_.pop_front();
      if (!next) ++value_;
    }
    if (next) next->resume(nullptr);
  }
  // Acquires and returns a guard that releases on destruction (`async with sem`).
  asio::awaitable<AsyncGuard<AsyncSemaphore>> scoped() {
    co_await acquire();
    co_return AsyncGuard<AsyncSemaphore>(*this);
  }
  // Free permits right now.
  std::size_t value() const noexcept {
    std::lock_guard lock(mutex_);
    return value_;
  }
  // Whether acquire() would suspend.
  bool locked() const noexcept {
    std::lock_guard lock(mutex_);
    return value_ == 0 || !waiters_.empty();
  }
  // Number of coroutines parked waiting for a permit.
  std::size_t waiting() const noexcept {
    std::lock_guard lock(mutex_);
    return waiters_.size();
  }

 protected:
  bool grant_locked() noexcept {
    if (value_ == 0 || !waiters_.empty()) return false;
    --value_;
    return true;
  }
  std::size_t value_;
  detail::AsyncWaitList waiters_;
};

// A semaphore that refuses to be released above its initial value
// (asyncio.BoundedSemaphore): such a release throws InvalidStateError.
class AsyncBoundedSemaphore : public AsyncSemaphore {
 public:
  // A semaphore with `initial` permits, which is also its bound.
  explicit AsyncBoundedSemaphore(std::size_t initial = 1)
      : AsyncSemaphore(initial), bound_(initial) {}

  // Returns a permit; throws InvalidStateError if that would exceed the bound.
  void release() override {
    detail::AsyncWaiter* next;
    {
      std::lock_guard lock(mutex_);
      next = waiters_.pop_front();
      if (!next) {
        if (value_ >= bound_)
          throw InvalidStateError("AsyncBoundedSemaphore released too many times");
        ++value_;
      }
    }
    if (next) next->resume(nullptr);
  }
  // Acquires and returns a guard that releases on destruction.
  asio::awaitable<AsyncGuard<AsyncBoundedSemaphore>> scoped() {
    co_await acquire();
    co_return AsyncGuard<AsyncBoundedSemaphore>(*this);
  }
  // The bound given at construction.
  std::size_t bound() const noexcept { return bound_; }

 private:
  std::size_t bound_;
};

// A flag coroutines can wait on (asyncio.Event).
class AsyncEvent : detail::AsyncParking {
 public:
  AsyncEvent() = default;
  AsyncEvent(const AsyncEvent&) = delete;
  AsyncEvent& operator=(const AsyncEvent&) = delete;

  // Sets the flag and wakes every waiter.
  void set() {
    detail::AsyncWaitList woken;
    {
      std::lock_guard lock(mutex_);
      set_ = true;
      while (auto* w = waiters_.pop_front()) woken.push_back(w);
    }
    while (auto* w = woken.pop_front()) w->resume(nullptr);
  }
  // Clears the flag; later wait() calls suspend until the next set().
  void clear() noexcept {
    std::lock_guard lock(mutex_);
    set_ = false;
  }
  // Whether the flag is set.
  bool is_set() const noexcept {
    std::lock_guard lock(mutex_);
    return set_;
  }
  // Suspends until the flag is set (returns at once if it already is).
  asio::awaitable<void> wait() {
    if (is_set()) co_return;
    co_await park(waiters_, [this] { return set_; });
  }
  // Like wait(), but cancellation of the caller is ignored (used for joins that must
  // finish before a cancelled coroutine unwinds).
  asio::awaitable<void> wait_uncancellable() {
    if (is_set()) co_return;
    co_await park(waiters_, [this] { return set_; }, nullptr, false);
  }
  // Number of coroutines parked in wait().
  std::size_t waiting() const noexcept {
    std::lock_guard lock(mutex_);
    return waiters_.size();
  }

 private:
  bool set_ = false;
  detail::AsyncWaitList waiters_;
};

// FIFO queue between coroutines (asyncio.Queue). `maxsize == 0` means unbounded;
// otherwise put() suspends while the queue is full. Items go straight from a putter to
// a parked getter. A cancelled put() leaves its item out of the queue; a cancelled get()
// that had already been handed an item still returns it.
template <class T>
class AsyncQueue : detail::AsyncParking {
 public:
  // A queue holding at most `maxsize` items (0: no limit).
  explicit AsyncQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
  AsyncQueue(const AsyncQueue&) = delete;
  AsyncQueue& operator=(const AsyncQueue&) = delete;

  // Appends `item`, suspending while the queue is full.
  asio::awaitable<void> put(T item) {
    std::optional<T> slot(std::move(item));
    if (try_put_slot(slot)) co_return;
    co_await park(putters_, [this, &slot] { return put_locked(slot); }, &slot);
  }
  // Appends `item` if there is room; never suspends. Returns false when full.
  bool try_put(T item) {
    std::optional<T> slot(std::move(item));
    return try_put_slot(slot);
  }
  // Removes and returns the oldest item, suspending while the queue is empty.
  asio::awaitable<T> get() {
    std::optional<T> out;
    if (try_get_into(out)) co_return std::move(*out);
    co_await park(getters_, [this, &out] { return get_locked(out); }, &out);
    co_return std::move(*out);
  }
  // Removes and returns the oldest item if there is one; never suspends.
  std::optional<T> try_get() {
    std::optional<T> out;
    try_get_into(out);
    return out;
  }
  // Items currently queued.
  std::size_t size() const noexcept {
    std::lock_guard lock(mutex_);
    return items_.size();
  }
  // Whether no item is queued.
  bool empty() const noexcept { return size() == 0; }
  // Whether put() would suspend.
  bool full() const noexcept {
    std::lock_guard lock(mutex_);
    return maxsize_ != 0 && items_.size() >= maxsize_;
  }
  // The bound given at construction (0: unbounded).
  std::size_t maxsize() const noexcept { return maxsize_; }
  // Coroutines parked in get() and in put().
  std::size_t waiting_getters() const noexcept {
    std::lock_guard lock(mutex_);
    return getters_.size();
  }
  std::size_t waiting_putters() const noexcept {
    std::lock_guard lock(mutex_);
    return putters_.size();
  }

 private:
  bool try_put_slot(std::optional<T>& slot) {
    detail::AsyncWaiter* getter = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (!putters_.empty()) return false;  // keep FIFO order among putters
      if (!getters_.empty()) {
        getter = getters_.pop_front();
        *static_cast<std::optional<T>*>(getter->payload) = std::move(slot);
      } else if (maxsize_ == 0 || items_.size() < maxsize_) {
        items_.push_back(std::move(*slot));
        return true;
      } else {
        return false;
      }
    }
    getter->resume(nullptr);
    return true;
  }
  // Called under the mutex from park().
  bool put_locked(std::optional<T>& slot) {
    if (!putters_.empty()) return false;
    if (!getters_.empty()) {
      detail::AsyncWaiter* getter = getters_.pop_front();
      *static_cast<std::optional<T>*>(getter->payload) = std::move(slot);
      getter->resume(nullptr);  // resume() only posts, so calling it under the mutex is safe
      return true;
    }
    if (maxsize_ == 0 || items_.size() < maxsize_) {
      items_.push_back(std::move(*slot));
      return true;
    }
    return false;
  }
  bool try_get_into(std::optional<T>& out) {
    detail::AsyncWaiter* putter = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (items_.empty() || !getters_.empty()) return false;
      out.emplace(std::move(items_.front()));
      items_.pop_front();
      putter = refill_locked();
    }
    if (putter) putter->resume(nullptr);
    return true;
  }
  // Called under the mutex from park().
  bool get_locked(std::optional<T>& out) {
    if (items_.empty() || !getters_.empty()) return false;
    out.emplace(std::move(items_.front()));
    items_.pop_front();
    if (auto* p = refill_locked()) p->resume(nullptr);
    return true;
  }
  // Moves the oldest parked putter's item into the queue; returns it to be resumed.
  detail::AsyncWaiter* refill_locked() {
    detail::AsyncWaiter* putter = putters_.pop_front();
    if (putter) items_.push_back(std::move(**static_cast<std::optional<T>*>(putter->payload)));
    return putter;
  }

  std::size_t maxsize_;
  std::deque<T> items_;
  detail::AsyncWaitList getters_;
  detail::AsyncWaitList putters_;
};

}  // namespace concur
