// Tests of concur/synchronize.hpp: Lock, RLock, Semaphore, BoundedSemaphore, Event,
// Condition, Barrier, between threads and between forked processes.
#include "concur/synchronize.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "concur/shared_memory.hpp"
#include "support/children.hpp"

using namespace std::chrono_literals;
using concur::AbandonedLockError;
using concur::Barrier;
using concur::BoundedSemaphore;
using concur::BrokenBarrierError;
using concur::Condition;
using concur::Event;
using concur::Lock;
using concur::LockOwnershipError;
using concur::RLock;
using concur::Semaphore;
using concur::SemaphoreOverReleaseError;

namespace {

constexpr auto kLong = 30s;  // "forever" for a wait that must succeed

using test_support::Children;

// Polls `pred` until true (no timing asserted; the ctest timeout catches a hang).
template <class Pred>
void eventually(Pred pred) {
  while (!pred()) std::this_thread::sleep_for(1ms);
}

// Runs `parties` waits on the barrier (this thread plus parties-1 others), each with a
// bounded timeout; the sorted indices they got, with 99 for a wait that threw.
std::multiset<std::size_t> pass_together(Barrier& barrier, int parties) {
  std::vector<std::size_t> got(static_cast<std::size_t>(parties), 99);
  auto one = [&](int i) {
    try {
      got[static_cast<std::size_t>(i)] = barrier.wait(5s);
    } catch (const BrokenBarrierError&) {
    }
  };
  std::vector<std::thread> others;
  for (int i = 1; i < parties; ++i) others.emplace_back(one, i);
  one(0);
  for (auto& t : others) t.join();
  return {got.begin(), got.end()};
}

}  // namespace

// ============================================================== Lock

TEST(Lock, AcquireReleaseAndTryFromAnotherThread) {
  Lock lock;
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.is_owned());
  bool other_got = true;
  std::thread([&] { other_got = lock.try_acquire(); }).join();
  EXPECT_FALSE(other_got);
  lock.release();
  EXPECT_FALSE(lock.is_owned());
  std::thread([&] {
    other_got = lock.try_acquire();
    if (other_got) lock.release();
  }).join();
  EXPECT_TRUE(other_got);
}

TEST(Lock, NonBlockingAcquireAndTimeoutReturnFalseWhenHeldElsewhere) {
  Lock lock;
  Event held, done;
  std::thread holder([&] {
    lock.acquire();
    held.set();
    done.wait();
    lock.release();
  });
  held.wait();
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_FALSE(lock.try_acquire());
  EXPECT_FALSE(lock.acquire(20ms));
  EXPECT_FALSE(lock.acquire(-1s));  // a negative timeout polls
  done.set();
  holder.join();
  EXPECT_TRUE(lock.acquire(kLong));
  lock.release();
}

TEST(Lock, TimedAcquireSucceedsWhenReleasedInTime) {
  for (auto spin : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(20'000)}) {
    Lock lock;
    lock.set_spin(spin);
    Event held;
    std::thread holder([&] {
      lock.acquire();
      held.set();
      std::this_thread::sleep_for(20ms);
      lock.release();
    });
    held.wait();
    EXPECT_TRUE(lock.acquire(kLong));
    lock.release();
    holder.join();
  }
}

TEST(Lock, WorksWithStandardGuards) {
  Lock a, b;
  {
    std::lock_guard guard(a);
    EXPECT_TRUE(a.is_owned());
  }
  EXPECT_FALSE(a.is_owned());
  {
    std::scoped_lock both(a, b);
    EXPECT_TRUE(a.is_owned());
    EXPECT_TRUE(b.is_owned());
  }
  EXPECT_FALSE(a.is_owned());
  EXPECT_FALSE(b.is_owned());
  {
    std::unique_lock lk(a, std::defer_lock);
    EXPECT_TRUE(lk.try_lock_for(10ms));
    lk.unlock();
    EXPECT_TRUE(lk.try_lock_until(std::chrono::system_clock::now() + 10ms));
  }
}

TEST(Lock, ReacquireByHolderThrowsInsteadOfDeadlocking) {
  // The seed's deadlock exercise: g() holds the lock and calls f(), which takes it again.
  Lock lock;
  lock.acquire();
  EXPECT_THROW(lock.acquire(), LockOwnershipError);
  EXPECT_FALSE(lock.try_acquire());
  EXPECT_FALSE(lock.acquire(10ms));
  lock.release();
  EXPECT_TRUE(lock.try_acquire());
  lock.release();
}

TEST(Lock, ReleaseWithoutHoldingThrows) {
  Lock lock;
  EXPECT_THROW(lock.release(), LockOwnershipError);
  lock.acquire();
  std::thread([&] { EXPECT_THROW(lock.release(), LockOwnershipError); }).join();
  EXPECT_TRUE(lock.is_owned());  // the failed release did not touch it
  lock.release();
  EXPECT_THROW(lock.release(), LockOwnershipError);
}

TEST(Lock, MutualExclusionBetweenThreads) {
  Lock lock;
  long counter = 0;  // plain memory: TSan reports it if the lock fails to exclude
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        std::lock_guard guard(lock);
        ++counter;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 4 * 5000);
}

