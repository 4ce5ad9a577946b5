// The process-shared primitives' operations (see concur/detail/ipc_sync.hpp).
#include "concur/detail/ipc_sync.hpp"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

#include "concur/detail/ipc_segment.hpp"
#include "concur/errors.hpp"

#if defined(__SANITIZE_THREAD__)
#define CONCUR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CONCUR_TSAN 1
#endif
#endif

namespace concur::detail {
namespace {

constexpr bool kShared = true;  // futexes in shared memory must not be process-private

bool is_forever(const Deadline& d) noexcept {
  return !d || *d == Clock::time_point::max();
}
bool is_poll(const Deadline& d) noexcept { return d && *d == kPoll; }

std::chrono::nanoseconds spin_budget(const std::atomic<std::int64_t>& ns) noexcept {
  return std::chrono::nanoseconds(ns.load(std::memory_order_relaxed));
}

// Spins (bounded by the budget and by the deadline) only when the caller may wait at all.
template <class Pred>
bool spin_if_waiting(const Deadline& deadline, const std::atomic<std::int64_t>& budget,
                     Pred&& pred) {
  if (is_poll(deadline)) return false;
  auto ns = spin_budget(budget);
  if (ns.count() <= 0) return false;
  if (!is_forever(deadline)) {
    auto left = *deadline - Clock::now();
    if (left <= Clock::duration::zero()) return false;
    if (left < ns) ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
  }
  return spin_until(std::forward<Pred>(pred), ns);
}

[[noreturn]] void throw_os(const char* what, int err) {
  throw OSError(std::string(what) + ": " + std::strerror(err), err);
}

timespec to_timespec(std::chrono::nanoseconds ns) noexcept {
  if (ns.count() < 0) ns = std::chrono::nanoseconds(0);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
  return ts;
}

// Blocks on the pthread mutex until the deadline; returns pthread's error code.
int pthread_lock_until(pthread_mutex_t& m, const Deadline& deadline) {
  if (is_forever(deadline)) return pthread_mutex_lock(&m);
#if defined(CONCUR_TSAN)
  // TSan (clang 14) does not intercept pthread_mutex_clocklock, and an acquisition it
  // cannot see breaks its model of the mutex; the realtime variant it does intercept is
  // re-armed from the monotonic deadline so clock steps cannot stretch the wait.
  for (;;) {
    auto left = *deadline - Clock::now();
    if (left <= Clock::duration::zero()) return pthread_mutex_trylock(&m) == 0 ? 0 : ETIMEDOUT;
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    auto abs = std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) +
               std::chrono::duration_cast<std::chrono::nanoseconds>(left);
    timespec ts = to_timespec(abs);
    int rc = pthread_mutex_timedlock(&m, &ts);
    if (rc != ETIMEDOUT || Clock::now() >= *deadline) return rc;
  }
#else
  timespec ts = to_timespec(
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()));
  return pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &ts);
#endif
}

const char* lock_name(const MutexState& st) noexcept {
  return st.recursive ? "RLock" : "Lock";
}

// Makes a mutex whose holder died usable again; the caller then owns it.
std::int32_t recover(MutexState& st) {
  std::int32_t dead = st.owner.load(std::memory_order_relaxed);
  int rc = pthread_mutex_consistent(&st.mutex);
  if (rc != 0) throw_os("pthread_mutex_consistent", rc);
  return dead;
}

[[noreturn]] void throw_abandoned(const MutexState& st, std::int32_t dead, bool held) {
  std::string msg = std::string(lock_name(st)) + ": its previous holder";
  if (dead > 0) msg += " (thread " + std::to_string(dead) + ")";
  msg += " died while holding it; the data it protects may be inconsistent. The lock is "
         "consistent again and ";
  msg += held ? "is held by the caller." : "free: acquire it again to continue.";
  throw AbandonedLockError(msg, dead);
}

}  // namespace

// ---------------------------------------------------------------- Lock / RLock

void mutex_init(MutexState& st, bool recursive) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&st.mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_os("pthread_mutex_init", rc);
  st.owner.store(0, std::memory_order_relaxed);
  st.count = 0;
  st.recursive = recursive ? 1 : 0;
  st.spin_ns.store(kSpinFor.count(), std::memory_order_relaxed);
}

