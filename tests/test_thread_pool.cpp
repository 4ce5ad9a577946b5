// Tests of include/concur/thread_pool.hpp: ThreadPoolExecutor.
//
// Ports the behaviours of CPython's test_thread_pool.py, test_shutdown.py (thread pool
// parts) and test_init.py: worker count, lazy start and reuse of threads, thread names,
// initializers, shutdown in all its forms, and the races between them.
#include <gtest/gtest.h>

#include <sched.h>
#include <concur/errors.hpp>
#include <concur/executor.hpp>
#include <concur/future.hpp>
#include <concur/thread_pool.hpp>
#include <concur/wait.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/foundation_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Future;
using concur::ThreadPoolExecutor;
using foundation_test::Counter;
using foundation_test::current_tid;
using foundation_test::CustomError;
using foundation_test::Event;
using foundation_test::kBound;
using foundation_test::returns_within;
using foundation_test::thread_state;
using foundation_test::threads_named;
using foundation_test::wait_until_blocked;
using foundation_test::wait_until_no_threads_named;

int mul(int x, int y) {
  return x * y;
}

// The calling thread's name, as the kernel shows it.
std::string own_thread_name() {
  std::ifstream in("/proc/thread-self/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

// Thread ids of this process's threads whose name starts with `prefix`.
std::vector<pid_t> tids_named(const std::string& prefix) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    if (std::getline(in, name) && name.compare(0, prefix.size(), prefix) == 0)
      out.push_back(static_cast<pid_t>(std::stol(e->d_name)));
  }
  closedir(dir);
  return out;
}

// ------------------------------------------------------------------ construction

TEST(ThreadPool, DefaultMaxWorkersIsMin32CpusPlus4) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  int cpus = CPU_COUNT(&set);
  ThreadPoolExecutor executor;
  EXPECT_EQ(executor.max_workers(), std::min(32, cpus + 4));
  ThreadPoolExecutor from_options(concur::ThreadPoolOptions{});
  EXPECT_EQ(from_options.max_workers(), std::min(32, cpus + 4));
}

