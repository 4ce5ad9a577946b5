// Tests of concur/async.hpp: run, sleep, tasks, gather, wait_for, as_completed,
// to_thread, and awaiting concur futures from executors without blocking the loop.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "concur/async.hpp"
#include "concur/process_pool.hpp"
#include "concur/thread_pool.hpp"

using asio::awaitable;
using namespace std::chrono_literals;

namespace {
awaitable<int> answer() { co_return 42; }
awaitable<int> fails() {
  co_await concur::yield_now();
  throw std::runtime_error("nope");
}
awaitable<void> forever(std::atomic<int>* cancelled = nullptr) {
  try {
    co_await concur::sleep(1h);
  } catch (const concur::CancelledError&) {
    if (cancelled) ++*cancelled;
    throw;
  }
}
awaitable<int> after(std::chrono::milliseconds d, int v, std::vector<int>* order = nullptr) {
  co_await concur::sleep(d);
  if (order) order->push_back(v);
  co_return v;
}
}  // namespace

long square_in_worker(long x) { return x * x; }
long fail_in_worker(long) { throw std::invalid_argument("bad input"); }

TEST(Run, ReturnsValueAndRethrows) {
  EXPECT_EQ(concur::run(answer()), 42);
  EXPECT_THROW(concur::run(fails()), std::runtime_error);
  int captured = 5;
  EXPECT_EQ(concur::run([captured]() -> awaitable<int> { co_return captured * 2; }), 10);
  concur::run([]() -> awaitable<void> { co_return; });
}

TEST(Run, CancelsTasksMainLeftBehind) {
  std::atomic<int> cancelled{0};
  concur::run([&]() -> awaitable<void> {
    for (int i = 0; i < 3; ++i) concur::create_task(forever(&cancelled));
    co_await concur::yield_now();
  });
  EXPECT_EQ(cancelled.load(), 3);
}

TEST(Run, CreateTaskOutsideLoopThrows) {
  EXPECT_THROW(concur::create_task(answer()), concur::InvalidStateError);
}

TEST(Sleep, SleepersWakeInOrderOfTheirDelays) {
  // The seed's sleepers: started in counter order, finishing in delay order.
  std::vector<int> order;
  concur::run([&]() -> awaitable<void> {
    std::vector<concur::Task<int>> tasks;
    int delays[] = {40, 10, 50, 30, 20};
    for (int i = 0; i < 5; ++i) tasks.push_back(concur::create_task(after(std::chrono::milliseconds(delays[i]), i, &order)));
    auto results = co_await concur::gather(tasks[0], tasks[1], tasks[2], tasks[3], tasks[4]);
    EXPECT_EQ(std::get<0>(results), 0);
    EXPECT_EQ(std::get<4>(results), 4);
  });
  EXPECT_EQ(order, (std::vector<int>{1, 4, 3, 0, 2}));
}

TEST(Task, CancelAndResult) {
  concur::run([]() -> awaitable<void> {
    auto t = concur::create_task(forever());
    co_await concur::yield_now();
    EXPECT_FALSE(t.done());
    EXPECT_THROW(t.result(), concur::InvalidStateError);
    EXPECT_TRUE(t.cancel());
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.cancel());

    auto ok = concur::create_task(answer());
    EXPECT_EQ(co_await ok.wait(), 42);
    EXPECT_EQ(co_await ok.wait(), 42);  // awaiting twice is fine
    EXPECT_EQ(ok.result(), 42);
    EXPECT_FALSE(ok.cancelled());
  });
}

TEST(Task, CancelBeforeItStartsNeverRunsIt) {
  bool ran = false;
  concur::run([&]() -> awaitable<void> {
    auto t = concur::create_task([](bool& r) -> awaitable<void> {
      r = true;
      co_return;
    }(ran));
    t.cancel();
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
  });
  EXPECT_FALSE(ran);
}

TEST(Task, CancellingTheAwaiterCancelsTheTask) {
  concur::run([]() -> awaitable<void> {
    auto inner = concur::create_task(forever());
    auto outer = concur::create_task([](concur::Task<void> t) -> awaitable<void> { co_await t.wait(); }(inner));
    co_await concur::yield_now();
    co_await concur::yield_now();
    outer.cancel();
    EXPECT_THROW(co_await outer.wait(), concur::CancelledError);
    EXPECT_THROW(co_await inner.wait(), concur::CancelledError);
  });
}