bool mutex_owned(const MutexState& st) noexcept {
  return st.owner.load(std::memory_order_relaxed) == current_tid();
}

bool mutex_acquire(MutexState& st, const Deadline& deadline) {
  const pid_t me = current_tid();
  if (st.owner.load(std::memory_order_relaxed) == me) {
    if (st.recursive) {
      ++st.count;
      return true;
    }
    // Nobody else can release a lock we hold, so waiting could only end in a timeout
    // (Python's outcome) or, without one, in a deadlock: say so instead of hanging.
    if (is_forever(deadline))
      throw LockOwnershipError(
          "Lock.acquire(): the calling thread already holds this non-recursive Lock; "
          "blocking would deadlock (use RLock for re-entrant locking)");
    return false;
  }
  int rc = pthread_mutex_trylock(&st.mutex);
  if (rc == EBUSY && !is_poll(deadline)) {
    spin_if_waiting(deadline, st.spin_ns, [&] {
      rc = pthread_mutex_trylock(&st.mutex);
      return rc != EBUSY;
    });
    if (rc == EBUSY) rc = pthread_lock_until(st.mutex, deadline);
  }
  switch (rc) {
    case 0:
      st.owner.store(me, std::memory_order_relaxed);
      st.count = 1;
      return true;
    case EBUSY:
    case ETIMEDOUT:
      return false;
    case EOWNERDEAD: {
      // Reported to this acquirer only, with the lock handed back so the next acquire
      // (anyone's) works: an exception cannot carry a held lock out of acquire() safely,
      // since no guard exists yet to release it.
      std::int32_t dead = recover(st);
      st.owner.store(0, std::memory_order_relaxed);
      st.count = 0;
      pthread_mutex_unlock(&st.mutex);
      throw_abandoned(st, dead, false);
    }
    case ENOTRECOVERABLE:
      throw AbandonedLockError(std::string(lock_name(st)) +
                               ": not recoverable (a holder died and it was never made "
                               "consistent)");
    default:
      throw_os("pthread_mutex_lock", rc);
  }
}

void mutex_release(MutexState& st) {
  if (st.owner.load(std::memory_order_relaxed) != current_tid())
    throw LockOwnershipError(std::string(lock_name(st)) +
                             ".release(): cannot release un-acquired lock (not held by the "
                             "calling thread)");
  if (--st.count > 0) return;
  st.owner.store(0, std::memory_order_relaxed);
  int rc = pthread_mutex_unlock(&st.mutex);
  if (rc != 0) throw_os("pthread_mutex_unlock", rc);
}

std::uint32_t mutex_release_save(MutexState& st) {
  if (!mutex_owned(st))
    throw LockOwnershipError(std::string(lock_name(st)) + ": cannot wait on un-acquired lock");
  std::uint32_t count = st.count;
  st.count = 1;
  mutex_release(st);
  return count;
}

bool mutex_acquire_restore(MutexState& st, std::uint32_t count, std::int32_t* dead_owner) {
  const pid_t me = current_tid();
  int rc = pthread_mutex_trylock(&st.mutex);
  if (rc == EBUSY) {
    spin_until([&] {
      rc = pthread_mutex_trylock(&st.mutex);
      return rc != EBUSY;
    }, spin_budget(st.spin_ns));
    if (rc == EBUSY) rc = pthread_mutex_lock(&st.mutex);
  }
  bool abandoned = false;
  std::int32_t dead = 0;
  if (rc == EOWNERDEAD) {
    dead = recover(st);
    abandoned = true;
  } else if (rc != 0) {
    throw_os("pthread_mutex_lock", rc);
  }
  if (dead_owner) *dead_owner = dead;
  st.owner.store(me, std::memory_order_relaxed);
  st.count = count;
  return abandoned;
}

// ---------------------------------------------------------------- Semaphore

void semaphore_init(SemaphoreState& st, std::uint32_t value, bool bounded) {
  st.value.store(value, std::memory_order_relaxed);
  st.waiters.store(0, std::memory_order_relaxed);
  st.bound = bounded ? value : kSemaphoreMax;
  st.bounded = bounded ? 1 : 0;
  st.spin_ns.store(kSpinFor.count(), std::memory_order_relaxed);
}

