// concur/detail/ipc_sync.hpp: the state of the process-shared primitives and the
// operations on it, shared by synchronize.hpp and shared_memory.hpp.
//
// Every struct here lives in a Segment (shared memory) and is used by several processes at
// once, so it holds only plain data, atomics and a process-shared pthread mutex: no
// pointers, no std:: containers. Deadlines are CLOCK_MONOTONIC (detail::Clock); an empty
// Deadline waits forever and an expired one polls once without blocking or spinning.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "concur/detail/futex.hpp"

namespace concur::detail {

// A deadline that has already passed: "try once".
inline constexpr Clock::time_point kPoll = Clock::time_point::min();

// The deadline for a timeout given in any std::chrono unit.
template <class Rep, class Period>
Deadline deadline_in(std::chrono::duration<Rep, Period> timeout) {
  return Deadline(deadline_after(timeout));
}
// The steady-clock deadline for a time point of any clock.
template <class C, class D>
Deadline deadline_at(std::chrono::time_point<C, D> when) {
  if constexpr (std::is_same_v<C, Clock>) {
    return Deadline(std::chrono::time_point_cast<Clock::duration>(when));
  } else {
    return Deadline(deadline_after(when - C::now()));
  }
}

// ---- Lock / RLock: robust, process-shared pthread mutex plus an owner record ----------
// The pthread mutex gives owner-death detection (EOWNERDEAD) from the kernel's robust
// list; `owner` and `count` add what pthread does not expose: who holds it (for owner
// checks and Condition) and the recursion depth (so Condition can release an RLock fully).
struct MutexState {
  pthread_mutex_t mutex;
  std::atomic<std::int32_t> owner;  // tid of the holder, 0 when free
  std::uint32_t count;              // recursion depth; written only by the holder
  std::uint32_t recursive;
  std::atomic<std::int64_t> spin_ns;
};

void mutex_init(MutexState& st, bool recursive);
// Acquires; false on timeout / busy poll. Throws AbandonedLockError (lock left free and
// consistent) when the previous holder died, LockOwnershipError when a non-recursive
// lock is re-acquired by its holder with an infinite deadline.
bool mutex_acquire(MutexState& st, const Deadline& deadline);
// Releases one level; LockOwnershipError unless the calling thread holds it.
void mutex_release(MutexState& st);
// Whether the calling thread holds it.
bool mutex_owned(const MutexState& st) noexcept;
// Releases every level (the caller holds it) and returns the depth, for Condition::wait.
std::uint32_t mutex_release_save(MutexState& st);
// Re-acquires after mutex_release_save (blocking). Returns true when the previous holder
// had died: the lock is then held, consistent, and the caller reports the abandonment
// (`dead_owner`, if given, receives the dead holder's tid).
bool mutex_acquire_restore(MutexState& st, std::uint32_t count,
                           std::int32_t* dead_owner = nullptr);

// Holds a MutexState (if any) for a scope; used where no Lock object exists.
class MutexGuard {
 public:
  explicit MutexGuard(MutexState* st) : st_(st) {
    if (st_) mutex_acquire(*st_, Deadline());
  }
  ~MutexGuard() {
    if (st_) mutex_release(*st_);
  }
  MutexGuard(const MutexGuard&) = delete;
  MutexGuard& operator=(const MutexGuard&) = delete;

 private:
  MutexState* st_;
};

// ---- Semaphore / BoundedSemaphore: a futex word ---------------------------------------
struct SemaphoreState {
  std::atomic<std::uint32_t> value;
  std::atomic<std::uint32_t> waiters;  // sleepers (a dead one only costs a spare wake)
  std::uint32_t bound;                 // the most permits there may be
  std::uint32_t bounded;               // BoundedSemaphore: release past `bound` throws
  std::atomic<std::int64_t> spin_ns;
};
inline constexpr std::uint32_t kSemaphoreMax = 0x7fffffff;  // SEM_VALUE_MAX

void semaphore_init(SemaphoreState& st, std::uint32_t value, bool bounded);
bool semaphore_acquire(SemaphoreState& st, const Deadline& deadline);
// Adds n permits; SemaphoreOverReleaseError (nothing added) past the bound or the maximum.
void semaphore_release(SemaphoreState& st, std::uint32_t n);

// ---- Event: a futex word, even = clear, odd = set -------------------------------------
// Counting transitions rather than storing a flag lets a waiter notice a set() that was
// undone by clear() before it woke, as Python's Event does.
struct EventState {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> waiters;
  std::atomic<std::int64_t> spin_ns;
};

void event_init(EventState& st);
void event_set(EventState& st);
void event_clear(EventState& st);
bool event_is_set(const EventState& st) noexcept;
bool event_wait(EventState& st, const Deadline& deadline);

// ---- Condition: notification tokens handed to the waiters of earlier generations -------
// All fields but `seq` are guarded by the condition's lock. A notify gives k tokens and
// starts a new generation; only waiters that arrived before it may take a token, so a
// late arrival cannot steal a wake-up meant for an earlier one, and notify(n) wakes at
// most n. `seq` is the futex word sleepers wait on.
struct CondState {
  std::atomic<std::uint32_t> seq;
  std::uint32_t reserved;
  std::uint64_t generation;
  std::uint64_t waiters;
  std::uint64_t tokens;
  std::atomic<std::int64_t> spin_ns;
};

enum class CondWait { notified, timeout, abandoned };

void cond_init(CondState& st);
// Releases `lock` fully, waits for a notification or the deadline, re-acquires `lock`.
// On `abandoned` the lock is held again, made consistent after its previous holder died.
CondWait cond_wait(CondState& st, MutexState& lock, const Deadline& deadline);
void cond_notify(CondState& st, std::uint64_t n);

// ---- Barrier: Python's threading.Barrier algorithm on the pieces above ----------------
// `parties` BarrierSlots follow the struct in the same object: each party inside wait()
// records (pid, tid) there, so a party that died inside wait() (or in the action, holding
// the lock) can be recognised and forgotten instead of being counted forever.
struct BarrierState {
  MutexState mutex;
  CondState cond;
  std::int32_t state;  // 0 filling, 1 draining, -1 resetting, -2 broken
  std::uint32_t parties;
  std::uint32_t count;  // parties inside wait(); equals the occupied slots
  std::uint32_t reserved;
  std::int64_t timeout_ns;  // default timeout of wait(); < 0: none
};
struct BarrierSlot {
  std::int32_t pid;
  std::int32_t tid;  // 0: free
};
// Bytes of state for a barrier of `parties` (the struct plus its slots).
inline std::size_t barrier_state_size(std::uint32_t parties) noexcept {
  return sizeof(BarrierState) + std::size_t{parties} * sizeof(BarrierSlot);
}

// Initialises a barrier whose state has barrier_state_size(parties) bytes.
void barrier_init(BarrierState& st, std::uint32_t parties, std::int64_t timeout_ns);
// Python's Barrier.wait: the arrival index; BrokenBarrierError when broken or timed out.
std::size_t barrier_wait(BarrierState& st, const Deadline& deadline,
                         const std::function<void()>& action);
void barrier_reset(BarrierState& st);
void barrier_abort(BarrierState& st);
std::size_t barrier_n_waiting(BarrierState& st);
bool barrier_broken(BarrierState& st);

}  // namespace concur::detail