TEST(ThreadPool, MaxWorkersMustBePositive) {
  for (int n : {0, -1, -100}) {
    SCOPED_TRACE(n);
    try {
      ThreadPoolExecutor executor(n);
      FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("max_workers must be greater than 0"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(ThreadPoolExecutor({.max_workers = n}), std::invalid_argument);
    EXPECT_THROW(ThreadPoolExecutor({.max_workers = n, .thread_name_prefix = "x"}),
                 std::invalid_argument);
  }
  ThreadPoolExecutor one(1);
  EXPECT_EQ(one.max_workers(), 1);
}

TEST(ThreadPool, OptionsAggregate) {
  std::atomic<int> inits{0};
  ThreadPoolExecutor executor(
      {.max_workers = 3, .thread_name_prefix = "opts", .initializer = [&] { inits.fetch_add(1); }});
  EXPECT_EQ(executor.max_workers(), 3);
  EXPECT_EQ(executor.submit(own_thread_name).result(kBound), "opts_0");
  EXPECT_EQ(inits.load(), 1);
}

TEST(ThreadPool, ThreadsStartLazily) {
  ThreadPoolExecutor executor({.max_workers = 4, .thread_name_prefix = "lazy"});
  EXPECT_EQ(executor.thread_count(), 0u);
  EXPECT_TRUE(threads_named("lazy").empty());
  EXPECT_EQ(executor.submit(mul, 6, 7).result(kBound), 42);
  EXPECT_EQ(executor.thread_count(), 1u);
  EXPECT_EQ(threads_named("lazy").size(), 1u);
}

TEST(ThreadPool, IdleThreadIsReused) {
  ThreadPoolExecutor executor({.thread_name_prefix = "reuse"});
  EXPECT_EQ(executor.submit(mul, 21, 2).result(kBound), 42);
  EXPECT_EQ(executor.submit(mul, 6, 7).result(kBound), 42);
  EXPECT_EQ(executor.submit(mul, 3, 14).result(kBound), 42);
  EXPECT_EQ(executor.thread_count(), 1u);
  EXPECT_EQ(threads_named("reuse").size(), 1u);
  executor.shutdown(true);
}

TEST(ThreadPool, SaturationStartsExactlyMaxWorkers) {
  ThreadPoolExecutor executor({.max_workers = 4, .thread_name_prefix = "sat"});
  Event release;
  std::vector<Future<bool>> fs;
  for (int i = 0; i < 15 * executor.max_workers(); ++i)
    fs.push_back(executor.submit([&] { return release.wait(); }));
  EXPECT_EQ(executor.thread_count(), 4u);
  // A new worker names itself as it starts: wait until all four are visible by name.
  auto until = std::chrono::steady_clock::now() + kBound;
  while (threads_named("sat").size() < 4 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(threads_named("sat").size(), 4u);
  release.set();
  executor.shutdown(true);
  for (auto& f : fs) EXPECT_TRUE(f.result(0s));
  EXPECT_EQ(executor.thread_count(), 4u);
}

TEST(ThreadPool, ThreadNamesCarryThePrefix) {
  ThreadPoolExecutor executor({.max_workers = 5, .thread_name_prefix = "SpecialPool"});
  // Five tasks that all wait until the five have started: five threads.
  std::barrier all_started(5);
  std::vector<Future<std::string>> fs;
  for (int i = 0; i < 5; ++i)
    fs.push_back(executor.submit([&] {
      all_started.arrive_and_wait();
      return own_thread_name();
    }));
  std::set<std::string> from_tasks;
  for (auto& f : fs) from_tasks.insert(f.result(kBound));
  auto listed = threads_named("SpecialPool");
  std::set<std::string> from_proc(listed.begin(), listed.end());
  std::set<std::string> expected{"SpecialPool_0", "SpecialPool_1", "SpecialPool_2", "SpecialPool_3",
                                 "SpecialPool_4"};
  EXPECT_EQ(from_tasks, expected);
  EXPECT_EQ(from_proc, expected);
}

TEST(ThreadPool, DefaultThreadNames) {
  ThreadPoolExecutor executor(5);
  std::barrier all_started(5);
  std::vector<Future<std::string>> fs;
  for (int i = 0; i < 5; ++i)
    fs.push_back(executor.submit([&] {
      all_started.arrive_and_wait();
      return own_thread_name();
    }));
  std::regex pattern(R"(^ThreadPool-\d+_[0-4]$)");
  std::set<std::string> names;
  for (auto& f : fs) {
    auto name = f.result(kBound);
    EXPECT_TRUE(std::regex_match(name, pattern)) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 5u) << "names are not unique";
}

// An idle pool uses no CPU: once the work is done, every worker ends up asleep in the
// kernel (a worker that kept spinning would stay runnable).
TEST(ThreadPool, IdleWorkersSleep) {
  ThreadPoolExecutor executor({.max_workers = 3, .thread_name_prefix = "idle"});
  std::barrier all_started(3);
  std::vector<Future<void>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(executor.submit([&] { all_started.arrive_and_wait(); }));
  for (auto& f : fs) f.result(kBound);
  auto tids = tids_named("idle");
  ASSERT_EQ(tids.size(), 3u);
  for (pid_t tid : tids)
    EXPECT_TRUE(wait_until_blocked(tid, kBound)) << "worker " << tid << " never slept";
}

// ------------------------------------------------------------------ initializer (test_init.py)

thread_local std::string init_status = "uninitialized";

TEST(ThreadPoolInitializer, RunsInEveryWorkerBeforeAnyTask) {
  std::mutex mu;
  std::set<std::thread::id> initialized;
  ThreadPoolExecutor executor({.max_workers = 2, .initializer = [&] {
                                 init_status = "initialized";
                                 std::lock_guard lock(mu);
                                 initialized.insert(std::this_thread::get_id());
                               }});
  std::barrier both(2);
  std::vector<Future<std::string>> fs;
  for (int i = 0; i < 2; ++i)
    fs.push_back(executor.submit([&] {
      both.arrive_and_wait();  // so that both workers take part
      std::lock_guard lock(mu);
      return init_status + (initialized.count(std::this_thread::get_id()) ? "" : " elsewhere");
    }));
  for (auto& f : fs) EXPECT_EQ(f.result(kBound), "initialized");
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(executor.submit([] { return init_status; }).result(kBound), "initialized");
  executor.shutdown(true);
  std::lock_guard lock(mu);
  EXPECT_EQ(initialized.size(), 2u);
}

TEST(ThreadPoolInitializer, FailingInitializerBreaksThePool) {
  Event release;
  ThreadPoolExecutor executor({.max_workers = 2, .initializer = [&] {
                                 release.wait();  // let some futures be scheduled
                                 throw std::runtime_error("error in initializer");
                               }});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(executor.submit(mul, i, 2));
  release.set();
  for (auto& f : fs) {
    try {
      f.result(kBound);
      FAIL() << "a task ran on a broken pool";
    } catch (const concur::BrokenThreadPool& e) {
      EXPECT_NE(std::string(e.what()).find("initializer"), std::string::npos) << e.what();
    }
  }
  // Once its futures have failed the pool is broken, and submit() says so at once.
  EXPECT_THROW(executor.submit(mul, 1, 1), concur::BrokenThreadPool);
  EXPECT_THROW(executor.submit(mul, 1, 1), concur::BrokenExecutor);
  concur::Executor& base = executor;
  EXPECT_THROW(base.submit(mul, 1, 1), concur::BrokenThreadPool);
  EXPECT_THROW((void)executor.map(mul, std::vector<int>{1}, std::vector<int>{2}),
               concur::BrokenThreadPool);
}

TEST(ThreadPoolInitializer, BrokenPoolStillShutsDownCleanly) {
  ThreadPoolExecutor executor({.max_workers = 3, .thread_name_prefix = "broken", .initializer = [] {
                                 throw CustomError(1);
                               }});
  auto f = executor.submit(mul, 1, 2);
  EXPECT_THROW(f.result(kBound), concur::BrokenThreadPool);
  executor.shutdown(true);
  executor.shutdown(true);
  EXPECT_TRUE(wait_until_no_threads_named("broken"));
}

// ------------------------------------------------------------------ shutdown (test_shutdown.py)

TEST(ThreadPoolShutdown, RunAfterShutdown) {
  ThreadPoolExecutor executor(2);
  executor.shutdown();
  try {
    executor.submit(mul, 2, 5);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "cannot schedule new futures after shutdown");
  }
  EXPECT_THROW(executor.submit(mul, 2, 5), concur::ShutdownError);
}

TEST(ThreadPoolShutdown, ThreadsTerminate) {
  ThreadPoolExecutor executor({.max_workers = 5, .thread_name_prefix = "term"});
  std::barrier three(3);
  for (int i = 0; i < 3; ++i) (void)executor.submit([&] { three.arrive_and_wait(); });
  EXPECT_EQ(executor.thread_count(), 3u);
  executor.shutdown();
  EXPECT_TRUE(wait_until_no_threads_named("term"));
}

TEST(ThreadPoolShutdown, DestructorShutsDown) {  // the `with` block
  std::vector<int> results;
  {
    ThreadPoolExecutor e({.max_workers = 5, .thread_name_prefix = "ctx"});
    results = e.map([](int v) { return v < 0 ? -v : v; },
                    std::vector<int>{-5, -4, -3, -2, -1, 0, 1, 2, 3, 4})
                  .to_vector();
  }
  EXPECT_EQ(results, (std::vector<int>{5, 4, 3, 2, 1, 0, 1, 2, 3, 4}));
  EXPECT_TRUE(wait_until_no_threads_named("ctx"));
}

// test_del_shutdown: the results of a map survive the executor that computed them.
TEST(ThreadPoolShutdown, MapResultsOutliveTheExecutor) {
  auto executor = std::make_unique<ThreadPoolExecutor>(
      concur::ThreadPoolOptions{.max_workers = 5, .thread_name_prefix = "del"});
  std::vector<int> input{-5, -4, -3, -2, -1, 0, 1, 2, 3, 4};
  auto res = executor->map([](int v) { return v < 0 ? -v : v; }, input);
  executor.reset();
  EXPECT_TRUE(wait_until_no_threads_named("del"));
  std::vector<int> got = res.to_vector();
  ASSERT_EQ(got.size(), input.size());
  for (std::size_t i = 0; i < input.size(); ++i) EXPECT_EQ(got[i], std::abs(input[i]));
}

// The lazy part of a map cannot be submitted once the executor is gone: what was submitted
// is yielded, then ShutdownError (not a call into the destroyed executor).
TEST(ThreadPoolShutdown, MapLongerThanItsWindowOutlivesTheExecutor) {
  auto executor = std::make_unique<ThreadPoolExecutor>(2);
  auto res = executor->map([](long v) { return v * 2; }, std::vector<long>(100, 21),
                           concur::buffersize(4));
  executor.reset();
  std::vector<long> got;
  EXPECT_THROW(
      {
        for (long v : res) got.push_back(v);
      },
      concur::ShutdownError);
  EXPECT_EQ(got, std::vector<long>(4, 42));
}

// The same through a temporary pool, which is gone before the loop starts.
TEST(ThreadPoolShutdown, MapOnATemporaryPool) {
  auto res = ThreadPoolExecutor(2).map([](long v) { return v + 1; }, std::vector<long>(10, 1),
                                       concur::buffersize(3));
  std::vector<long> got;
  EXPECT_THROW(
      {
        for (long v : res) got.push_back(v);
      },
      concur::ShutdownError);
  EXPECT_EQ(got, std::vector<long>(3, 2));
}

TEST(ThreadPoolShutdown, NoWaitStillCompletesMappedWork) {  // test_shutdown_no_wait
  ThreadPoolExecutor executor({.max_workers = 5, .thread_name_prefix = "nowait"});
  std::vector<int> input{-5, -4, -3, -2, -1, 0, 1, 2, 3, 4};
  auto res = executor.map([](int v) { return v < 0 ? -v : v; }, input);
  executor.shutdown(false);
  std::vector<int> got = res.to_vector();
  ASSERT_EQ(got.size(), input.size());
  for (std::size_t i = 0; i < input.size(); ++i) EXPECT_EQ(got[i], std::abs(input[i]));
  executor.shutdown(true);
  EXPECT_TRUE(wait_until_no_threads_named("nowait"));
}

TEST(ThreadPoolShutdown, NoWaitReturnsWhileWorkRunsAndTheWorkCompletes) {
  ThreadPoolExecutor executor(2);
  Event started, gate;
  auto running = executor.submit([&] {
    started.set();
    gate.wait();
    return 7;
  });
  auto queued = executor.submit(mul, 3, 3);
  ASSERT_TRUE(started.wait());
  // If shutdown(false) waited it could not return: the task waits for `gate`.
  EXPECT_TRUE(returns_within([&] { executor.shutdown(false); }));
  EXPECT_TRUE(running.running());
  EXPECT_THROW(executor.submit(mul, 1, 1), concur::ShutdownError);
  gate.set();
  EXPECT_EQ(running.result(kBound), 7);
  EXPECT_EQ(queued.result(kBound), 9);
}

// test_cancel_futures, made deterministic: two workers held busy, the rest queued; every
// queued future is cancelled and the running ones finish normally.
TEST(ThreadPoolShutdown, CancelFuturesCancelsQueuedWork) {
  ThreadPoolExecutor executor(2);
  std::barrier both_running(3);
  Event gate;
  std::atomic<int> ran{0};
  std::vector<Future<int>> running, queued;
  for (int i = 0; i < 2; ++i)
    running.push_back(executor.submit([&, i] {
      both_running.arrive_and_wait();
      gate.wait();
      ran.fetch_add(1);
      return i;
    }));
  both_running.arrive_and_wait();
  for (int i = 0; i < 48; ++i)
    queued.push_back(executor.submit([&, i] {
      ran.fetch_add(1);
      return i;
    }));
  // Release the running tasks only once every queued one has been cancelled, from another
  // thread, while this one is inside shutdown(wait = true).
  std::thread releaser([&] {
    concur::wait(queued, kBound);
    gate.set();
  });
  executor.shutdown(true, /*cancel_futures=*/true);
  releaser.join();
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(running[static_cast<std::size_t>(i)].cancelled());
    EXPECT_EQ(running[static_cast<std::size_t>(i)].result(0s), i);
  }
  EXPECT_EQ(ran.load(), 2);
}

TEST(ThreadPoolShutdown, CancelFuturesWithoutWaiting) {
  ThreadPoolExecutor executor(1);
  Event started, gate;
  auto first = executor.submit([&] {
    started.set();
    return gate.wait();
  });
  ASSERT_TRUE(started.wait());
  std::vector<Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(executor.submit(mul, i, 1));
  executor.shutdown(false, true);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  gate.set();
  EXPECT_TRUE(first.result(kBound));
}

TEST(ThreadPoolShutdown, SubmittedThenCancelledDoesNotHang) {  // gh-94440
  ThreadPoolExecutor executor(1);
  EXPECT_EQ(executor.submit([] { return 0; }).result(kBound), 0);
  executor.submit([] { return 0; }).cancel();
  EXPECT_TRUE(returns_within([&] { executor.shutdown(true); }));
}

TEST(ThreadPoolShutdown, IsIdempotent) {
  ThreadPoolExecutor executor(2);
  auto f = executor.submit(mul, 2, 3);
  executor.shutdown();
  executor.shutdown();
  executor.shutdown(false);
  executor.shutdown(true, true);
  EXPECT_EQ(f.result(0s), 6);
}

// shutdown(false) and then shutdown(true): the second call still waits for the running work.
TEST(ThreadPoolShutdown, WaitAfterNoWaitStillWaits) {
  ThreadPoolExecutor executor(2);
  Event started, gate;
  auto f = executor.submit([&] {
    started.set();
    gate.wait();
    return 1;
  });
  ASSERT_TRUE(started.wait());
  executor.shutdown(false);
  pid_t me = current_tid();
  std::thread releaser([&] {
    wait_until_blocked(me);  // this thread is inside shutdown(true)
    gate.set();
  });
  executor.shutdown(true);
  EXPECT_TRUE(f.done()) << "shutdown(true) returned before the running task finished";
  releaser.join();
}

TEST(ThreadPoolShutdown, ConcurrentShutdownsAllWait) {
  ThreadPoolExecutor executor(3);
  Event gate;
  std::vector<Future<int>> fs;
  for (int i = 0; i < 30; ++i)
    fs.push_back(executor.submit([&, i] {
      gate.wait();
      return i;
    }));
  constexpr int kCallers = 4;
  std::vector<std::atomic<pid_t>> tids(kCallers);
  std::atomic<int> saw_all_done{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      tids[static_cast<std::size_t>(c)] = current_tid();
      executor.shutdown(true, c % 2 == 1);
      bool all = std::all_of(fs.begin(), fs.end(), [](auto& f) { return f.done(); });
      if (all) saw_all_done.fetch_add(1);
    });
  for (auto& t : tids) {
    while (t.load() == 0) std::this_thread::yield();
    wait_until_blocked(t.load());
  }
  gate.set();
  for (auto& t : callers) t.join();
  EXPECT_EQ(saw_all_done.load(), kCallers) << "a shutdown(true) returned before the work was done";
  for (auto& f : fs) EXPECT_TRUE(f.done());
}