TEST(Lock, CopiesShareOneLock) {
  Lock a;
  Lock b = a;
  a.acquire();
  bool got = true;
  std::thread([&] { got = b.try_acquire(); }).join();
  EXPECT_FALSE(got);
  EXPECT_TRUE(b.is_owned());  // same lock, same owner
  b.release();
  EXPECT_FALSE(a.is_owned());
}

TEST(Lock, MutualExclusionAcrossProcesses) {
  // K processes each add 1 N times to shared memory under the Lock; a read, a yield, then
  // a write makes lost updates near certain if the lock did not exclude.
  constexpr int K = 4, N = 500;
  Lock lock;
  auto counter = concur::RawValue<long>(0);
  Children kids;
  std::vector<pid_t> pids;
  for (int k = 0; k < K; ++k)
    pids.push_back(kids.fork([&] {
      for (int i = 0; i < N; ++i) {
        std::lock_guard guard(lock);
        long v = *counter.get_obj();
        if (i % 16 == 0) sched_yield();
        *counter.get_obj() = v + 1;
      }
      return 0;
    }));
  for (pid_t p : pids) EXPECT_EQ(kids.wait(p), 0);
  EXPECT_EQ(counter.value(), long{K} * N);
}

TEST(Lock, HolderProcessExitIsReportedThenLockWorks) {
  Lock lock;
  Children kids;
  pid_t pid = kids.fork([&] {
    lock.acquire();
    _exit(7);  // dies holding it
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 7);
  try {
    lock.acquire();
    ADD_FAILURE() << "acquire after the holder died did not report it";
    lock.release();
  } catch (const AbandonedLockError& e) {
    EXPECT_GT(e.owner_tid(), 0);
    EXPECT_NE(std::string(e.what()).find("died"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(lock.is_owned());  // reported with the lock left free
  EXPECT_TRUE(lock.acquire(kLong));
  lock.release();
  // And it still excludes across processes afterwards.
  lock.acquire();
  pid = kids.fork([&] { return lock.try_acquire() ? 1 : 0; });
  EXPECT_EQ(kids.wait(pid), 0);
  lock.release();
}

TEST(Lock, HolderKilledBySignalIsReported) {
  Lock lock;
  Children kids;
  pid_t pid = kids.fork([&] {
    lock.acquire();
    raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 128 + SIGKILL);
  EXPECT_THROW(lock.acquire(), AbandonedLockError);
  EXPECT_TRUE(lock.try_acquire());
  lock.release();
}

TEST(Lock, WaiterBlockedWhileHolderDiesIsWokenAndTold) {
  Lock lock;
  Event held;
  Children kids;
  pid_t pid = kids.fork([&] {
    lock.acquire();
    held.set();
    std::this_thread::sleep_for(50ms);  // let the parent block (not required for the test)
    _exit(0);
    return 0;
  });
  ASSERT_TRUE(held.wait(kLong));
  EXPECT_THROW(lock.acquire(), AbandonedLockError);
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_TRUE(lock.acquire(kLong));
  lock.release();
}

TEST(Lock, TimedAcquireAlsoReportsDeadHolder) {
  Lock lock;
  Children kids;
  pid_t pid = kids.fork([&] {
    lock.acquire();
    _exit(0);
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_THROW(lock.acquire(kLong), AbandonedLockError);
  EXPECT_TRUE(lock.acquire(kLong));
  lock.release();
}

TEST(Lock, HolderThreadExitIsReported) {
  Lock lock;
  std::thread([&] { lock.acquire(); }).join();  // the thread ends holding it
  EXPECT_THROW(lock.acquire(), AbandonedLockError);
  EXPECT_TRUE(lock.acquire());
  lock.release();
}

TEST(Lock, AttachInSameProcessNamesTheSameLock) {
  Lock lock;
  Lock again = Lock::attach(lock.handle());
  lock.acquire();
  bool got = true;
  std::thread([&] { got = again.try_acquire(); }).join();
  EXPECT_FALSE(got);
  again.release();  // same owner thread, same lock
  EXPECT_FALSE(lock.is_owned());
}

TEST(Lock, AttachThroughProcFdWhenDescriptorWasNotPassed) {
  // The spawn situation: the child exists before the Lock and receives only the handle's
  // bytes (here through a pipe), not the descriptor, so attach must find the memory
  // through /proc/<exporter>/fd.
  int to_child[2], to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  Children kids;
  pid_t pid = kids.fork([&] {
    concur::detail::ShmPart part;
    if (read(to_child[0], &part, sizeof part) != sizeof part) return 2;
    Lock attached = Lock::attach(concur::detail::ShmHandle{{part}});
    bool held_elsewhere = !attached.try_acquire();
    char verdict = held_elsewhere ? 'y' : 'n';
    if (write(to_parent[1], &verdict, 1) != 1) return 3;
    if (read(to_child[0], &verdict, 1) != 1) return 4;  // the parent has released it
    if (!attached.acquire(kLong)) return 5;
    attached.release();
    return held_elsewhere ? 0 : 1;
  });
  Lock lock;
  lock.acquire();
  const concur::detail::ShmHandle handle = lock.handle();
  ASSERT_EQ(handle.parts.size(), 1u);
  ASSERT_EQ(write(to_child[1], &handle.parts[0], sizeof handle.parts[0]),
            static_cast<ssize_t>(sizeof handle.parts[0]));
  char verdict = 0;
  EXPECT_EQ(read(to_parent[0], &verdict, 1), 1);
  EXPECT_EQ(verdict, 'y');
  lock.release();
  EXPECT_EQ(write(to_child[1], "g", 1), 1);
  EXPECT_EQ(kids.wait(pid), 0);
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);
}

TEST(Lock, AttachRejectsOtherKindsAndBadHandles) {
  Event event;
  EXPECT_THROW(Lock::attach(event.handle()), std::invalid_argument);
  EXPECT_THROW(RLock::attach(Lock().handle()), std::invalid_argument);
  EXPECT_THROW(Lock::attach(concur::detail::ShmHandle{}), std::invalid_argument);
  auto h = Lock().handle();  // its segment is gone once the temporary dies
  EXPECT_THROW(Lock::attach(h), concur::Error);
  Lock lock;
  auto bad = lock.handle();
  bad.parts[0].offset = 1u << 20;
  EXPECT_THROW(Lock::attach(bad), std::invalid_argument);
}

// ============================================================== RLock

TEST(RLock, RecursiveAcquireNeedsAsManyReleases) {
  RLock lock;
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.try_acquire());
  auto other_gets = [&] {
    bool got = false;
    std::thread([&] {
      got = lock.try_acquire();
      if (got) lock.release();
    }).join();
    return got;
  };
  lock.release();
  EXPECT_FALSE(other_gets());
  lock.release();
  EXPECT_FALSE(other_gets());
  lock.release();
  EXPECT_TRUE(other_gets());
  EXPECT_THROW(lock.release(), LockOwnershipError);
}

TEST(RLock, ReleaseByNonOwnerThrows) {
  RLock lock;
  lock.acquire();
  std::thread([&] { EXPECT_THROW(lock.release(), LockOwnershipError); }).join();
  lock.release();
}

TEST(RLock, WorksWithStandardGuards) {
  RLock lock;
  std::lock_guard outer(lock);
  {
    std::unique_lock inner(lock);
    EXPECT_TRUE(lock.is_owned());
  }
  EXPECT_TRUE(lock.is_owned());
}

TEST(RLock, ExcludesOtherProcesses) {
  RLock lock;
  lock.acquire();
  lock.acquire();
  Children kids;
  pid_t pid = kids.fork([&] { return lock.try_acquire() ? 1 : 0; });
  EXPECT_EQ(kids.wait(pid), 0);
  lock.release();
  lock.release();
  pid = kids.fork([&] {
    if (!lock.acquire(kLong)) return 1;
    lock.release();
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
}

TEST(RLock, HolderDeathWhileHeldRecursivelyIsReported) {
  RLock lock;
  Children kids;
  pid_t pid = kids.fork([&] {
    lock.acquire();
    lock.acquire();
    _exit(0);
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_THROW(lock.acquire(), AbandonedLockError);
  EXPECT_TRUE(lock.acquire());
  lock.release();  // one level: the dead holder's depth is not inherited
  EXPECT_THROW(lock.release(), LockOwnershipError);
}

// ============================================================== Semaphore

TEST(Semaphore, CountsPermits) {
  Semaphore sem(2);
  EXPECT_EQ(sem.get_value(), 2u);
  EXPECT_TRUE(sem.acquire());
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_FALSE(sem.try_acquire());
  EXPECT_FALSE(sem.acquire(false));
  EXPECT_FALSE(sem.acquire(10ms));
  sem.release();
  EXPECT_EQ(sem.get_value(), 1u);
  EXPECT_TRUE(sem.acquire(10ms));
  sem.release(2);  // an unbounded semaphore may grow past its initial value
  EXPECT_EQ(sem.get_value(), 2u);
  sem.release(5);
  EXPECT_EQ(sem.get_value(), 7u);
}

TEST(Semaphore, DefaultIsOnePermitAndGuardsWork) {
  Semaphore sem;
  EXPECT_EQ(sem.get_value(), 1u);
  {
    std::lock_guard guard(sem);
    EXPECT_EQ(sem.get_value(), 0u);
  }
  EXPECT_EQ(sem.get_value(), 1u);
  std::unique_lock lk(sem, std::defer_lock);
  EXPECT_TRUE(lk.try_lock_for(1ms));
  EXPECT_FALSE(sem.try_lock_until(std::chrono::steady_clock::now() + 1ms));
  EXPECT_FALSE(sem.try_lock_until(std::chrono::system_clock::now() - 1s));
  lk.unlock();
  EXPECT_TRUE(sem.try_lock_until(std::chrono::system_clock::now() + 1ms));
  sem.unlock();
}

TEST(Semaphore, InvalidInitialValueThrows) {
  EXPECT_THROW(Semaphore(-1), std::invalid_argument);
  EXPECT_THROW(BoundedSemaphore(-5), std::invalid_argument);
  EXPECT_THROW(Semaphore(std::int64_t{1} << 40), std::invalid_argument);
}

TEST(Semaphore, WaiterIsWokenByReleaseFromAnotherThread) {
  for (auto spin : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(20'000)}) {
    Semaphore sem(0);
    sem.set_spin(spin);
    std::atomic<bool> got{false};
    std::thread waiter([&] { got = sem.acquire(kLong); });
    std::this_thread::sleep_for(5ms);
    sem.release();
    waiter.join();
    EXPECT_TRUE(got);
    EXPECT_EQ(sem.get_value(), 0u);
  }
}

TEST(Semaphore, ReleaseOfNWakesNWaiters) {
  Semaphore sem(0);
  std::atomic<int> got{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back([&] {
      if (sem.acquire(kLong)) ++got;
    });
  sem.release(3);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(got.load(), 3);
  EXPECT_EQ(sem.get_value(), 0u);
}

TEST(Semaphore, AcrossProcesses) {
  Semaphore sem(0);
  Semaphore back(0);
  Children kids;
  pid_t pid = kids.fork([&] {
    sem.release();
    return back.acquire(kLong) ? 0 : 1;
  });
  EXPECT_TRUE(sem.acquire(kLong));
  back.release();
  EXPECT_EQ(kids.wait(pid), 0);
}

TEST(Semaphore, AttachAcceptsBothKinds) {
  BoundedSemaphore bounded(1);
  Semaphore plain = Semaphore::attach(bounded.handle());
  EXPECT_TRUE(plain.try_acquire());
  EXPECT_EQ(bounded.get_value(), 0u);
  plain.release();
  EXPECT_THROW(plain.release(), SemaphoreOverReleaseError);  // the bound is shared state
  EXPECT_THROW(BoundedSemaphore::attach(Semaphore(1).handle()), std::invalid_argument);
  Semaphore sem(3);
  EXPECT_EQ(Semaphore::attach(sem.handle()).get_value(), 3u);
}

// ============================================================== BoundedSemaphore

TEST(BoundedSemaphore, OverReleaseThrowsAndChangesNothing) {
  BoundedSemaphore sem(2);
  EXPECT_THROW(sem.release(), SemaphoreOverReleaseError);
  EXPECT_EQ(sem.get_value(), 2u);
  sem.acquire();
  EXPECT_THROW(sem.release(2), SemaphoreOverReleaseError);
  EXPECT_EQ(sem.get_value(), 1u);
  sem.release();
  EXPECT_EQ(sem.get_value(), 2u);
  try {
    sem.release();
    ADD_FAILURE() << "over-release accepted";
  } catch (const SemaphoreOverReleaseError& e) {
    EXPECT_STREQ(e.what(), "Semaphore released too many times");
  }
}

TEST(BoundedSemaphore, ZeroBoundNeverAcceptsARelease) {
  BoundedSemaphore sem(0);
  EXPECT_FALSE(sem.try_acquire());
  EXPECT_THROW(sem.release(), SemaphoreOverReleaseError);
}

TEST(BoundedSemaphore, OverReleaseFromAnotherProcess) {
  BoundedSemaphore sem(1);
  Children kids;
  pid_t pid = kids.fork([&] {
    try {
      sem.release();
    } catch (const SemaphoreOverReleaseError&) {
      return 0;
    }
    return 1;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_EQ(sem.get_value(), 1u);
}

// ============================================================== Event

TEST(Event, SetClearIsSet) {
  Event e;
  EXPECT_FALSE(e.is_set());
  e.set();
  EXPECT_TRUE(e.is_set());
  e.set();  // idempotent
  EXPECT_TRUE(e.is_set());
  EXPECT_TRUE(e.wait());
  EXPECT_TRUE(e.wait(0s));
  e.clear();
  EXPECT_FALSE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
}

TEST(Event, WaitTimesOutWhenNotSet) {
  Event e;
  EXPECT_FALSE(e.wait(10ms));
  EXPECT_FALSE(e.wait(0ms));
  EXPECT_FALSE(e.wait(-5ms));
}

TEST(Event, SetWakesAllWaiters) {
  for (auto spin : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(20'000)}) {
    Event e;
    e.set_spin(spin);
    std::atomic<int> woken{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 4; ++i)
      waiters.emplace_back([&] {
        if (e.wait(kLong)) ++woken;
      });
    std::this_thread::sleep_for(5ms);
    e.set();
    for (auto& t : waiters) t.join();
    EXPECT_EQ(woken.load(), 4);
  }
}

TEST(Event, AcrossProcesses) {
  Event ping, pong;
  Children kids;
  pid_t pid = kids.fork([&] {
    if (!ping.wait(kLong)) return 1;
    pong.set();
    return 0;
  });
  ping.set();
  EXPECT_TRUE(pong.wait(kLong));
  EXPECT_EQ(kids.wait(pid), 0);
  Event attached = Event::attach(ping.handle());
  EXPECT_TRUE(attached.is_set());
  attached.clear();
  EXPECT_FALSE(ping.is_set());
}

// ============================================================== Condition

TEST(Condition, WaitAndNotifyNeedTheLock) {
  Condition cond;
  EXPECT_THROW(cond.wait(), LockOwnershipError);
  EXPECT_THROW(cond.wait(1ms), LockOwnershipError);
  EXPECT_THROW(cond.notify(), LockOwnershipError);
  EXPECT_THROW(cond.notify_all(), LockOwnershipError);
  cond.acquire();
  std::thread([&] { EXPECT_THROW(cond.notify(), LockOwnershipError); }).join();
  cond.notify();  // nobody waiting: fine
  cond.release();
}

TEST(Condition, LockApiDelegatesToItsLock) {
  RLock rlock;
  Condition cond(rlock);
  EXPECT_TRUE(cond.acquire());
  EXPECT_TRUE(rlock.is_owned());
  EXPECT_TRUE(cond.try_lock());  // re-entrant: it is an RLock
  EXPECT_TRUE(cond.acquire(1ms));
  cond.release();
  cond.unlock();
  cond.release();
  EXPECT_FALSE(rlock.is_owned());
  Lock lock;
  Condition plain(lock);
  plain.lock();
  bool got = true;
  std::thread([&] { got = plain.acquire(false) || plain.acquire(1ms); }).join();
  EXPECT_FALSE(got);
  plain.unlock();
  EXPECT_FALSE(lock.is_owned());
}

TEST(Condition, WaitTimesOutAndKeepsTheLock) {
  Lock lock;
  Condition cond(lock);
  std::unique_lock lk(cond);
  EXPECT_FALSE(cond.wait(10ms));
  EXPECT_TRUE(lock.is_owned());
  EXPECT_FALSE(cond.wait(0s));
  EXPECT_TRUE(lock.is_owned());
}

TEST(Condition, WaitForPredicate) {
  Condition cond;
  int ready = 0;  // guarded by cond's lock
  std::unique_lock lk(cond);
  EXPECT_FALSE(cond.wait_for([&] { return ready > 0; }, 10ms));
  std::thread setter([&] {
    std::lock_guard g(cond);
    ready = 1;
    cond.notify();
  });
  EXPECT_TRUE(cond.wait_for([&] { return ready > 0; }, kLong));
  lk.unlock();
  setter.join();
  lk.lock();
  EXPECT_TRUE(cond.wait_for([&] { return ready > 0; }));  // already true: no wait
}

TEST(Condition, NotifyOneWakesExactlyOneThenNotifyAllTheRest) {
  Condition cond;
  int entered = 0, woken = 0;  // guarded by cond's lock
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back([&] {
      std::lock_guard g(cond);
      ++entered;
      cond.wait();
      ++woken;
    });
  // A waiter counts itself and starts waiting without letting go of the lock in between,
  // so once we see all three under the lock, all three are waiting.
  eventually([&] {
    std::lock_guard g(cond);
    return entered == 3;
  });
  {
    std::lock_guard g(cond);
    cond.notify(1);
  }
  eventually([&] {
    std::lock_guard g(cond);
    return woken == 1;
  });
  std::this_thread::sleep_for(50ms);  // room for a wrong second wake-up to show
  {
    std::lock_guard g(cond);
    EXPECT_EQ(woken, 1);
    cond.notify(2);
  }
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken, 3);
}

TEST(Condition, NotifyAllWakesEveryone) {
  Condition cond;
  int entered = 0, woken = 0;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i)
    waiters.emplace_back([&] {
      std::lock_guard g(cond);
      ++entered;
      cond.wait();
      ++woken;
    });
  eventually([&] {
    std::lock_guard g(cond);
    return entered == 4;
  });
  {
    std::lock_guard g(cond);
    cond.notify_all();
  }
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken, 4);
}

TEST(Condition, LateWaiterDoesNotStealAnEarlierNotification) {
  Condition cond;
  int entered = 0;
  bool first_woke = false;
  std::thread first([&] {
    std::lock_guard g(cond);
    ++entered;
    first_woke = cond.wait(kLong);
  });
  eventually([&] {
    std::lock_guard g(cond);
    return entered == 1;
  });
  std::unique_lock lk(cond);
  cond.notify(1);
  // We still hold the lock: the notification is pending for `first`. A wait of ours now
  // arrived after it and must time out instead of taking it.
  EXPECT_FALSE(cond.wait(20ms));
  lk.unlock();
  first.join();
  EXPECT_TRUE(first_woke);
}

TEST(Condition, WaitReleasesARecursiveLockFully) {
  Condition cond;  // its own RLock
  bool flag = false;
  cond.acquire();
  cond.acquire();
  std::thread setter([&] {
    std::lock_guard g(cond);  // only possible if wait() released both levels
    flag = true;
    cond.notify();
  });
  EXPECT_TRUE(cond.wait_for([&] { return flag; }, kLong));
  setter.join();
  cond.release();
  cond.release();  // the depth came back as 2
  EXPECT_THROW(cond.release(), LockOwnershipError);
}

TEST(Condition, AcrossProcesses) {
  Condition cond;
  auto state = concur::RawValue<int>(0);  // guarded by cond's lock
  Children kids;
  pid_t pid = kids.fork([&] {
    std::lock_guard g(cond);
    if (!cond.wait_for([&] { return *state.get_obj() == 1; }, kLong)) return 1;
    *state.get_obj() = 2;
    cond.notify_all();
    return 0;
  });
  {
    std::lock_guard g(cond);
    *state.get_obj() = 1;
    cond.notify_all();
    EXPECT_TRUE(cond.wait_for([&] { return *state.get_obj() == 2; }, kLong));
  }
  EXPECT_EQ(kids.wait(pid), 0);
}

TEST(Condition, AttachSharesConditionAndLock) {
  Lock lock;
  Condition cond(lock);
  Condition attached = Condition::attach(cond.handle());
  attached.acquire();
  EXPECT_TRUE(lock.is_owned());
  bool flag = false;
  std::thread setter([&] {
    std::lock_guard g(cond);
    flag = true;
    cond.notify();
  });
  EXPECT_TRUE(attached.wait_for([&] { return flag; }, kLong));
  attached.release();
  setter.join();
  EXPECT_THROW(Condition::attach(lock.handle()), std::invalid_argument);
  auto h = cond.handle();
  h.parts.pop_back();
  EXPECT_THROW(Condition::attach(h), std::invalid_argument);
}

TEST(Condition, HolderDeathDuringWaitIsReportedWithLockHeld) {
  Lock lock;
  Condition cond(lock);
  cond.acquire();
  Children kids;
  pid_t pid = kids.fork([&] {
    cond.acquire();  // gets it once the parent's wait() lets go
    cond.notify();
    _exit(0);  // dies holding it
    return 0;
  });
  EXPECT_THROW(cond.wait(kLong), AbandonedLockError);
  EXPECT_TRUE(lock.is_owned());  // wait() returns holding the lock, even this way
  cond.release();
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_TRUE(lock.acquire(kLong));
  lock.release();
}

// ============================================================== Barrier

TEST(Barrier, ThreadsGetDistinctIndicesAndActionRunsOncePerCycle) {
  constexpr int kParties = 3, kCycles = 4;
  std::atomic<int> actions{0};
  Barrier barrier(kParties, [&] { ++actions; });
  EXPECT_EQ(barrier.parties(), 3u);
  std::vector<std::vector<std::size_t>> indices(kParties);
  std::vector<std::thread> threads;
  for (int t = 0; t < kParties; ++t)
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCycles; ++c) indices[t].push_back(barrier.wait());
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(actions.load(), kCycles);
  for (int c = 0; c < kCycles; ++c) {
    std::set<std::size_t> seen;
    for (int t = 0; t < kParties; ++t) seen.insert(indices[t][c]);
    EXPECT_EQ(seen, (std::set<std::size_t>{0, 1, 2}));
  }
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0u);
}

TEST(Barrier, AcrossProcesses) {
  auto actions = concur::RawValue<int>(0);
  Barrier barrier(3, [&] { ++*actions.get_obj(); });  // runs in whichever process is last
  Children kids;
  std::vector<pid_t> pids;
  for (int k = 0; k < 2; ++k)
    pids.push_back(kids.fork([&] {
      auto first = barrier.wait(kLong);
      auto second = barrier.wait(kLong);
      return static_cast<int>(first * 10 + second);
    }));
  std::set<std::size_t> first{}, second{};
  auto mine1 = barrier.wait(kLong);
  auto mine2 = barrier.wait(kLong);
  first.insert(mine1);
  second.insert(mine2);
  for (pid_t p : pids) {
    int code = kids.wait(p);
    first.insert(static_cast<std::size_t>(code / 10));
    second.insert(static_cast<std::size_t>(code % 10));
  }
  EXPECT_EQ(first, (std::set<std::size_t>{0, 1, 2}));
  EXPECT_EQ(second, (std::set<std::size_t>{0, 1, 2}));
  EXPECT_EQ(actions.value(), 2);
}

TEST(Barrier, TimeoutBreaksItUntilReset) {
  Barrier barrier(2);
  EXPECT_THROW(barrier.wait(10ms), BrokenBarrierError);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(barrier.wait(kLong), BrokenBarrierError);  // broken: fails at once
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  std::size_t other = 9;
  std::thread t([&] { other = barrier.wait(kLong); });
  std::size_t mine = barrier.wait(kLong);
  t.join();
  EXPECT_EQ(mine + other, 1u);
}

TEST(Barrier, DefaultTimeoutFromConstructor) {
  Barrier barrier(2, {}, 10ms);
  EXPECT_THROW(barrier.wait(), BrokenBarrierError);
  EXPECT_TRUE(barrier.broken());
}

TEST(Barrier, AbortBreaksWaiters) {
  Barrier barrier(3);
  std::atomic<int> broken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i)
    waiters.emplace_back([&] {
      try {
        barrier.wait(kLong);
      } catch (const BrokenBarrierError&) {
        ++broken;
      }
    });
  eventually([&] { return barrier.n_waiting() == 2; });
  barrier.abort();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(broken.load(), 2);
  EXPECT_TRUE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0u);
  EXPECT_THROW(barrier.wait(kLong), BrokenBarrierError);
}

TEST(Barrier, ResetWhileWaitingBreaksTheWaitersButNotTheBarrier) {
  Barrier barrier(2);
  bool got_broken = false;
  std::thread waiter([&] {
    try {
      barrier.wait(kLong);
    } catch (const BrokenBarrierError&) {
      got_broken = true;
    }
  });
  eventually([&] { return barrier.n_waiting() == 1; });
  barrier.reset();
  waiter.join();
  EXPECT_TRUE(got_broken);
  EXPECT_FALSE(barrier.broken());
  std::thread again([&] { barrier.wait(kLong); });
  barrier.wait(kLong);
  again.join();
}

TEST(Barrier, ActionThatThrowsBreaksTheBarrier) {
  Barrier barrier(2, [] { throw std::runtime_error("action failed"); });
  bool other_broken = false;
  std::thread other([&] {
    try {
      barrier.wait(kLong);
    } catch (const BrokenBarrierError&) {
      other_broken = true;
    }
  });
  eventually([&] { return barrier.n_waiting() == 1; });
  EXPECT_THROW(barrier.wait(kLong), std::runtime_error);
  other.join();
  EXPECT_TRUE(other_broken);
  EXPECT_TRUE(barrier.broken());
}

TEST(Barrier, InvalidPartiesAndAttach) {
  EXPECT_THROW(Barrier(0), std::invalid_argument);
  std::atomic<int> actions{0};
  Barrier barrier(2);
  Barrier attached = Barrier::attach(barrier.handle(), [&] { ++actions; });
  EXPECT_EQ(attached.parties(), 2u);
  std::thread t([&] { barrier.wait(kLong); });
  eventually([&] { return attached.n_waiting() == 1; });
  EXPECT_EQ(attached.wait(kLong), 1u);  // last: runs the attached copy's action
  t.join();
  EXPECT_EQ(actions.load(), 1);
  EXPECT_THROW(Barrier::attach(Event().handle()), std::invalid_argument);
}

TEST(Barrier, PartyDyingInsideTheActionIsForgottenAndBreaksIt) {
  Barrier barrier(2);
  Barrier dying = Barrier::attach(barrier.handle(), [] { _exit(3); });
  Children kids;
  pid_t pid = kids.fork([&] {
    while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
    dying.wait(kLong);  // last to arrive: runs the action, dies holding the barrier's lock
    return 0;
  });
  // Nothing wakes a waiter when a party dies; the next use of the barrier notices the
  // abandoned lock, forgets the dead party, breaks the barrier and wakes everyone.
  int child_status = -1;
  std::thread watcher([&] {
    child_status = kids.wait(pid);
    (void)barrier.broken();
  });
  EXPECT_THROW(barrier.wait(kLong), BrokenBarrierError);
  watcher.join();
  EXPECT_EQ(child_status, 3);
  EXPECT_TRUE(barrier.broken());
  barrier.reset();  // only possible because the dead party is no longer counted
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(pass_together(barrier, 2), (std::multiset<std::size_t>{0, 1}));
}

TEST(Barrier, PartyKilledWhileWaitingIsForgottenOnReset) {
  Barrier barrier(2);
  Children kids;
  pid_t pid = kids.fork([&] {
    barrier.wait(kLong);
    return 0;
  });
  eventually([&] { return barrier.n_waiting() == 1; });
  kill(pid, SIGKILL);
  EXPECT_EQ(kids.wait(pid), 128 + SIGKILL);
  barrier.reset();  // the dead party is dropped instead of holding the reset open forever
  EXPECT_EQ(barrier.n_waiting(), 0u);
  EXPECT_EQ(pass_together(barrier, 2), (std::multiset<std::size_t>{0, 1}));
}

TEST(Barrier, TimeoutForgetsADeadParty) {
  Barrier barrier(3);
  Children kids;
  pid_t pid = kids.fork([&] {
    barrier.wait(kLong);
    return 0;
  });
  eventually([&] { return barrier.n_waiting() == 1; });
  kill(pid, SIGKILL);
  EXPECT_EQ(kids.wait(pid), 128 + SIGKILL);
  EXPECT_THROW(barrier.wait(10ms), BrokenBarrierError);  // times out, prunes, breaks
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(pass_together(barrier, 3), (std::multiset<std::size_t>{0, 1, 2}));
}

TEST(Barrier, SinglePartyPassesAtOnce) {
  int actions = 0;
  Barrier barrier(1, [&] { ++actions; });
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_EQ(actions, 2);
}