namespace {
bool semaphore_try(SemaphoreState& st) noexcept {
  std::uint32_t v = st.value.load(std::memory_order_seq_cst);
  while (v > 0) {
    if (st.value.compare_exchange_weak(v, v - 1, std::memory_order_seq_cst,
                                       std::memory_order_seq_cst))
      return true;
  }
  return false;
}
}  // namespace

bool semaphore_acquire(SemaphoreState& st, const Deadline& deadline) {
  if (semaphore_try(st)) return true;
  if (is_poll(deadline)) return false;
  if (spin_if_waiting(deadline, st.spin_ns, [&] { return semaphore_try(st); })) return true;
  // Announce the sleeper before the final check, so a release either sees it and wakes
  // it or happened early enough for the check to see the permit (both seq_cst).
  st.waiters.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    if (semaphore_try(st)) break;
    if (!futex_wait(&st.value, 0, deadline, kShared)) {
      bool got = semaphore_try(st);
      st.waiters.fetch_sub(1, std::memory_order_seq_cst);
      return got;
    }
  }
  st.waiters.fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

void semaphore_release(SemaphoreState& st, std::uint32_t n) {
  if (n == 0) return;
  const std::uint32_t limit = st.bound;
  std::uint32_t v = st.value.load(std::memory_order_relaxed);
  do {
    if (n > limit || v > limit - n) {
      if (st.bounded) throw SemaphoreOverReleaseError();
      throw SemaphoreOverReleaseError("Semaphore released past its maximum value");
    }
  } while (!st.value.compare_exchange_weak(v, v + n, std::memory_order_seq_cst,
                                           std::memory_order_relaxed));
  if (st.waiters.load(std::memory_order_seq_cst) > 0)
    futex_wake(&st.value, n > INT_MAX ? INT_MAX : static_cast<int>(n), kShared);
}

// ---------------------------------------------------------------- Event

void event_init(EventState& st) {
  st.word.store(0, std::memory_order_relaxed);
  st.waiters.store(0, std::memory_order_relaxed);
  st.spin_ns.store(kSpinFor.count(), std::memory_order_relaxed);
}

bool event_is_set(const EventState& st) noexcept {
  return (st.word.load(std::memory_order_acquire) & 1u) != 0;
}