// ------------------------------------------------------------------ callbacks and re-entrancy

TEST(ThreadPoolCallbacks, RunInTheWorkerThatCompletes) {
  ThreadPoolExecutor executor({.max_workers = 2, .thread_name_prefix = "cbw"});
  Event gate, called;
  std::string where;
  auto f = executor.submit([&] { return gate.wait(); });
  f.add_done_callback([&](const Future<bool>&) {
    where = own_thread_name();
    called.set();
  });
  gate.set();
  ASSERT_TRUE(called.wait());
  EXPECT_EQ(where.rfind("cbw_", 0), 0u) << where;
}

TEST(ThreadPoolCallbacks, ExceptionFromCallbackInWorkerIsReported) {
  ThreadPoolExecutor executor(1);
  Event gate, second;
  auto f = executor.submit([&] { return gate.wait(); });
  f.add_done_callback([](const Future<bool>&) { throw std::runtime_error("boom in worker"); });
  f.add_done_callback([&](const Future<bool>&) { second.set(); });
  testing::internal::CaptureStderr();
  gate.set();
  bool ran = second.wait();
  executor.shutdown(true);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(ran);
  EXPECT_NE(err.find("boom in worker"), std::string::npos) << err;
  // The worker survived: the pool is still usable... until the shutdown above.
  EXPECT_TRUE(f.result(0s));
}

