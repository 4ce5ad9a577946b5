// Tests of concur/pool.hpp: the multiprocessing.Pool API, on worker processes (Pool) and
// on threads (ThreadPool), which share one front end. The behaviours common to both run
// as typed tests; crash handling, maxtasksperchild, initializers and start methods are
// Pool's own.
//
// Tasks that must still be running when the test acts wait for a file the test creates
// (or are killed by terminate()), so no test depends on timing; bounds only turn a hang
// of a broken build into a failure.
#include "concur/pool.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "support/files.hpp"

namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- coordination by files
using files::exists;
using files::TestDir;
using files::touch;

// ---------------------------------------------------------------- task functions
int square(int x) {
  return x * x;
}
int add(int a, int b) {
  return a + b;
}
int pid_task(int) {
  return static_cast<int>(::getpid());
}
void nothing() {}
int fail_on_three(int x) {
  if (x == 3) throw std::out_of_range("three is out of range");
  return x;
}
std::string join_words(std::string a, std::string b, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += a + b;
  return out;
}
// Waits (bounded) until `release` exists, then returns x.
int wait_release(std::string release, int x) {
  for (int i = 0; i < 60'000 && !exists(release); ++i) ::usleep(1000);
  return x;
}
// Sleeps ms milliseconds; returns ms.
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// ---- process-only failures
int die_on_three(int x) {
  if (x == 3) ::raise(SIGKILL);
  return x * 10;
}
int exit_on_seven(int x) {
  if (x == 7) ::_exit(7);
  return x;
}

// A result whose encoding fails in the worker, without hurting the worker.
struct Unsendable {
  int v = 0;
  template <class A>
  void save(A&) const {
    throw std::runtime_error("this result cannot be encoded");
  }
  template <class A>
  void load(A& a) {
    a(v);
  }
};
Unsendable make_unsendable() {
  return {};
}

// ---- initializer
int g_initialized = 0;
std::string g_init_name;
void init_worker(std::string name, int value) {
  g_init_name = std::move(name);
  g_initialized = value;
}
std::string read_init(int) {
  return g_init_name + ":" + std::to_string(g_initialized);
}

// An input range whose iteration throws after `good` items (an exception while producing
// input, as a Python generator that raises).
struct ThrowingInput {
  int good = 0;
  struct iterator {
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    int i = 0;
    int good = 0;
    int operator*() const {
      if (i >= good) throw std::length_error("input ran dry");
      return i;
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    void operator++(int) { ++i; }
    bool operator==(std::default_sentinel_t) const { return false; }
  };
  iterator begin() const { return {0, good}; }
  std::default_sentinel_t end() const { return {}; }
};
static_assert(std::ranges::input_range<ThrowingInput>);

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

// ---------------------------------------------------------------- typed: Pool and ThreadPool
template <class P>
class PoolApi : public ::testing::Test {};
using PoolKinds = ::testing::Types<concur::Pool, concur::ThreadPool>;
class PoolNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, concur::Pool> ? "Pool" : "ThreadPool";
  }
};
TYPED_TEST_SUITE(PoolApi, PoolKinds, PoolNames);

TYPED_TEST(PoolApi, ApplyReturnsTheResult) {
  TypeParam pool(2);
  EXPECT_EQ(pool.apply(add, 2, 3), 5);
  pool.apply(nothing);
  EXPECT_EQ(pool.apply(join_words, std::string("ab"), std::string("c"), 2), "abcabc");
}

TYPED_TEST(PoolApi, ApplyRethrowsTheTasksExceptionWithItsType) {
  TypeParam pool(1);
  try {
    pool.apply(fail_on_three, 3);
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("three is out of range"), std::string::npos);
  }
}

TYPED_TEST(PoolApi, ApplyAsyncGetWaitReadySuccessful) {
  TypeParam pool(2);
  TestDir dir;
  auto r = pool.apply_async(wait_release, dir.file("go"), 42);
  EXPECT_FALSE(r.ready());
  EXPECT_THROW(r.successful(), std::logic_error);  // Python: ValueError when not ready
  EXPECT_THROW(r.get(1ms), concur::TimeoutError);
  EXPECT_FALSE(r.wait(1ms));
  touch(dir.file("go"));
  r.wait();
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  EXPECT_EQ(r.get(), 42);
  EXPECT_EQ(r.get(10s), 42);

  auto bad = pool.apply_async(fail_on_three, 3);
  EXPECT_TRUE(bad.wait(60s));
  EXPECT_FALSE(bad.successful());
  EXPECT_THROW(bad.get(), std::out_of_range);
}