TEST(Gather, TupleOfMixedResults) {
  concur::run([]() -> awaitable<void> {
    auto [a, b, c] = co_await concur::gather(answer(), after(1ms, 7), concur::yield_now());
    EXPECT_EQ(a, 42);
    EXPECT_EQ(b, 7);
    static_assert(std::is_same_v<decltype(c), std::monostate>);
  });
}

TEST(Gather, FirstExceptionCancelsTheRestAndPropagates) {
  std::atomic<int> cancelled{0};
  concur::run([&]() -> awaitable<void> {
    EXPECT_THROW(co_await concur::gather(forever(&cancelled), fails(), forever(&cancelled)), std::runtime_error);
  });
  EXPECT_EQ(cancelled.load(), 2);  // both siblings were cancelled and finished before gather returned
}

TEST(Gather, ReturnExceptionsCollectsOutcomes) {
  concur::run([]() -> awaitable<void> {
    auto [a, b] = co_await concur::gather(concur::return_exceptions, answer(), fails());
    EXPECT_TRUE(a.has_value());
    EXPECT_EQ(a.value(), 42);
    EXPECT_FALSE(b.has_value());
    EXPECT_THROW(b.value(), std::runtime_error);
    std::vector<awaitable<int>> v;
    v.push_back(answer());
    v.push_back(fails());
    auto outs = co_await concur::gather(concur::return_exceptions, std::move(v));
    EXPECT_TRUE(outs[0].has_value());
    EXPECT_NE(outs[1].error(), nullptr);
  });
}

TEST(Gather, RangeKeepsInputOrder) {
  concur::run([]() -> awaitable<void> {
    std::vector<awaitable<int>> v;
    for (int i = 0; i < 20; ++i) v.push_back(after(std::chrono::milliseconds((20 - i) % 7), i));
    auto r = co_await concur::gather(std::move(v));
    for (int i = 0; i < 20; ++i) EXPECT_EQ(r[static_cast<std::size_t>(i)], i);
    auto empty = co_await concur::gather(std::vector<awaitable<int>>{});
    EXPECT_TRUE(empty.empty());
  });
}

TEST(Gather, CancellingTheGatherCancelsEveryChild) {
  std::atomic<int> cancelled{0};
  concur::run([&]() -> awaitable<void> {
    auto g = concur::create_task(concur::gather(forever(&cancelled), forever(&cancelled)));
    for (int i = 0; i < 10; ++i) co_await concur::yield_now();
    g.cancel();
    EXPECT_THROW(co_await g.wait(), concur::CancelledError);
  });
  EXPECT_EQ(cancelled.load(), 2);
}

TEST(WaitFor, TimesOutAndCancelsTheChild) {
  std::atomic<int> cancelled{0};
  concur::run([&]() -> awaitable<void> {
    EXPECT_THROW(co_await concur::wait_for(forever(&cancelled), 5ms), concur::TimeoutError);
    EXPECT_EQ(cancelled.load(), 1);  // already cancelled and finished when wait_for threw
    EXPECT_EQ(co_await concur::wait_for(answer(), 1h), 42);
    EXPECT_THROW(co_await concur::wait_for(fails(), 1h), std::runtime_error);
  });
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  concur::run([]() -> awaitable<void> {
    std::vector<awaitable<int>> v;
    v.push_back(after(30ms, 0));
    v.push_back(after(1ms, 1));
    v.push_back(after(15ms, 2));
    auto ac = concur::as_completed(std::move(v));
    std::vector<int> got;
    while (ac.remaining() > 0) {
      got.push_back(co_await ac.next());
      EXPECT_EQ(static_cast<std::size_t>(got.back()), ac.last_index());
    }
    EXPECT_EQ(got, (std::vector<int>{1, 2, 0}));
    EXPECT_THROW(co_await ac.next(), concur::InvalidStateError);
  });
}

TEST(ToThread, RunsOffLoopAndResumesOnLoop) {
  concur::run([]() -> awaitable<void> {
    auto loop_thread = std::this_thread::get_id();
    std::thread::id worker;
    int v = co_await concur::to_thread([&worker](int x) {
      worker = std::this_thread::get_id();
      return x + 1;
    }, 41);
    EXPECT_EQ(v, 42);
    EXPECT_NE(worker, loop_thread);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    EXPECT_THROW(co_await concur::to_thread([] { throw std::logic_error("x"); }), std::logic_error);
    co_await concur::to_thread([] {});
  });
}