// A callback that shuts its own pool down with wait=true runs in a worker of that pool: it
// must not deadlock (joining itself), and the queued work must still be done.
TEST(ThreadPoolCallbacks, CallbackShuttingDownItsOwnPoolDoesNotDeadlock) {
  ThreadPoolExecutor executor(1);
  Event gate, callback_returned;
  auto f = executor.submit([&] { return gate.wait(); });
  auto later = executor.submit(mul, 6, 7);  // queued behind f on the only worker
  f.add_done_callback([&](const Future<bool>&) {
    executor.shutdown(true);
    callback_returned.set();
  });
  gate.set();
  EXPECT_TRUE(callback_returned.wait()) << "shutdown(true) from a callback deadlocked";
  EXPECT_EQ(later.result(kBound), 42);
  EXPECT_THROW(executor.submit(mul, 1, 1), concur::ShutdownError);
}

// After a callback in a worker called shutdown(true), the owner's own shutdown(true) must
// still wait for the work that is running.
// DISABLED: fails today, see the test report (join_workers() in a worker detaches every
// thread, so later shutdown(true) calls have nothing left to join). Run with
// --gtest_also_run_disabled_tests.
TEST(ThreadPoolCallbacks, OwnersShutdownStillWaitsAfterCallbackShutdown) {
  ThreadPoolExecutor executor(2);
  Event started_long, gate_long, gate_short, callback_returned;
  auto long_task = executor.submit([&] {
    started_long.set();
    gate_long.wait();
    return 1;
  });
  ASSERT_TRUE(started_long.wait());
  auto short_task = executor.submit([&] { return gate_short.wait(); });
  short_task.add_done_callback([&](const Future<bool>&) {
    executor.shutdown(true);
    callback_returned.set();
  });
  gate_short.set();
  ASSERT_TRUE(callback_returned.wait());
  pid_t me = current_tid();
  std::thread releaser([&] {
    wait_until_blocked(me);
    gate_long.set();
  });
  executor.shutdown(true);
  bool waited = long_task.done();
  gate_long.set();
  releaser.join();
  EXPECT_TRUE(waited) << "shutdown(true) returned while a task was still running";
}