TYPED_TEST(PoolApi, ApplyAsyncCallbacksRunInThisProcess) {
  TypeParam pool(2);
  std::mutex m;
  std::vector<int> values;
  std::vector<std::string> errors;
  const pid_t me = ::getpid();
  std::atomic<int> callbacks_here{0};
  auto on_value = [&](int v) {
    std::lock_guard lock(m);
    values.push_back(v);
    if (::getpid() == me) ++callbacks_here;
  };
  auto on_error = [&](std::exception_ptr e) {
    std::lock_guard lock(m);
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      errors.push_back(x.what());
    }
    if (::getpid() == me) ++callbacks_here;
  };
  auto a =
      pool.apply_async(square, 7, concur::callback(on_value), concur::error_callback(on_error));
  auto b = pool.apply_async(fail_on_three, 3, concur::callback(on_value),
                            concur::error_callback(on_error));
  a.wait();
  b.wait();
  std::lock_guard lock(m);
  EXPECT_EQ(values, std::vector<int>{49});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("three"), std::string::npos);
  EXPECT_EQ(callbacks_here.load(), 2);
}

TYPED_TEST(PoolApi, MapKeepsInputOrderWithAnyChunksize) {
  TypeParam pool(2);
  auto in = iota_vec(1000);
  std::vector<int> expect;
  for (int x : in) expect.push_back(x * x);
  EXPECT_EQ(pool.map(square, in), expect);  // Python's default chunksize
  EXPECT_EQ(pool.map(square, in, 1), expect);
  EXPECT_EQ(pool.map(square, in, 7), expect);
  EXPECT_EQ(pool.map(square, in, 5000), expect);
}

TYPED_TEST(PoolApi, MapOfEmptyInputIsEmpty) {
  TypeParam pool(2);
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  EXPECT_TRUE(pool.map_async(square, std::vector<int>{}).get().empty());
  EXPECT_TRUE(pool.starmap(add, std::vector<std::tuple<int, int>>{}).empty());
  int n = 0;
  for ([[maybe_unused]] int v : pool.imap(square, std::vector<int>{})) ++n;
  for ([[maybe_unused]] int v : pool.imap_unordered(square, std::vector<int>{})) ++n;
  EXPECT_EQ(n, 0);
}

TYPED_TEST(PoolApi, MapRaisesTheTasksException) {
  TypeParam pool(2);
  EXPECT_THROW(pool.map(fail_on_three, iota_vec(10)), std::out_of_range);
  EXPECT_THROW(pool.map(fail_on_three, iota_vec(10), 1), std::out_of_range);
  // The pool is still usable.
  EXPECT_EQ(pool.map(square, std::vector<int>{3}), std::vector<int>{9});
}

TYPED_TEST(PoolApi, MapRaisesAnExceptionFromProducingInput) {
  TypeParam pool(2);
  EXPECT_THROW(pool.map(square, ThrowingInput{5}), std::length_error);
}

TYPED_TEST(PoolApi, MapAsyncWithCallback) {
  TypeParam pool(2);
  std::vector<int> got;
  std::atomic<bool> called{false};
  auto r = pool.map_async(square, iota_vec(20), 3, concur::callback([&](const std::vector<int>& v) {
                            got = v;
                            called = true;
                          }));
  auto v = r.get();
  ASSERT_EQ(v.size(), 20u);
  EXPECT_EQ(v[19], 361);
  EXPECT_TRUE(called.load());
  EXPECT_EQ(got, v);
}

TYPED_TEST(PoolApi, ImapIsOrderedAndLazy) {
  TypeParam pool(2);
  std::vector<int> out;
  for (int v : pool.imap(square, iota_vec(100))) out.push_back(v);
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
  out.clear();
  for (int v : pool.imap(square, iota_vec(100), 8)) out.push_back(v);
  EXPECT_EQ(out.size(), 100u);
  EXPECT_EQ(out[99], 99 * 99);
}

TYPED_TEST(PoolApi, ImapYieldsTheItemsBeforeAnInputErrorThenRaisesIt) {
  TypeParam pool(2);
  std::vector<int> out;
  try {
    for (int v : pool.imap(square, ThrowingInput{4})) out.push_back(v);
    FAIL() << "no exception";
  } catch (const std::length_error&) {
  }
  EXPECT_EQ(out, (std::vector<int>{0, 1, 4, 9}));
}

TYPED_TEST(PoolApi, ImapRaisesTheFirstFailingItemInOrder) {
  TypeParam pool(2);
  std::vector<int> out;
  try {
    for (int v : pool.imap(fail_on_three, iota_vec(10))) out.push_back(v);
    FAIL() << "no exception";
  } catch (const std::out_of_range&) {
  }
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2}));
}

