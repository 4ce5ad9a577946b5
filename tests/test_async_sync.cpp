// Tests of concur/async_sync.hpp: the async primitives, their guards, cancellation of
// parked waiters, and races on a multi-threaded io_context.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <vector>

#include "concur/async.hpp"
#include "concur/async_sync.hpp"

using asio::awaitable;
using namespace std::chrono_literals;

namespace {

// Runs `body` on a loop with `threads` threads.
template <class F>
auto run_on(unsigned threads, F body) {
  return concur::run(std::move(body), {.threads = threads});
}

// Lets every task that can make progress do so (several loop turns).
awaitable<void> settle(int turns = 20) {
  for (int i = 0; i < turns; ++i) co_await concur::yield_now();
}

}  // namespace

TEST(AsyncLock, MutualExclusionUnderTwoThreads) {
  concur::AsyncLock lock;
  int inside = 0;  // deliberately plain: the lock must order every access
  long total = 0;
  std::atomic<int> overlaps{0};
  run_on(2, [&]() -> awaitable<void> {
    std::vector<awaitable<void>> workers;
    for (int w = 0; w < 64; ++w) {
      workers.push_back([](concur::AsyncLock& l, int& in, long& tot, std::atomic<int>& ov) -> awaitable<void> {
        for (int i = 0; i < 50; ++i) {
          auto g = co_await l.scoped();
          if (++in != 1) ov++;
          if (i % 7 == 0) co_await concur::yield_now();  // hold the lock across a suspension
          ++tot;
          --in;
        }
      }(lock, inside, total, overlaps));
    }
    co_await concur::gather(std::move(workers));
  });
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(total, 64 * 50);
  EXPECT_FALSE(lock.locked());
  EXPECT_EQ(lock.waiting(), 0u);
}

TEST(AsyncLock, TryAcquireAndMisuse) {
  concur::AsyncLock lock;
  EXPECT_TRUE(lock.try_acquire());
  EXPECT_FALSE(lock.try_acquire());
  EXPECT_TRUE(lock.locked());
  lock.release();
  EXPECT_FALSE(lock.locked());
  EXPECT_THROW(lock.release(), concur::InvalidStateError);
}