TEST(ThreadPoolCallbacks, DestroyingThePoolFromInsideATask) {
  auto* executor = new ThreadPoolExecutor(1);
  Event submitted;
  auto killer = executor->submit([&] {
    submitted.wait();
    delete executor;  // shutdown(true) from its own worker: must not deadlock
    return 1;
  });
  auto after1 = executor->submit(mul, 2, 3);
  auto after2 = executor->submit(mul, 4, 5);
  submitted.set();
  EXPECT_EQ(killer.result(kBound), 1);
  EXPECT_EQ(after1.result(kBound), 6);
  EXPECT_EQ(after2.result(kBound), 20);
}

TEST(ThreadPoolCallbacks, TaskSubmittingToItsOwnPool) {
  ThreadPoolExecutor executor(1);
  // With one worker the inner task can only run after the outer one returns.
  auto outer = executor.submit([&] { return executor.submit(mul, 6, 7); });
  Future<int> inner = outer.result(kBound);
  EXPECT_EQ(inner.result(kBound), 42);
}

// ------------------------------------------------------------------ races

// CPython's "cancel vs start": whichever wins, the outcome is consistent.
TEST(ThreadPoolRaces, CancelVersusStart) {
  ThreadPoolExecutor executor(1);
  int cancelled = 0, ran = 0;
  for (int round = 0; round < 3000; ++round) {
    std::atomic<bool> executed{false};
    auto f = executor.submit([&] {
      executed = true;
      return round;
    });
    bool c = f.cancel();
    if (c) {
      ++cancelled;
      ASSERT_TRUE(f.cancelled());
      ASSERT_THROW(f.result(kBound), concur::CancelledError);
    } else {
      ++ran;
      ASSERT_EQ(f.result(kBound), round);
    }
    ASSERT_EQ(executed.load(), !c) << "round " << round;
  }
  EXPECT_EQ(cancelled + ran, 3000);
}