TEST(WrapFuture, ResumesOnTheLoopNotOnThePoolThread) {
  concur::ThreadPoolExecutor pool(2);
  std::set<std::thread::id> pool_threads;
  std::mutex m;
  std::atomic<int> resumed_on_pool{0};
  concur::run(
      [&]() -> awaitable<void> {
        std::vector<awaitable<int>> v;
        for (int i = 0; i < 64; ++i)
          v.push_back([](concur::ThreadPoolExecutor& p, int k, std::set<std::thread::id>& ids, std::mutex& mm,
                         std::atomic<int>& bad) -> awaitable<int> {
            int r = co_await concur::run_in_executor(p, [&ids, &mm](int x) {
              std::lock_guard lock(mm);
              ids.insert(std::this_thread::get_id());
              return x * 2;
            }, k);
            std::lock_guard lock(mm);
            if (ids.count(std::this_thread::get_id())) ++bad;
            co_return r;
          }(pool, i, pool_threads, m, resumed_on_pool));
        auto r = co_await concur::gather(std::move(v));
        for (int i = 0; i < 64; ++i) EXPECT_EQ(r[static_cast<std::size_t>(i)], 2 * i);
      },
      {.threads = 2});
  EXPECT_EQ(resumed_on_pool.load(), 0);
  EXPECT_FALSE(pool_threads.empty());
}

TEST(WrapFuture, ThroughTheExecutorInterfaceAndErrors) {
  concur::ThreadPoolExecutor pool(1);
  concur::Executor& ex = pool;
  concur::run([&]() -> awaitable<void> {
    EXPECT_EQ(co_await concur::run_in_executor(ex, [] { return 7; }), 7);
    EXPECT_THROW(co_await concur::run_in_executor(ex, [] { throw std::out_of_range("r"); }), std::out_of_range);
    concur::Future<int> manual;
    auto t = concur::create_task(concur::wrap_future(manual));
    co_await concur::yield_now();
    manual.set_result(9);
    EXPECT_EQ(co_await t.wait(), 9);
    concur::Future<int> cancelled;
    cancelled.cancel();
    EXPECT_THROW(co_await concur::wrap_future(cancelled), concur::CancelledError);
    // A future, a task and an awaitable gathered together.
    concur::Future<int> f2 = pool.submit([] { return 1; });
    auto t2 = concur::create_task(answer());
    auto [x, y, z] = co_await concur::gather(f2, t2, after(1ms, 3));
    EXPECT_EQ(x + y + z, 46);
  });
}

TEST(WrapFuture, CancellingTheWaitCancelsAPendingFuture) {
  concur::Future<int> never;
  concur::run([&]() -> awaitable<void> {
    auto t = concur::create_task(concur::wrap_future(never));
    co_await concur::yield_now();
    t.cancel();
    EXPECT_THROW(co_await t.wait(), concur::CancelledError);
  });
  EXPECT_TRUE(never.cancelled());
}

TEST(WrapFuture, LoopKeepsServingWhileExecutorWorks) {
  // A timer keeps ticking on the loop while blocking work runs in the pool.
  concur::ThreadPoolExecutor pool(1);
  std::atomic<bool> release{false};
  int ticks = 0;
  concur::run([&]() -> awaitable<void> {
    auto work = concur::create_task(concur::run_in_executor(pool, [&release] {
      while (!release.load()) std::this_thread::sleep_for(1ms);
      return 1;
    }));
    while (ticks < 5) {
      co_await concur::sleep(1ms);
      ++ticks;
    }
    release = true;
    EXPECT_EQ(co_await work.wait(), 1);
  });
  EXPECT_EQ(ticks, 5);
}

TEST(WrapFuture, ProcessPoolThroughRunInExecutor) {
  // The seed's run_in_executor with a process pool: CPU work in worker processes,
  // gathered on the loop, which keeps its own thread.
  concur::ProcessPoolExecutor pool(2);
  concur::run([&]() -> awaitable<void> {
    auto loop_thread = std::this_thread::get_id();
    std::vector<awaitable<long>> v;
    for (long i = 0; i < 8; ++i) v.push_back(concur::run_in_executor(pool, square_in_worker, i));
    auto r = co_await concur::gather(std::move(v));
    for (long i = 0; i < 8; ++i) EXPECT_EQ(r[static_cast<std::size_t>(i)], i * i);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    concur::Executor& any = pool;
    EXPECT_EQ(co_await concur::run_in_executor(any, square_in_worker, 12L), 144);
    EXPECT_THROW(co_await concur::run_in_executor(pool, fail_in_worker, 1L), std::invalid_argument);
  });
  pool.shutdown();
}