TYPED_TEST(PoolApi, ImapUnorderedYieldsEveryResultOnce) {
  TypeParam pool(2);
  std::multiset<int> got;
  for (int v : pool.imap_unordered(square, iota_vec(200), 3)) got.insert(v);
  std::multiset<int> expect;
  for (int i = 0; i < 200; ++i) expect.insert(i * i);
  EXPECT_EQ(got, expect);
}

TYPED_TEST(PoolApi, ImapUnorderedYieldsInCompletionOrder) {
  TypeParam pool(2);
  TestDir dir;
  // Item 0 waits for a file that is only created once item 1 has been yielded.
  std::vector<std::tuple<std::string, int>> items{{dir.file("go"), 0}, {dir.file("none"), 1}};
  touch(dir.file("none"));
  std::vector<int> order;
  for (int v : pool.imap_unordered(
           [](std::tuple<std::string, int> t) {
             return wait_release(std::get<0>(t), std::get<1>(t));
           },
           items)) {
    order.push_back(v);
    if (v == 1) touch(dir.file("go"));
  }
  EXPECT_EQ(order, (std::vector<int>{1, 0}));
}

TYPED_TEST(PoolApi, StarmapUnpacksTuples) {
  TypeParam pool(2);
  std::vector<std::tuple<int, int>> pairs;
  for (int i = 0; i < 50; ++i) pairs.emplace_back(i, 2 * i);
  auto out = pool.starmap(add, pairs);
  ASSERT_EQ(out.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], 3 * i);
  auto r = pool.starmap_async(add, pairs, 4);
  EXPECT_EQ(r.get(), out);
  std::vector<std::tuple<std::string, std::string, int>> words{{"a", "b", 2}, {"x", "", 3}};
  EXPECT_EQ(pool.starmap(join_words, words), (std::vector<std::string>{"abab", "xxx"}));
}

TYPED_TEST(PoolApi, CloseThenJoinFinishesQueuedWork) {
  TypeParam pool(2);
  std::vector<concur::AsyncResult<int>> rs;
  for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(square, i));
  pool.close();
  pool.join();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(rs[static_cast<std::size_t>(i)].ready());
    EXPECT_EQ(rs[static_cast<std::size_t>(i)].get(), i * i);
  }
}

TYPED_TEST(PoolApi, JoinBeforeCloseIsALogicError) {
  TypeParam pool(1);
  EXPECT_THROW(pool.join(), std::logic_error);
  pool.close();
  pool.join();
}

TYPED_TEST(PoolApi, WorkAfterCloseOrTerminateIsRefused) {
  TypeParam pool(1);
  pool.close();
  EXPECT_THROW(pool.apply(square, 1), concur::ShutdownError);
  EXPECT_THROW(pool.apply_async(square, 1), concur::ShutdownError);
  EXPECT_THROW(pool.map(square, iota_vec(3)), concur::ShutdownError);
  EXPECT_THROW(pool.imap(square, iota_vec(3)), concur::ShutdownError);
  TypeParam other(1);
  other.terminate();
  EXPECT_THROW(other.apply(square, 1), concur::ShutdownError);
  other.join();
}

