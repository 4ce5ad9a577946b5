// concur/synchronize.hpp: Python's multiprocessing synchronisation primitives, usable
// between threads and between processes alike.
//
// Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier keep their state
// in shared memory (a memfd mapped MAP_SHARED, see detail/ipc_segment.hpp), so
// - they work across fork() with no extra step: the child's copies are the same objects;
// - a process started by spawn/forkserver receives them through handle()/attach(), the
//   hook the process engine serializes (documented in detail/ipc_segment.hpp);
// - copying one of these objects copies a handle: both copies name the same primitive,
//   like a Python object passed to a child process. The memory lives until the last
//   handle in the last process is gone. Each primitive costs one descriptor (O_CLOEXEC)
//   and one page; attaching one a process already maps reuses that mapping.
//
// Guarantees and choices:
// - Python's API: acquire(blocking = true) / acquire(timeout) -> bool, try_acquire(),
//   release(); plus lock()/unlock()/try_lock()/try_lock_for()/try_lock_until() so
//   std::lock_guard, std::unique_lock and std::scoped_lock work. Timeouts take any
//   std::chrono duration; a timeout <= 0 polls once (Python treats it the same way).
// - Owner death. Lock and RLock are robust process-shared pthread mutexes: if the holding
//   thread or process dies, the next acquirer gets concur::AbandonedLockError, the lock is
//   made consistent and left FREE, and every later acquire works normally. The error says
//   the protected data may be half-updated; to repair it, acquire again and check it.
//   (Condition::wait is the exception: it must return holding the lock, so there the
//   error is thrown with the lock HELD, and the caller's guard releases it.)
// - Owners. Unlike Python's multiprocessing.Lock, which any process may release, Lock
//   and RLock have an owner thread (death detection needs one): release() by any other
//   thread throws concur::LockOwnershipError. A blocking acquire() of a Lock the calling
//   thread already holds throws LockOwnershipError instead of deadlocking; a polling or
//   timed one returns false at once (it could not succeed before the timeout anyway).
// - Semaphore, BoundedSemaphore and Event are futex words; waits spin briefly (20 µs by
//   default, set_spin() changes it) before sleeping, because a sleeping hand-off costs
//   ~25 µs here and a spinning one ~0.1 µs. Idle waiters sleep in the kernel: no CPU.
//   A permit taken by a process that dies is not given back (as in Python).
// - Condition is not pthread_cond_t: that cannot release an RLock held recursively, and a
//   waiter that dies can swallow a signal meant for the living. Here notify(n) wakes at
//   most n of the threads waiting when it was called, a later arrival cannot take their
//   wake-up, and a waiter that dies never costs the living a wake-up (at worst it causes
//   a spurious one later). Contended Lock/RLock acquires spin briefly too (set_spin()).
// - Barrier follows threading.Barrier (wait() returns the arrival index, reset, abort,
//   broken, BrokenBarrierError, a default timeout). Its action is per process: the process
//   of the last arriving party runs its own copy. A party that dies inside wait() is
//   forgotten rather than counted forever: at once if it died holding the barrier's lock
//   (in the action: the barrier is then broken), otherwise when another party's wait times
//   out or on reset(). Nothing wakes the others when it dies, though: give waits a timeout
//   so they get BrokenBarrierError instead of waiting for a party that will never come.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "concur/detail/ipc_segment.hpp"
#include "concur/detail/ipc_sync.hpp"
#include "concur/errors.hpp"

namespace concur {

template <class T>
class Value;
template <class T>
class Array;
class Condition;

namespace detail {

// What Lock and RLock share: the acquire/release vocabulary over one MutexState.
class LockBase {
 public:
  // Blocks until acquired (true), or with blocking = false tries once.
  bool acquire(bool blocking = true) {
    return mutex_acquire(*st_, blocking ? Deadline() : Deadline(kPoll));
  }
  // Waits at most `timeout`; true when acquired.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return mutex_acquire(*st_, deadline_in(timeout));
  }
  // Tries once without waiting.
  bool try_acquire() { return acquire(false); }
  // Releases (one level of an RLock); LockOwnershipError unless this thread holds it.
  void release() { mutex_release(*st_); }