// A submit racing a shutdown either is refused (ShutdownError) or is run: an accepted task
// must never be left behind without a worker. Which side wins is up to the scheduler: the
// rounds go on (up to a bound) until both outcomes were seen, and a machine too loaded to
// show one of them gets a note, not a failure (the race decides nothing about correctness).
TEST(ThreadPoolRaces, SubmitRacingShutdownIsRunOrRefused) {
  int accepted = 0, refused = 0;
  for (int round = 0; round < 3000 || (round < 6000 && (accepted == 0 || refused == 0));
       ++round) {
    ThreadPoolExecutor executor(2);
    foundation_test::SpinStart start(2);
    Future<int> f;
    bool ok = false;
    std::thread submitter([&] {
      start.arrive_and_wait();
      // Vary which side goes first so that some rounds land in the window between the
      // submit being accepted and the worker being started.
      for (int spin = 0; spin < (round % 2 ? round % 64 : 0); ++spin) concur::detail::cpu_relax();
      try {
        f = executor.submit(mul, round, 1);
        ok = true;
      } catch (const concur::ShutdownError&) {
      }
    });
    start.arrive_and_wait();
    for (int spin = 0; spin < (round % 2 ? 0 : round % 64); ++spin) concur::detail::cpu_relax();
    executor.shutdown(true);
    submitter.join();
    if (ok) {
      ++accepted;
      // Accepted before the shutdown, so shutdown(true) waited for it.
      EXPECT_TRUE(f.done()) << "round " << round << ": shutdown(true) did not wait for it";
      ASSERT_TRUE(f.wait(10s)) << "round " << round << ": an accepted task never ran";
      ASSERT_EQ(f.result(), round);
    } else {
      ++refused;
    }
  }
  std::printf("accepted %d, refused %d\n", accepted, refused);
  if (accepted == 0 || refused == 0)
    std::printf("note: only one side of the race was seen on this run\n");
}