void event_set(EventState& st) {
  std::uint32_t w = st.word.load(std::memory_order_relaxed);
  while ((w & 1u) == 0) {
    if (st.word.compare_exchange_weak(w, w + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      if (st.waiters.load(std::memory_order_seq_cst) > 0)
        futex_wake(&st.word, INT_MAX, kShared);
      return;
    }
  }
}

void event_clear(EventState& st) {
  std::uint32_t w = st.word.load(std::memory_order_relaxed);
  while ((w & 1u) != 0) {
    if (st.word.compare_exchange_weak(w, w + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return;
  }
}

bool event_wait(EventState& st, const Deadline& deadline) {
  const std::uint32_t w = st.word.load(std::memory_order_acquire);
  if (w & 1u) return true;
  // From a clear state the first change of the word is a set(), so "changed" means
  // "was set while we waited", even if it has been cleared again since.
  auto changed = [&] { return st.word.load(std::memory_order_acquire) != w; };
  if (is_poll(deadline)) return false;
  if (spin_if_waiting(deadline, st.spin_ns, changed)) return true;
  st.waiters.fetch_add(1, std::memory_order_seq_cst);
  bool result = true;
  for (;;) {
    if (st.word.load(std::memory_order_seq_cst) != w) break;
    if (!futex_wait(&st.word, w, deadline, kShared)) {
      result = changed();
      break;
    }
  }
  st.waiters.fetch_sub(1, std::memory_order_seq_cst);
  return result;
}

// ---------------------------------------------------------------- Condition

void cond_init(CondState& st) {
  st.seq.store(0, std::memory_order_relaxed);
  st.generation = 0;
  st.waiters = 0;
  st.tokens = 0;
  st.spin_ns.store(kSpinFor.count(), std::memory_order_relaxed);
}

CondWait cond_wait(CondState& st, MutexState& lock, const Deadline& deadline) {
  if (!mutex_owned(lock))
    throw LockOwnershipError("Condition.wait(): cannot wait on un-acquired lock");
  const std::uint64_t my_generation = st.generation;
  ++st.waiters;
  CondWait result = CondWait::timeout;
  for (;;) {
    // Read under the lock: a notify needs the lock, so none can slip in between this
    // read and the futex_wait below without changing the word we sleep on.
    const std::uint32_t seq = st.seq.load(std::memory_order_relaxed);
    const std::uint32_t depth = mutex_release_save(lock);
    bool in_time = false;
    if (!is_poll(deadline)) {
      auto moved = [&] { return st.seq.load(std::memory_order_acquire) != seq; };
      in_time = spin_if_waiting(deadline, st.spin_ns, moved) ||
                futex_wait(&st.seq, seq, deadline, kShared);
    }
    if (mutex_acquire_restore(lock, depth)) {
      result = CondWait::abandoned;
      break;
    }
    if (st.generation != my_generation && st.tokens > 0) {
      --st.tokens;
      result = CondWait::notified;
      break;
    }
    if (!in_time || expired(deadline)) break;
  }
  --st.waiters;
  if (st.tokens > st.waiters) st.tokens = st.waiters;
  return result;
}

void cond_notify(CondState& st, std::uint64_t n) {
  std::uint64_t unnotified = st.waiters - std::min(st.tokens, st.waiters);
  std::uint64_t k = std::min(n, unnotified);
  if (k == 0) return;
  st.tokens += k;
  ++st.generation;
  st.seq.fetch_add(1, std::memory_order_release);
  futex_wake(&st.seq, k > INT_MAX ? INT_MAX : static_cast<int>(k), kShared);
}

// ---------------------------------------------------------------- Barrier

void barrier_init(BarrierState& st, std::uint32_t parties, std::int64_t timeout_ns) {
  mutex_init(st.mutex, false);
  cond_init(st.cond);
  st.state = 0;
  st.parties = parties;
  st.count = 0;
  st.timeout_ns = timeout_ns;
  // The slots are zero already: fresh memfd pages.
}

namespace {

constexpr std::int32_t kFilling = 0, kDraining = 1, kResetting = -1, kBroken = -2;

BarrierSlot* slots_of(BarrierState& st) noexcept {
  return reinterpret_cast<BarrierSlot*>(reinterpret_cast<std::byte*>(&st) + sizeof(BarrierState));
}

// Whether the thread is still running: a zombie (dead, not yet reaped) counts as dead.
bool thread_alive(const BarrierSlot& slot) {
  std::string path = "/proc/" + std::to_string(slot.pid) + "/task/" +
                     std::to_string(slot.tid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return errno == EACCES;  // gone; EACCES: exists but not ours to inspect
  char buf[512];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');  // the name may contain anything but ')' last
  if (!paren || paren[1] != ' ') return true;
  char state = paren[2];
  return state != 'Z' && state != 'X' && state != 'x';
}

void barrier_break(BarrierState& st) {
  st.state = kBroken;
  cond_notify(st.cond, UINT64_MAX);
}

// A drain or reset completes when the last party leaves.
void barrier_maybe_refill(BarrierState& st) {
  if (st.count == 0 && (st.state == kResetting || st.state == kDraining)) {
    st.state = kFilling;
    cond_notify(st.cond, UINT64_MAX);
  }
}

// Forgets parties that died inside wait() (`dead_tid`, known dead, or found dead through
// /proc), and recounts from the slots. Returns whether any was forgotten.
bool barrier_prune(BarrierState& st, std::int32_t dead_tid = 0) {
  BarrierSlot* slots = slots_of(st);
  bool any = false;
  std::uint32_t occupied = 0;
  for (std::uint32_t i = 0; i < st.parties; ++i) {
    if (slots[i].tid == 0) continue;
    if (slots[i].tid == dead_tid || !thread_alive(slots[i])) {
      slots[i] = BarrierSlot{0, 0};
      any = true;
    } else {
      ++occupied;
    }
  }
  st.count = occupied;
  if (any) barrier_maybe_refill(st);
  return any;
}

void barrier_enter(BarrierState& st) {
  BarrierSlot* slots = slots_of(st);
  for (std::uint32_t i = 0; i < st.parties; ++i)
    if (slots[i].tid == 0) {
      slots[i] = BarrierSlot{static_cast<std::int32_t>(getpid()), current_tid()};
      ++st.count;
      return;
    }
  // Every slot taken yet we were admitted: a dead party's slot was never reclaimed.
  barrier_prune(st);
  for (std::uint32_t i = 0; i < st.parties; ++i)
    if (slots[i].tid == 0) {
      slots[i] = BarrierSlot{static_cast<std::int32_t>(getpid()), current_tid()};
      ++st.count;
      return;
    }
  throw BrokenBarrierError("barrier has more parties inside wait() than it was made for");
}

void barrier_leave(BarrierState& st) {
  BarrierSlot* slots = slots_of(st);
  const std::int32_t me = current_tid();
  for (std::uint32_t i = 0; i < st.parties; ++i)
    if (slots[i].tid == me && slots[i].pid == static_cast<std::int32_t>(getpid())) {
      slots[i] = BarrierSlot{0, 0};
      if (st.count > 0) --st.count;
      break;
    }
  barrier_maybe_refill(st);
}

// Holds the barrier's own lock. A holder that died (say, inside the action) leaves the
// state suspect: it is forgotten as a party and the barrier is declared broken.
class BarrierGuard {
 public:
  explicit BarrierGuard(BarrierState& st) : st_(st) {
    std::int32_t dead = 0;
    if (mutex_acquire_restore(st_.mutex, 1, &dead)) {
      barrier_prune(st_, dead);
      barrier_break(st_);
    }
  }
  ~BarrierGuard() { mutex_release(st_.mutex); }
  BarrierGuard(const BarrierGuard&) = delete;
  BarrierGuard& operator=(const BarrierGuard&) = delete;

 private:
  BarrierState& st_;
};

// Waits on the barrier's condition; false on timeout. An abandoned lock breaks it.
bool barrier_cond_wait(BarrierState& st, const Deadline& deadline) {
  switch (cond_wait(st.cond, st.mutex, deadline)) {
    case CondWait::notified: return true;
    case CondWait::timeout: return false;
    case CondWait::abandoned:
      barrier_prune(st);
      barrier_break(st);
      return true;
  }
  return true;
}

}  // namespace

std::size_t barrier_wait(BarrierState& st, const Deadline& deadline,
                         const std::function<void()>& action) {
  BarrierGuard guard(st);
  // Wait for a previous cycle to drain or a reset to finish.
  while (st.state == kDraining || st.state == kResetting) {
    if (!barrier_cond_wait(st, deadline)) {
      // A drain that never ends means a party died inside wait(): forget it and look again.
      if (barrier_prune(st) && st.state == kFilling) break;
      barrier_break(st);
      throw BrokenBarrierError("barrier wait timed out (the barrier is now broken)");
    }
  }
  if (st.state < 0) throw BrokenBarrierError();
  const std::size_t index = st.count;
  barrier_enter(st);
  try {
    if (index + 1 == st.parties) {
      try {
        if (action) action();
      } catch (...) {
        barrier_break(st);
        throw;
      }
      st.state = kDraining;
      cond_notify(st.cond, UINT64_MAX);
    } else {
      bool in_time = true;
      while (st.state == kFilling && in_time) in_time = barrier_cond_wait(st, deadline);
      if (st.state == kFilling) {
        barrier_prune(st);
        barrier_break(st);
        throw BrokenBarrierError("barrier wait timed out (the barrier is now broken)");
      }
      if (st.state < 0) throw BrokenBarrierError();
    }
  } catch (...) {
    barrier_leave(st);
    throw;
  }
  barrier_leave(st);
  return index;
}

void barrier_reset(BarrierState& st) {
  BarrierGuard guard(st);
  barrier_prune(st);
  if (st.count > 0) {
    // Waiters in flight get BrokenBarrierError; the state returns to filling when the
    // last of them has left.
    if (st.state == kFilling || st.state == kBroken) st.state = kResetting;
  } else {
    st.state = kFilling;
  }
  cond_notify(st.cond, UINT64_MAX);
}

void barrier_abort(BarrierState& st) {
  BarrierGuard guard(st);
  barrier_break(st);
}

std::size_t barrier_n_waiting(BarrierState& st) {
  BarrierGuard guard(st);
  return st.state == kFilling ? st.count : 0;
}

bool barrier_broken(BarrierState& st) {
  BarrierGuard guard(st);
  return st.state == kBroken;
}

}  // namespace concur::detail