  // BasicLockable/TimedLockable spellings for std::lock_guard, std::unique_lock etc.
  void lock() { acquire(true); }
  // Releases; see release().
  void unlock() { release(); }
  // Tries once.
  bool try_lock() { return acquire(false); }
  // Waits at most `timeout`.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return acquire(timeout);
  }
  // Waits until `when` (any clock).
  template <class C, class D>
  bool try_lock_until(std::chrono::time_point<C, D> when) {
    return mutex_acquire(*st_, deadline_at(when));
  }

  // Whether the calling thread holds it (Python's private _is_owned()).
  bool is_owned() const noexcept { return mutex_owned(*st_); }
  // How long a contended acquire spins before sleeping (shared by every handle).
  void set_spin(std::chrono::nanoseconds spin) noexcept {
    st_->spin_ns.store(spin.count(), std::memory_order_relaxed);
  }
  // The export hook: see detail/ipc_segment.hpp.
  ShmHandle handle() const { return ShmHandle{{seg_->part(kind_, offset_)}}; }

 protected:
  LockBase(IpcKind kind, SegmentPtr seg, std::size_t offset, MutexState* st)
      : kind_(kind), seg_(std::move(seg)), offset_(offset), st_(st) {}
  static LockBase make(IpcKind kind);
  static LockBase attach_as(const ShmHandle& handle, IpcKind kind);

  IpcKind kind_;
  SegmentPtr seg_;
  std::size_t offset_;
  MutexState* st_;

  friend class concur::Condition;
};

}  // namespace detail

// multiprocessing.Lock / threading.Lock: a non-recursive, owned, robust mutual exclusion.
class Lock : public detail::LockBase {
 public:
  // A new, unlocked lock in its own shared segment.
  Lock() : LockBase(make(detail::IpcKind::lock)) {}
  // The lock `handle` names, in a process that received the handle.
  static Lock attach(const detail::ShmHandle& handle) {
    return Lock(attach_as(handle, detail::IpcKind::lock));
  }

 private:
  explicit Lock(LockBase base) : LockBase(std::move(base)) {}
  friend class Condition;
};

// multiprocessing.RLock / threading.RLock: re-entrant; the holder may acquire it again and
// must release it as many times.
class RLock : public detail::LockBase {
 public:
  // A new, unlocked re-entrant lock in its own shared segment.
  RLock() : LockBase(make(detail::IpcKind::rlock)) {}
  // The RLock `handle` names.
  static RLock attach(const detail::ShmHandle& handle) {
    return RLock(attach_as(handle, detail::IpcKind::rlock));
  }

 private:
  explicit RLock(LockBase base) : LockBase(std::move(base)) {}
  RLock(detail::SegmentPtr seg, std::size_t offset, detail::MutexState* st)
      : LockBase(detail::IpcKind::rlock, std::move(seg), offset, st) {}
  friend class Condition;
  template <class T>
  friend class Value;
  template <class T>
  friend class Array;
};

// multiprocessing.Semaphore: a counter of permits; acquire takes one (waiting while there
// is none), release gives some back. No owner: any thread or process may release.
class Semaphore {
 public:
  // `value` permits to begin with (Python's default 1); std::invalid_argument if < 0.
  explicit Semaphore(std::int64_t value = 1);