TEST(ThreadPoolRaces, ManyProducersManyTasks) {
  ThreadPoolExecutor executor(3);
  constexpr int kProducers = 4;
  static constexpr long kEach = 3000;
  std::vector<std::vector<Future<long>>> fs(kProducers);
  std::barrier start(kProducers);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([&, p] {
      start.arrive_and_wait();
      for (int i = 0; i < kEach; ++i)
        fs[static_cast<std::size_t>(p)].push_back(
            executor.submit([p, i] { return p * kEach + i; }));
    });
  for (auto& t : producers) t.join();
  for (int p = 0; p < kProducers; ++p)
    for (int i = 0; i < kEach; ++i)
      ASSERT_EQ(fs[static_cast<std::size_t>(p)][static_cast<std::size_t>(i)].result(kBound),
                p * kEach + i);
}

// Bursts separated by idle periods: a worker that went to sleep must be woken for new work
// (a lost wake-up hangs here).
TEST(ThreadPoolRaces, WorkAfterWorkersFellAsleep) {
  ThreadPoolExecutor executor({.max_workers = 2, .thread_name_prefix = "nap"});
  for (int round = 0; round < 20; ++round) {
    std::vector<Future<int>> fs;
    for (int i = 0; i < 1 + round % 5; ++i) fs.push_back(executor.submit(mul, round, i));
    for (int i = 0; i < static_cast<int>(fs.size()); ++i)
      ASSERT_EQ(fs[static_cast<std::size_t>(i)].result(kBound), round * i);
    for (pid_t tid : tids_named("nap")) wait_until_blocked(tid, 1s);
  }
}

TEST(ThreadPoolRaces, BlockedResultWokenByTheWorker) {
  ThreadPoolExecutor executor(2);
  pid_t me = current_tid();
  Event gate;
  auto f = executor.submit([&] {
    gate.wait();
    return std::string("woken");
  });
  std::thread releaser([&] {
    wait_until_blocked(me);
    gate.set();
  });
  EXPECT_EQ(f.result(), "woken");
  releaser.join();
}

TEST(ThreadPoolRaces, WaitingOnAlreadyDoneFutures) {
  ThreadPoolExecutor executor(2);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(executor.submit(mul, i, i));
  for (auto& f : fs) f.result(kBound);
  for (int repeat = 0; repeat < 3; ++repeat) {
    for (int i = 0; i < 10; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(0s), i * i);
    auto [done, not_done] = concur::wait(fs, 0s);
    EXPECT_EQ(done.size(), 10u);
    EXPECT_TRUE(not_done.empty());
    std::size_t n = 0;
    for (auto& f : concur::as_completed(fs, 0s)) n += f.done() ? 1 : 0;
    EXPECT_EQ(n, 10u);
  }
}

}  // namespace