TEST(AsyncLock, FifoHandOff) {
  concur::AsyncLock lock;
  std::vector<int> order;
  concur::run([&]() -> awaitable<void> {
    co_await lock.acquire();
    std::vector<concur::Task<void>> tasks;
    for (int i = 0; i < 5; ++i) {
      tasks.push_back(concur::create_task([](concur::AsyncLock& l, std::vector<int>& o, int id) -> awaitable<void> {
        auto g = co_await l.scoped();
        o.push_back(id);
      }(lock, order, i)));
      co_await settle(3);  // park them in a known order
    }
    EXPECT_EQ(lock.waiting(), 5u);
    lock.release();
    for (auto& t : tasks) co_await t.wait();
  });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(AsyncLock, CancelledWaiterLeavesNoWaiterAndGetsNothing) {
  concur::AsyncLock lock;
  bool acquired_by_cancelled = false;
  concur::run([&]() -> awaitable<void> {
    co_await lock.acquire();
    auto t = concur::create_task([](concur::AsyncLock& l, bool& got) -> awaitable<void> {
      auto g = co_await l.scoped();
      got = true;
    }(lock, acquired_by_cancelled));
    co_await settle();
    EXPECT_EQ(lock.waiting(), 1u);
    EXPECT_TRUE(t.cancel());
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(lock.waiting(), 0u);
    lock.release();
    EXPECT_FALSE(lock.locked());  // not handed to the cancelled waiter
  });
  EXPECT_FALSE(acquired_by_cancelled);
}

TEST(AsyncLock, CancellationReleasesWhatWasHeld) {
  // A philosopher holding the footman's permit and one fork, waiting for the other fork,
  // is cancelled: both are released by its guards as it unwinds.
  concur::AsyncLock a, b;
  concur::AsyncBoundedSemaphore footman(1);
  concur::run([&]() -> awaitable<void> {
    co_await b.acquire();
    auto t = concur::create_task([](concur::AsyncBoundedSemaphore& f, concur::AsyncLock& x,
                                    concur::AsyncLock& y) -> awaitable<void> {
      auto seat = co_await f.scoped();
      auto first = co_await x.scoped();
      auto second = co_await y.scoped();
    }(footman, a, b));
    co_await settle();
    EXPECT_TRUE(a.locked());
    EXPECT_EQ(footman.value(), 0u);
    EXPECT_EQ(b.waiting(), 1u);
    t.cancel();
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
    EXPECT_FALSE(a.locked());
    EXPECT_EQ(footman.value(), 1u);
    EXPECT_EQ(b.waiting(), 0u);
    b.release();
  });
}

TEST(AsyncLock, GuardReleasesOnException) {
  concur::AsyncLock lock;
  concur::run([&]() -> awaitable<void> {
    try {
      auto g = co_await lock.scoped();
      EXPECT_TRUE(lock.locked());
      throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    EXPECT_FALSE(lock.locked());
    auto g = co_await lock.scoped();
    g.reset();
    EXPECT_FALSE(lock.locked());
    EXPECT_FALSE(g.owns());
  });
}

TEST(AsyncSemaphore, LimitsConcurrencyUnderTwoThreads) {
  concur::AsyncSemaphore sem(3);
  std::atomic<int> in{0}, peak{0};
  run_on(2, [&]() -> awaitable<void> {
    std::vector<awaitable<void>> ws;
    for (int w = 0; w < 40; ++w) {
      ws.push_back([](concur::AsyncSemaphore& s, std::atomic<int>& i, std::atomic<int>& p) -> awaitable<void> {
        for (int k = 0; k < 20; ++k) {
          auto g = co_await s.scoped();
          int now = ++i;
          int prev = p.load();
          while (now > prev && !p.compare_exchange_weak(prev, now)) {
          }
          co_await concur::yield_now();
          --i;
        }
      }(sem, in, peak));
    }
    co_await concur::gather(std::move(ws));
  });
  EXPECT_LE(peak.load(), 3);
  EXPECT_GE(peak.load(), 1);
  EXPECT_EQ(sem.value(), 3u);
  EXPECT_EQ(sem.waiting(), 0u);
}

TEST(AsyncBoundedSemaphore, OverReleaseThrows) {
  concur::AsyncBoundedSemaphore sem(2);
  EXPECT_THROW(sem.release(), concur::InvalidStateError);
  EXPECT_TRUE(sem.try_acquire());
  sem.release();
  EXPECT_THROW(sem.release(), concur::InvalidStateError);
  EXPECT_EQ(sem.value(), 2u);
  concur::AsyncSemaphore plain(1);
  plain.release();  // an unbounded semaphore may grow
  EXPECT_EQ(plain.value(), 2u);
}

TEST(AsyncSemaphore, CancelledWaiterDoesNotConsumeAPermit) {
  concur::AsyncSemaphore sem(0);
  concur::run([&]() -> awaitable<void> {
    auto t = concur::create_task(sem.acquire());
    co_await settle();
    EXPECT_EQ(sem.waiting(), 1u);
    t.cancel();
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
    EXPECT_EQ(sem.waiting(), 0u);
    sem.release();
    EXPECT_EQ(sem.value(), 1u);
  });
}

TEST(AsyncEvent, WakesAllWaitersAndCancelLeavesNone) {
  concur::AsyncEvent ev;
  std::atomic<int> woke{0};
  run_on(2, [&]() -> awaitable<void> {
    std::vector<concur::Task<void>> ts;
    for (int i = 0; i < 20; ++i)
      ts.push_back(concur::create_task([](concur::AsyncEvent& e, std::atomic<int>& w) -> awaitable<void> {
        co_await e.wait();
        ++w;
      }(ev, woke)));
    auto victim = concur::create_task(ev.wait());
    while (ev.waiting() < 21) co_await concur::yield_now();
    victim.cancel();
    EXPECT_THROW(co_await victim.wait(), concur::CancelledError);
    EXPECT_EQ(ev.waiting(), 20u);
    EXPECT_EQ(woke.load(), 0);
    ev.set();
    for (auto& t : ts) co_await t.wait();
    EXPECT_TRUE(ev.is_set());
    co_await ev.wait();  // set: returns at once
    ev.clear();
    EXPECT_FALSE(ev.is_set());
  });
  EXPECT_EQ(woke.load(), 20);
}

TEST(AsyncQueue, ProducersAndConsumersOnTwoThreads) {
  constexpr int kProducers = 8, kItems = 500, kConsumers = 4;
  concur::AsyncQueue<std::pair<int, int>> q(16);
  std::vector<std::vector<int>> seen(kProducers);
  std::mutex seen_mutex;
  run_on(2, [&]() -> awaitable<void> {
    std::vector<awaitable<void>> producers, consumers;
    for (int p = 0; p < kProducers; ++p)
      producers.push_back([](concur::AsyncQueue<std::pair<int, int>>& qq, int id) -> awaitable<void> {
        for (int i = 0; i < kItems; ++i) co_await qq.put({id, i});
      }(q, p));
    for (int c = 0; c < kConsumers; ++c)
      consumers.push_back([](concur::AsyncQueue<std::pair<int, int>>& qq, std::vector<std::vector<int>>& s,
                             std::mutex& m) -> awaitable<void> {
        for (;;) {
          auto [id, i] = co_await qq.get();
          if (id < 0) co_return;
          std::lock_guard lock(m);
          s[static_cast<std::size_t>(id)].push_back(i);
        }
      }(q, seen, seen_mutex));
    auto cons = concur::create_task(concur::gather(std::move(consumers)));
    co_await concur::gather(std::move(producers));
    for (int c = 0; c < kConsumers; ++c) co_await q.put({-1, 0});
    co_await cons.wait();
  });
  for (int p = 0; p < kProducers; ++p) {
    auto v = seen[static_cast<std::size_t>(p)];
    ASSERT_EQ(v.size(), static_cast<std::size_t>(kItems)) << "producer " << p;
    std::sort(v.begin(), v.end());
    for (int i = 0; i < kItems; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
  }
  EXPECT_TRUE(q.empty());
}

TEST(AsyncQueue, FifoAndTryOps) {
  concur::AsyncQueue<int> q(2);
  EXPECT_TRUE(q.try_put(1));
  EXPECT_TRUE(q.try_put(2));
  EXPECT_FALSE(q.try_put(3));
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.try_get(), 1);
  EXPECT_EQ(q.try_get(), 2);
  EXPECT_FALSE(q.try_get().has_value());
  concur::AsyncQueue<std::unique_ptr<int>> moves;  // move-only items
  concur::run([&]() -> awaitable<void> {
    co_await moves.put(std::make_unique<int>(7));
    auto p = co_await moves.get();
    EXPECT_EQ(*p, 7);
  });
}

TEST(AsyncQueue, CancelledPutterAndGetterLeaveNoWaiterAndNoItem) {
  concur::AsyncQueue<int> q(1);
  concur::run([&]() -> awaitable<void> {
    co_await q.put(1);
    auto putter = concur::create_task(q.put(2));
    co_await settle();
    EXPECT_EQ(q.waiting_putters(), 1u);
    putter.cancel();
    EXPECT_THROW(co_await putter.wait(), concur::CancelledError);
    EXPECT_EQ(q.waiting_putters(), 0u);
    EXPECT_EQ(co_await q.get(), 1);
    EXPECT_TRUE(q.empty());  // the cancelled put's item never entered

    auto getter = concur::create_task(q.get());
    co_await settle();
    EXPECT_EQ(q.waiting_getters(), 1u);
    getter.cancel();
    EXPECT_THROW(co_await getter.wait(), concur::CancelledError);
    EXPECT_EQ(q.waiting_getters(), 0u);
    co_await q.put(3);
    EXPECT_EQ(q.size(), 1u);  // not swallowed by the cancelled getter
    EXPECT_EQ(co_await q.get(), 3);
  });
}

TEST(AsyncPrimitives, CancellationRaceNeverLosesOrLeaks) {
  // Tasks on two threads hammer a lock, a semaphore and a queue while a canceller
  // cancels a random subset. Afterwards nothing is held and nobody is parked.
  concur::AsyncLock lock;
  concur::AsyncSemaphore sem(2);
  concur::AsyncQueue<int> q(4);
  std::atomic<long> put_ok{0}, got{0};
  run_on(2, [&]() -> awaitable<void> {
    std::vector<concur::Task<void>> ts;
    for (int i = 0; i < 60; ++i) {
      ts.push_back(concur::create_task([](concur::AsyncLock& l, concur::AsyncSemaphore& s,
                                          concur::AsyncQueue<int>& qq, std::atomic<long>& ok,
                                          int id) -> awaitable<void> {
        for (int k = 0; k < 30; ++k) {
          auto g = co_await s.scoped();
          auto h = co_await l.scoped();
          h.reset();
          if (id % 2 == 0) {
            co_await qq.put(k);
            ++ok;
          }
        }
      }(lock, sem, q, put_ok, i)));
    }
    auto drain = concur::create_task([](concur::AsyncQueue<int>& qq, std::atomic<long>& g) -> awaitable<void> {
      for (;;) {
        (void)co_await qq.get();
        ++g;
      }
    }(q, got));
    std::mt19937 rng(42);
    for (int i = 0; i < 60; i += 1 + static_cast<int>(rng() % 4)) {
      co_await concur::yield_now();
      ts[static_cast<std::size_t>(i)].cancel();
    }
    for (auto& t : ts) {
      try {
        co_await t.wait();
      } catch (const concur::CancelledError&) {
      }
    }
    while (!q.empty()) co_await concur::yield_now();
    drain.cancel();
    try {
      co_await drain.wait();
    } catch (const concur::CancelledError&) {
    }
  });
  EXPECT_FALSE(lock.locked());
  EXPECT_EQ(lock.waiting(), 0u);
  EXPECT_EQ(sem.value(), 2u);
  EXPECT_EQ(sem.waiting(), 0u);
  EXPECT_EQ(q.waiting_getters(), 0u);
  EXPECT_EQ(q.waiting_putters(), 0u);
  EXPECT_EQ(put_ok.load(), got.load());  // every completed put was received
}

// ---------------------------------------------------------------- dining philosophers
namespace {
awaitable<void> philosopher(std::size_t id, std::vector<std::unique_ptr<concur::AsyncLock>>& forks,
                            concur::AsyncBoundedSemaphore& footman, int servings,
                            std::atomic<long>& eaten) {
  for (int s = 0; s < servings; ++s) {
    auto seat = co_await footman.scoped();
    auto left = co_await forks[id]->scoped();
    auto right = co_await forks[(id + 1) % forks.size()]->scoped();
    ++eaten;  // zero eat and think time: the harshest schedule for deadlock
  }
}
}  // namespace

TEST(DiningPhilosophers, ThousandServingsZeroThinkNeverDeadlock) {
  constexpr std::size_t kFaculty = 5;
  constexpr int kServings = 1000;
  std::vector<std::unique_ptr<concur::AsyncLock>> forks;
  for (std::size_t i = 0; i < kFaculty; ++i) forks.push_back(std::make_unique<concur::AsyncLock>());
  concur::AsyncBoundedSemaphore footman(kFaculty - 1);
  std::atomic<long> eaten{0};
  run_on(2, [&]() -> awaitable<void> {
    std::vector<awaitable<void>> dept;
    for (std::size_t p = 0; p < kFaculty; ++p) dept.push_back(philosopher(p, forks, footman, kServings, eaten));
    co_await concur::gather(std::move(dept));
  });
  EXPECT_EQ(eaten.load(), static_cast<long>(kFaculty) * kServings);
  EXPECT_EQ(footman.value(), kFaculty - 1);
  for (auto& f : forks) EXPECT_FALSE(f->locked());
}