TYPED_TEST(PoolApi, TerminateWithManyPendingTasksReturnsPromptlyAndNothingHangs) {
  TypeParam pool(2);
  std::vector<concur::AsyncResult<int>> rs;
  rs.reserve(10'000);
  for (int i = 0; i < 10'000; ++i) rs.push_back(pool.apply_async(sleep_ms, 100));
  pool.terminate();
  pool.join();
  // Every result is settled: queued ones were cancelled; the few already handed to a
  // worker were killed with it (Pool) or finished (ThreadPool).
  std::size_t cancelled = 0;
  for (auto& r : rs) {
    ASSERT_TRUE(r.wait(60s));
    try {
      r.get();
    } catch (const concur::CancelledError&) {
      ++cancelled;
    } catch (const concur::Error&) {
    }
  }
  EXPECT_GE(cancelled, 10'000u - 16u);
}

TYPED_TEST(PoolApi, DestructorTerminatesPendingWork) {
  std::vector<concur::AsyncResult<int>> rs;
  {
    TypeParam pool(1);
    for (int i = 0; i < 100; ++i) rs.push_back(pool.apply_async(sleep_ms, 50));
  }
  for (auto& r : rs) EXPECT_TRUE(r.ready());
}

TYPED_TEST(PoolApi, InvalidSizes) {
  EXPECT_THROW(TypeParam(0), std::invalid_argument);
  EXPECT_THROW(TypeParam(-3), std::invalid_argument);
}

TYPED_TEST(PoolApi, DefaultSizeIsTheCpuCount) {
  TypeParam pool;
  EXPECT_EQ(pool.map(square, iota_vec(10)).size(), 10u);
}

// ---------------------------------------------------------------- Pool: worker processes
TEST(Pool, TasksRunInOtherProcesses) {
  concur::Pool pool(2);
  auto pids = pool.map(pid_task, iota_vec(20), 1);
  for (int pid : pids) EXPECT_NE(pid, ::getpid());
}

TEST(Pool, EachStartMethodWorks) {
  for (auto method :
       {concur::StartMethod::fork, concur::StartMethod::spawn, concur::StartMethod::forkserver}) {
    concur::Pool pool({.processes = 2, .start_method = method});
    EXPECT_EQ(pool.map(square, iota_vec(50))[49], 49 * 49);
    EXPECT_NE(pool.apply(pid_task, 0), ::getpid());
  }
}

TEST(Pool, InitializerRunsInEachWorkerWithItsArguments) {
  concur::Pool pool({.processes = 2, .initializer = {init_worker, std::string("ready"), 7}});
  for (const auto& s : pool.map(read_init, iota_vec(20), 1)) EXPECT_EQ(s, "ready:7");
}

TEST(Pool, MaxTasksPerChildReplacesEveryWorker) {
  concur::Pool pool({.processes = 2, .maxtasksperchild = 10});
  auto pids = pool.map(pid_task, iota_vec(100), 1);
  std::map<int, int> per_pid;
  for (int pid : pids) ++per_pid[pid];
  for (auto [pid, n] : per_pid) EXPECT_LE(n, 10) << "worker " << pid << " ran " << n << " tasks";
  EXPECT_GE(per_pid.size(), 10u);
}

TEST(Pool, AWorkerKilledDuringImapFailsOnlyItsItemAndIsReplaced) {
  concur::Pool pool(2);
  std::vector<int> out;
  try {
    for (int v : pool.imap(die_on_three, iota_vec(10))) out.push_back(v);
    FAIL() << "no exception";
  } catch (const concur::WorkerDiedError& e) {
    EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos) << e.what();
  }
  EXPECT_EQ(out, (std::vector<int>{0, 10, 20}));
  // A replacement worker serves the rest.
  EXPECT_EQ(pool.map(square, iota_vec(30))[29], 29 * 29);
}

TEST(Pool, AWorkerDeathFailsOnlyTheTaskItWasRunning) {
  concur::Pool pool(2);
  std::vector<concur::AsyncResult<int>> rs;
  for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(exit_on_seven, i));
  for (int i = 0; i < 20; ++i) {
    auto& r = rs[static_cast<std::size_t>(i)];
    if (i == 7) {
      try {
        r.get();
        FAIL() << "no exception";
      } catch (const concur::WorkerDiedError& e) {
        EXPECT_NE(std::string(e.what()).find("7"), std::string::npos) << e.what();
      }
    } else {
      EXPECT_EQ(r.get(), i);
    }
  }
}

TEST(Pool, ImapUnorderedSurvivesAWorkerDeath) {
  concur::Pool pool(2);
  std::set<int> got;
  bool died = false;
  auto results = pool.imap_unordered(die_on_three, iota_vec(10));
  try {
    for (int v : results) got.insert(v);
  } catch (const concur::WorkerDiedError&) {
    died = true;
  }
  EXPECT_TRUE(died);
  EXPECT_FALSE(got.count(30));
  EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST(Pool, TwentyResultsThatFailToSerializeCostNoWorker) {
  concur::Pool pool(1);
  int pid = pool.apply(pid_task, 0);
  for (int i = 0; i < 20; ++i)
    EXPECT_THROW(pool.apply(make_unsendable), concur::SerializationError);
  EXPECT_EQ(pool.apply(pid_task, 0), pid);
}

TEST(Pool, TerminateKillsRunningTasks) {
  concur::Pool pool(2);
  TestDir dir;
  auto a = pool.apply_async(wait_release, dir.file("never"), 1);
  auto b = pool.apply_async(wait_release, dir.file("never"), 2);
  auto queued = pool.apply_async(square, 3);
  // Make sure the two blocking tasks are running before terminate().
  for (int i = 0; i < 60'000 && pool.worker_pids().size() < 2; ++i) ::usleep(1000);
  pool.terminate();
  pool.join();
  EXPECT_TRUE(a.wait(60s));
  EXPECT_TRUE(b.wait(60s));
  EXPECT_THROW(a.get(), concur::Error);
  EXPECT_THROW(b.get(), concur::Error);
  EXPECT_TRUE(queued.ready());
}

TEST(Pool, ExceptionsArriveWithTheirType) {
  concur::Pool pool(1);
  EXPECT_THROW(pool.apply(fail_on_three, 3), std::out_of_range);
  auto r = pool.map_async(fail_on_three, iota_vec(5));
  EXPECT_THROW(r.get(), std::out_of_range);
}

}  // namespace