  // Blocks until a permit is taken (true), or with blocking = false tries once.
  bool acquire(bool blocking = true) {
    return detail::semaphore_acquire(*st_, blocking ? detail::Deadline()
                                                    : detail::Deadline(detail::kPoll));
  }
  // Waits at most `timeout` for a permit.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return detail::semaphore_acquire(*st_, detail::deadline_in(timeout));
  }
  // Takes a permit if one is free.
  bool try_acquire() { return acquire(false); }
  // Gives back n permits, waking up to n waiters. SemaphoreOverReleaseError (and no
  // permit added) if that would exceed a BoundedSemaphore's initial value.
  void release(std::uint32_t n = 1) { detail::semaphore_release(*st_, n); }

  // std::lock_guard / std::unique_lock spellings (a semaphore of 1 as a mutex).
  void lock() { acquire(true); }
  // Gives back one permit.
  void unlock() { release(); }
  // Takes a permit if one is free.
  bool try_lock() { return acquire(false); }
  // Waits at most `timeout`.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return acquire(timeout);
  }
  // Waits until `when` (any clock).
  template <class C, class D>
  bool try_lock_until(std::chrono::time_point<C, D> when) {
    return detail::semaphore_acquire(*st_, detail::deadline_at(when));
  }

  // Permits free right now (multiprocessing's get_value(); a snapshot).
  std::uint32_t get_value() const noexcept {
    return st_->value.load(std::memory_order_relaxed);
  }
  // How long acquire() spins before sleeping (shared by every handle); 0 = never spin.
  void set_spin(std::chrono::nanoseconds spin) noexcept {
    st_->spin_ns.store(spin.count(), std::memory_order_relaxed);
  }
  // The export hook: see detail/ipc_segment.hpp.
  detail::ShmHandle handle() const { return detail::ShmHandle{{seg_->part(kind_, offset_)}}; }
  // The Semaphore (or BoundedSemaphore) `handle` names.
  static Semaphore attach(const detail::ShmHandle& handle);

 protected:
  Semaphore(std::int64_t value, bool bounded);
  Semaphore(const detail::ShmHandle& handle, bool bounded_only);

  detail::IpcKind kind_;
  detail::SegmentPtr seg_;
  std::size_t offset_ = 0;
  detail::SemaphoreState* st_;
};

// multiprocessing.BoundedSemaphore: a Semaphore whose release() past the initial value
// throws concur::SemaphoreOverReleaseError (Python: ValueError).
class BoundedSemaphore : public Semaphore {
 public:
  // `value` permits, which is also the most there may ever be.
  explicit BoundedSemaphore(std::int64_t value = 1) : Semaphore(value, true) {}
  // The BoundedSemaphore `handle` names.
  static BoundedSemaphore attach(const detail::ShmHandle& handle) {
    return BoundedSemaphore(handle);
  }

 private:
  explicit BoundedSemaphore(const detail::ShmHandle& handle) : Semaphore(handle, true) {}
};

// multiprocessing.Event / threading.Event: a flag that waiters block on until it is set.
class Event {
 public:
  // A new, clear event.
  Event();
  // Whether the flag is set.
  bool is_set() const noexcept { return detail::event_is_set(*st_); }
  // Sets the flag and wakes every waiter.
  void set() { detail::event_set(*st_); }
  // Clears the flag.
  void clear() { detail::event_clear(*st_); }
  // Blocks until the flag is set; returns true.
  bool wait() { return detail::event_wait(*st_, detail::Deadline()); }
  // Waits at most `timeout`; true if the flag was set (even if cleared again since).
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return detail::event_wait(*st_, detail::deadline_in(timeout));
  }
  // How long wait() spins before sleeping (shared by every handle); 0 = never spin.
  void set_spin(std::chrono::nanoseconds spin) noexcept {
    st_->spin_ns.store(spin.count(), std::memory_order_relaxed);
  }
  // The export hook: see detail/ipc_segment.hpp.
  detail::ShmHandle handle() const {
    return detail::ShmHandle{{seg_->part(detail::IpcKind::event, offset_)}};
  }
  // The Event `handle` names.
  static Event attach(const detail::ShmHandle& handle);

 private:
  explicit Event(const detail::ShmHandle& handle);
  detail::SegmentPtr seg_;
  std::size_t offset_ = 0;
  detail::EventState* st_;
};

// multiprocessing.Condition / threading.Condition: waiting for a state change that other
// threads or processes announce with notify(), under a lock (its own RLock by default).
class Condition {
 public:
  // A condition with a new RLock of its own.
  Condition();
  // A condition over an existing Lock (shared with the caller).
  explicit Condition(const Lock& lock);
  // A condition over an existing RLock (shared with the caller).
  explicit Condition(const RLock& lock);

  // Acquires the underlying lock (see Lock::acquire).
  bool acquire(bool blocking = true) { return lock_.acquire(blocking); }
  // Acquires the underlying lock, waiting at most `timeout`.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return lock_.acquire(timeout);
  }
  // Releases the underlying lock.
  void release() { lock_.release(); }
  // std::lock_guard / std::unique_lock spelling of acquire().
  void lock() { lock_.lock(); }
  // std::lock_guard / std::unique_lock spelling of release().
  void unlock() { lock_.unlock(); }
  // Tries the underlying lock once.
  bool try_lock() { return lock_.try_lock(); }

  // Releases the lock (fully, even an RLock held several times), sleeps until notified,
  // re-acquires it. Needs the lock (LockOwnershipError otherwise). May wake spuriously,
  // as in Python: wait in a loop or use wait_for(predicate). Returns true.
  bool wait();
  // As wait(), for at most `timeout`; false if it timed out.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until_deadline(detail::deadline_in(timeout));
  }
  // Waits until predicate() is true; returns it (Python's wait_for without timeout).
  template <class Predicate>
  bool wait_for(Predicate predicate) {
    while (!predicate()) wait();
    return true;
  }
  // Waits until predicate() is true or `timeout` passes; returns predicate()'s last value.
  template <class Predicate, class Rep, class Period>
  bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout) {
    const detail::Deadline deadline = detail::deadline_in(timeout);
    bool result = predicate();
    while (!result) {
      if (detail::expired(deadline)) break;
      wait_until_deadline(deadline);
      result = predicate();
    }
    return result;
  }
  // Wakes at most n of the waiting threads/processes. Needs the lock.
  void notify(std::size_t n = 1);
  // Wakes every waiting thread/process. Needs the lock.
  void notify_all();

  // The export hook (the condition's part, then its lock's): see detail/ipc_segment.hpp.
  detail::ShmHandle handle() const;
  // The Condition `handle` names, with the same lock.
  static Condition attach(const detail::ShmHandle& handle);

 private:
  Condition(detail::LockBase lock, detail::SegmentPtr seg, std::size_t offset,
            detail::CondState* st)
      : lock_(std::move(lock)), seg_(std::move(seg)), offset_(offset), st_(st) {}
  static Condition make(detail::LockBase lock);
  bool wait_until_deadline(const detail::Deadline& deadline);

  detail::LockBase lock_;
  detail::SegmentPtr seg_;
  std::size_t offset_;
  detail::CondState* st_;
};

// multiprocessing.Barrier / threading.Barrier: `parties` threads or processes wait until
// all have arrived, then all continue; reusable cycle after cycle.
class Barrier {
 public:
  // A barrier for `parties` (> 0, else std::invalid_argument); `action` runs in the last
  // arriving party, under the barrier's lock, before the others are released.
  explicit Barrier(std::size_t parties, std::function<void()> action = {});
  // The same with a default timeout for wait().
  template <class Rep, class Period>
  Barrier(std::size_t parties, std::function<void()> action,
          std::chrono::duration<Rep, Period> timeout)
      : Barrier(parties, std::move(action),
                std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count()) {}

  // Waits for all parties; returns this party's arrival index, 0 .. parties-1 (the last
  // to arrive gets parties-1 and runs the action). BrokenBarrierError when the barrier is
  // or becomes broken, is reset meanwhile, or the default timeout passes (which breaks it).
  std::size_t wait();
  // As wait() with this timeout instead of the default one.
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return detail::barrier_wait(*st_, detail::deadline_in(timeout), action_);
  }
  // Back to the empty state; current waiters get BrokenBarrierError.
  void reset() { detail::barrier_reset(*st_); }
  // Puts the barrier in the broken state: current and future waits throw until reset().
  void abort() { detail::barrier_abort(*st_); }
  // The number of parties needed to pass.
  std::size_t parties() const noexcept { return st_->parties; }
  // The number of parties waiting now.
  std::size_t n_waiting() const { return detail::barrier_n_waiting(*st_); }
  // Whether the barrier is broken.
  bool broken() const { return detail::barrier_broken(*st_); }

  // The export hook: see detail/ipc_segment.hpp. The action is not part of it.
  detail::ShmHandle handle() const {
    return detail::ShmHandle{{seg_->part(detail::IpcKind::barrier, offset_)}};
  }
  // The Barrier `handle` names; `action` is what this process runs when it arrives last.
  static Barrier attach(const detail::ShmHandle& handle, std::function<void()> action = {});

 private:
  Barrier(std::size_t parties, std::function<void()> action, std::int64_t timeout_ns);
  Barrier(const detail::ShmHandle& handle, std::function<void()> action);

  detail::SegmentPtr seg_;
  std::size_t offset_ = 0;
  detail::BarrierState* st_;
  std::function<void()> action_;
};

}  // namespace concur
