// Tests of include/concur/executor.hpp: submit() and the lazy, bounded map(), through a
// concrete ThreadPoolExecutor and through `Executor&` (the same tests run both ways).
//
// Ports the behaviours of CPython's test_concurrent_futures/executor.py (ExecutorTest) and
// the map parts of test_thread_pool.py, plus concur's own: lazy input with a bounded window,
// dropping the results cancels pending work, options after the ranges.
//
// One deliberate difference from recent CPython: after an element fails, map() ends (the
// rest is cancelled), as in CPython up to 3.13, instead of going on with the next element.
#include <gtest/gtest.h>

#include <concur/errors.hpp>
#include <concur/executor.hpp>
#include <concur/future.hpp>
#include <concur/thread_pool.hpp>
#include <concur/wait.hpp>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "support/foundation_helpers.hpp"
#include "support/sanitizers.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Future;
using foundation_test::Counter;
using foundation_test::CustomError;
using foundation_test::Event;
using foundation_test::kBound;
using foundation_test::LiveCount;
using foundation_test::Tracked;

long ipow(long base, long exp) {
  long r = 1;
  for (long i = 0; i < exp; ++i) r *= base;
  return r;
}

std::pair<int, int> divmod(int a, int b) {
  if (b == 0) throw std::domain_error("integer division or modulo by zero");
  return {a / b, a % b};
}

std::vector<long> iota_vec(long n) {
  std::vector<long> v;
  for (long i = 0; i < n; ++i) v.push_back(i);
  return v;
}

// A generator-like input range: produces Tracked(i) for i in [0, limit) on the fly, counts
// how many items were pulled, and can throw at a given position. Input-only: every pass
// over it continues where the last one stopped, like a Python iterator.
struct Source {
  LiveCount live;
  std::atomic<long> pulled{0};
  long limit = LONG_MAX;
  long throw_at = -1;
};

class Generator {
 public:
  struct iterator {
    using value_type = Tracked;
    using difference_type = std::ptrdiff_t;
    Source* src = nullptr;
    Tracked operator*() const {
      long i = src->pulled.load();
      if (i == src->throw_at) throw CustomError(static_cast<int>(i));
      return Tracked(&src->live, i);
    }
    iterator& operator++() {
      src->pulled.fetch_add(1);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.src->pulled.load() >= it.src->limit;
    }
  };
  explicit Generator(Source* s) : src_(s) {}
  iterator begin() const { return iterator{src_}; }
  std::default_sentinel_t end() const { return {}; }

 private:
  Source* src_;
};
static_assert(std::ranges::input_range<Generator>);
static_assert(!std::ranges::forward_range<Generator>);

enum class Via { pool, base };

std::string via_name(const testing::TestParamInfo<Via>& info) {
  return info.param == Via::pool ? "ThreadPoolExecutor" : "ExecutorRef";
}

// Every test runs twice: calling the concrete pool, and through `concur::Executor&`.
class ExecutorTest : public testing::TestWithParam<Via> {
 protected:
  std::unique_ptr<concur::ThreadPoolExecutor> pool =
      std::make_unique<concur::ThreadPoolExecutor>(5);

  void use_workers(int n) { pool = std::make_unique<concur::ThreadPoolExecutor>(n); }
  concur::Executor& base() { return *pool; }

  template <class... A>
  auto submit(A&&... a) {
    if (GetParam() == Via::base) return base().submit(std::forward<A>(a)...);
    return pool->submit(std::forward<A>(a)...);
  }
  template <class... A>
  auto map(A&&... a) {
    if (GetParam() == Via::base) return base().map(std::forward<A>(a)...);
    return pool->map(std::forward<A>(a)...);
  }
  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (GetParam() == Via::base)
      base().shutdown(wait, cancel_futures);
    else
      pool->shutdown(wait, cancel_futures);
  }
};

INSTANTIATE_TEST_SUITE_P(Both, ExecutorTest, testing::Values(Via::pool, Via::base), via_name);

// ------------------------------------------------------------------ submit (executor.py)

TEST_P(ExecutorTest, Submit) {
  auto future = submit(ipow, 2L, 8L);
  EXPECT_EQ(future.result(kBound), 256);
}

TEST_P(ExecutorTest, SubmitCopiesItsArguments) {
  std::string text = "before";
  Event go;
  auto future = submit(
      [&go](const std::string& s) {
        go.wait();
        return s;
      },
      text);
  text = "after";
  go.set();
  EXPECT_EQ(future.result(kBound), "before");
}

TEST_P(ExecutorTest, SubmitMoveOnlyCallableAndArguments) {
  auto owned = std::make_unique<int>(40);
  auto future = submit([p = std::move(owned)](std::unique_ptr<int> q) { return *p + *q; },
                       std::make_unique<int>(2));
  EXPECT_EQ(future.result(kBound), 42);
}

TEST_P(ExecutorTest, SubmitWithReferenceWrapper) {
  int target = 0;
  auto future = submit([](int& t, int v) { t = v; }, std::ref(target), 7);
  future.result(kBound);
  EXPECT_EQ(target, 7);
}

TEST_P(ExecutorTest, SubmitMemberFunction) {
  struct Acc {
    int base;
    int add(int v) const { return base + v; }
  };
  Acc acc{40};
  auto future = submit(&Acc::add, &acc, 2);
  EXPECT_EQ(future.result(kBound), 42);
}

TEST_P(ExecutorTest, SubmitVoidFunction) {
  std::atomic<int> ran{0};
  Future<void> future = submit([&] { ran = 1; });
  future.result(kBound);
  EXPECT_EQ(ran.load(), 1);
}

TEST_P(ExecutorTest, SubmittedExceptionKeepsItsType) {
  auto future = submit([]() -> int { throw CustomError(99); });
  try {
    future.result(kBound);
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 99);
  }
  auto plain = submit([]() -> int { throw 5; });
  EXPECT_THROW(plain.result(kBound), int);
}

// CPython bpo-16284: the executor must not keep the callable (and what it owns) alive once
// the call is done, even while the future is still held.
TEST_P(ExecutorTest, NoStaleReferences) {
  LiveCount live;
  auto future = submit([t = Tracked(&live, 1)] { return t.value(); });
  EXPECT_EQ(future.result(kBound), 1);
  EXPECT_EQ(live.alive.load(), 0) << "the finished task still holds its callable";
}

TEST_P(ExecutorTest, DiscardedFutureStillRunsAndFreesItsCallable) {
  auto token = std::make_shared<Event>();
  std::weak_ptr<Event> watch = token;
  Event ran;
  (void)submit([token, &ran] { ran.set(); });
  token.reset();
  ASSERT_TRUE(ran.wait());
  shutdown(true);
  EXPECT_TRUE(watch.expired());
}

TEST_P(ExecutorTest, SubmitAfterShutdownRaises) {
  shutdown();
  try {
    (void)submit(ipow, 2L, 5L);
    FAIL() << "submit after shutdown did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(dynamic_cast<const concur::ShutdownError*>(&e), nullptr);
    EXPECT_NE(std::string(e.what()).find("cannot schedule new futures after shutdown"),
              std::string::npos)
        << e.what();
  }
}

TEST_P(ExecutorTest, ShutdownWaitsForSubmittedWork) {  // bpo-12364
  std::vector<Future<int>> fs;
  Event go;
  for (int i = 0; i < 50; ++i)
    fs.push_back(submit([&go, i] {
      go.wait();
      return i;
    }));
  go.set();
  shutdown(true);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(fs[static_cast<std::size_t>(i)].done());
    EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i);
  }
}

// ------------------------------------------------------------------ map (executor.py)

TEST_P(ExecutorTest, Map) {
  auto expected = std::vector<long>{};
  for (long i = 0; i < 10; ++i) expected.push_back(ipow(i, i));
  EXPECT_EQ(map(ipow, iota_vec(10), iota_vec(10)).to_vector(), expected);
  EXPECT_EQ(map(ipow, iota_vec(10), iota_vec(10), concur::chunksize(3)).to_vector(), expected);
}

TEST_P(ExecutorTest, MapException) {
  auto results = map(divmod, std::vector{5, 5, 5, 5}, std::vector{2, 3, 0, 5});
  auto it = results.begin();
  ASSERT_FALSE(it == results.end());
  EXPECT_EQ(*it, std::make_pair(2, 1));
  ++it;
  ASSERT_FALSE(it == results.end());
  EXPECT_EQ(*it, std::make_pair(1, 2));
  EXPECT_THROW(++it, std::domain_error);
  ++it;  // the rest was cancelled: the iteration is over
  EXPECT_TRUE(it == results.end());
}

// The first failing element rethrows when iteration reaches it; what has not started yet is
// cancelled and never runs.
TEST_P(ExecutorTest, FirstFailureRethrowsAndTheRestIsCancelled) {
  use_workers(1);
  constexpr int kN = 20;
  std::vector<std::atomic<int>> ran(kN);
  Event started3, gate;
  auto results = map(
      [&](int i) {
        ran[static_cast<std::size_t>(i)] = 1;
        if (i == 2) throw CustomError(i);
        if (i == 3) {
          started3.set();
          gate.wait();
        }
        return i;
      },
      std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19});
  auto it = results.begin();
  ASSERT_FALSE(it == results.end());
  EXPECT_EQ(*it, 0);
  ++it;
  EXPECT_EQ(*it, 1);
  ASSERT_TRUE(started3.wait());  // the only worker is now busy with item 3
  try {
    ++it;
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 2);
  }
  gate.set();
  shutdown(true);
  for (int i = 4; i < kN; ++i)
    EXPECT_EQ(ran[static_cast<std::size_t>(i)].load(), 0) << "item " << i;
  ++it;
  EXPECT_TRUE(it == results.end());
}

TEST_P(ExecutorTest, MapExceptionFromTheInputComesAfterEarlierResults) {
  Source src;
  src.limit = 100;
  src.throw_at = 5;
  std::vector<long> got;
  bool thrown = false;
  try {
    for (long v : map([](const Tracked& t) { return t.value(); }, Generator(&src)))
      got.push_back(v);
  } catch (const CustomError& e) {
    thrown = true;
    EXPECT_EQ(e.code, 5);
  }
  EXPECT_TRUE(thrown);
  EXPECT_EQ(got, (std::vector<long>{0, 1, 2, 3, 4}));
  shutdown(true);  // tasks still hold items of `src`
}

TEST_P(ExecutorTest, MapResultsComeInInputOrder) {
  // Item 0 finishes last: it waits until every other item has finished.
  constexpr int kN = 8;
  Counter finished;
  auto results = map(
      [&](int i) {
        if (i == 0) finished.wait_for_at_least(kN - 1);
        finished.add();
        return i * 10;
      },
      std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_EQ(results.to_vector(), (std::vector<int>{0, 10, 20, 30, 40, 50, 60, 70}));
}

TEST_P(ExecutorTest, MapStopsAtTheShortestRange) {
  Source longer;
  auto results = map([](int a, const Tracked& b) { return a + b.value(); },
                     std::vector<int>{10, 20, 30}, Generator(&longer));
  EXPECT_EQ(results.to_vector(), (std::vector<long>{10, 21, 32}));
  EXPECT_LE(longer.pulled.load(), 4);

  Source first;
  auto other = map([](const Tracked& a, int b) { return a.value() * b; }, Generator(&first),
                   std::vector<int>{1, 1});
  EXPECT_EQ(other.to_vector(), (std::vector<long>{0, 1}));
}

TEST_P(ExecutorTest, MapVoidFunctionYieldsMonostate) {
  std::atomic<int> calls{0};
  auto results = map([&](int) { calls.fetch_add(1); }, std::vector<int>{1, 2, 3});
  auto all = results.to_vector();
  static_assert(std::is_same_v<decltype(all), std::vector<std::monostate>>);
  EXPECT_EQ(all.size(), 3u);
  EXPECT_EQ(calls.load(), 3);
}

TEST_P(ExecutorTest, MapOverVariousRanges) {
  auto twice = [](int v) { return 2 * v; };
  std::vector<int> lvalue{1, 2, 3};
  EXPECT_EQ(map(twice, lvalue).to_vector(), (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(map(twice, std::vector<int>{4, 5}).to_vector(), (std::vector<int>{8, 10}));
  std::list<int> list{7, 8};
  EXPECT_EQ(map(twice, list).to_vector(), (std::vector<int>{14, 16}));
  const std::set<int> set{3, 1, 2};
  EXPECT_EQ(map(twice, set).to_vector(), (std::vector<int>{2, 4, 6}));
  int array[] = {9};
  EXPECT_EQ(map(twice, array).to_vector(), (std::vector<int>{18}));
}

// CPython bpo-14406: the result iterator must not keep the results it has handed out.
TEST_P(ExecutorTest, MapDoesNotKeepConsumedResults) {
  LiveCount live;
  auto results = map([&live](int i) { return std::make_unique<Tracked>(&live, i); },
                     std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  long n = 0;
  for (auto& p : results) {
    ASSERT_TRUE(p);
    EXPECT_EQ(p->value(), n++);
    p.reset();  // the only owner: the object must go now
  }
  EXPECT_EQ(n, 10);
  EXPECT_EQ(live.alive.load(), 0);
}

// test_thread_pool.py's test_executor_map_current_future_cancel: a map that times out
// cancels its pending calls, which then never run.
TEST_P(ExecutorTest, MapTimeoutCancelsPendingCalls) {
  use_workers(1);
  std::mutex mu;
  std::vector<std::string> log;
  Event stop, first_started;
  auto log_n_wait = [&](const std::string& ident) {
    {
      std::lock_guard lock(mu);
      log.push_back(ident + " started");
    }
    if (ident == "first") first_started.set();
    stop.wait();
    std::lock_guard lock(mu);
    log.push_back(ident + " stopped");
  };
  auto fut = submit(log_n_wait, std::string("first"));
  ASSERT_TRUE(first_started.wait());
  {
    auto results =
        map(log_n_wait, std::vector<std::string>{"second", "third"}, concur::timeout(0s));
    EXPECT_THROW(results.begin(), concur::TimeoutError);
    // The remaining calls are cancelled, so the iteration is over.
    EXPECT_TRUE(results.begin() == results.end());
  }
  stop.set();
  fut.result(kBound);
  shutdown(true);
  std::lock_guard lock(mu);
  EXPECT_EQ(log, (std::vector<std::string>{"first started", "first stopped"}));
}

// executor.py's test_map_timeout, made deterministic: the results finished before the
// deadline are yielded, then TimeoutError, then nothing.
TEST_P(ExecutorTest, MapTimeoutAfterSomeResults) {
  use_workers(1);
  Event started2, gate;
  std::atomic<int> ran3{0};
  auto results = map(
      [&](int i) {
        if (i == 2) {
          started2.set();
          gate.wait();
        }
        if (i == 3) ran3 = 1;
        return i;
      },
      std::vector<int>{0, 1, 2, 3}, concur::timeout(0s));
  // One worker: items 0 and 1 are finished before item 2 starts.
  ASSERT_TRUE(started2.wait());
  std::vector<int> got;
  bool timed_out = false;
  try {
    for (int v : results) got.push_back(v);
  } catch (const concur::TimeoutError&) {
    timed_out = true;
  }
  EXPECT_TRUE(timed_out);
  EXPECT_EQ(got, (std::vector<int>{0, 1}));
  EXPECT_TRUE(results.begin() == results.end());
  gate.set();
  shutdown(true);
  EXPECT_EQ(ran3.load(), 0);
}

TEST_P(ExecutorTest, MapWithGenerousTimeoutsYieldsEverything) {
  auto twice = [](int v) { return 2 * v; };
  EXPECT_EQ(map(twice, std::vector<int>{1, 2, 3}, concur::timeout(1h)).to_vector(),
            (std::vector<int>{2, 4, 6}));
  // Too long to add to now(): means "no limit", not "already expired" (nor overflow).
  EXPECT_EQ(
      map(twice, std::vector<int>{1, 2, 3}, concur::timeout(std::chrono::hours::max())).to_vector(),
      (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(
      map(twice, std::vector<int>{4}, concur::timeout(std::chrono::nanoseconds::max())).to_vector(),
      (std::vector<int>{8}));
}

TEST_P(ExecutorTest, MapNegativeTimeoutBehavesLikeZero) {
  Event gate;
  auto results = map([&](int) { return gate.wait(); }, std::vector<int>{1}, concur::timeout(-1s));
  EXPECT_THROW(results.begin(), concur::TimeoutError);
  gate.set();
  shutdown(true);  // the task still uses `gate`
}

TEST_P(ExecutorTest, MapTimeoutFromTheCallableIsJustAnException) {
  // A TimeoutError raised by the function is the element's failure, not the map's timeout.
  auto results = map(
      [](int i) {
        if (i == 1) throw concur::TimeoutError("from the callable");
        return i;
      },
      std::vector<int>{0, 1, 2}, concur::timeout(1h));
  auto it = results.begin();
  EXPECT_EQ(*it, 0);
  try {
    ++it;
    FAIL() << "no exception";
  } catch (const concur::TimeoutError& e) {
    EXPECT_STREQ(e.what(), "from the callable");
  }
}

TEST_P(ExecutorTest, OptionValuesAreValidated) {
  EXPECT_THROW(concur::chunksize(0), std::invalid_argument);
  EXPECT_THROW(concur::buffersize(0), std::invalid_argument);
  EXPECT_THROW((void)map([](int v) { return v; }, std::vector<int>{1}, concur::chunksize(0)),
               std::invalid_argument);
  EXPECT_NO_THROW(concur::chunksize(1));
  EXPECT_NO_THROW(concur::buffersize(1));
}

TEST_P(ExecutorTest, MapBuffersize) {
  for (std::size_t bs : {1u, 2u, 4u, 8u}) {
    auto res = map([](long i) { return std::to_string(i); }, iota_vec(4), concur::buffersize(bs));
    EXPECT_EQ(res.to_vector(), (std::vector<std::string>{"0", "1", "2", "3"})) << bs;
  }
}

TEST_P(ExecutorTest, MapBuffersizeOnMultipleIterables) {
  for (std::size_t bs : {1u, 2u, 4u, 8u}) {
    auto res =
        map([](long a, long b) { return a + b; }, iota_vec(4), iota_vec(4), concur::buffersize(bs));
    EXPECT_EQ(res.to_vector(), (std::vector<long>{0, 2, 4, 6})) << bs;
  }
}

TEST_P(ExecutorTest, MapBuffersizeOnInfiniteIterable) {
  Source src;
  auto res = map([](const Tracked& t) { return std::to_string(t.value()); }, Generator(&src),
                 concur::buffersize(2));
  auto it = res.begin();
  EXPECT_EQ(*it, "0");
  ++it;
  EXPECT_EQ(*it, "1");
  ++it;
  EXPECT_EQ(*it, "2");
  shutdown(true);  // tasks still hold items of `src`
}

TEST_P(ExecutorTest, MapBuffersizeOnMultipleInfiniteIterables) {
  Source a, b;
  auto res = map([](const Tracked& x, const Tracked& y) { return x.value() + y.value(); },
                 Generator(&a), Generator(&b), concur::buffersize(2));
  auto it = res.begin();
  EXPECT_EQ(*it, 0);
  ++it;
  EXPECT_EQ(*it, 2);
  ++it;
  EXPECT_EQ(*it, 4);
  shutdown(true);  // tasks still hold items of `a` and `b`
}

TEST_P(ExecutorTest, MapOnEmptyIterable) {
  auto res = map([](int v) { return v; }, std::vector<int>{}, concur::buffersize(2));
  EXPECT_TRUE(res.begin() == res.end());
  auto res2 = map([](int v) { return v; }, std::vector<int>{});
  EXPECT_TRUE(res2.to_vector().empty());
}

TEST_P(ExecutorTest, MapBuffersizeWhenBufferIsFull) {
  Source src;
  src.limit = 4;
  auto res =
      map([](const Tracked& t) { return t.value(); }, Generator(&src), concur::buffersize(2));
  shutdown(true);  // the tasks already submitted finish
  EXPECT_EQ(src.pulled.load(), 2) << "should have fetched only buffersize elements";
}

// CPython bpo-11777: map submits its work at the call, without being iterated.
TEST_P(ExecutorTest, MapSubmitsWithoutIteration) {
  std::mutex mu;
  std::multiset<long> finished;
  auto res = map(
      [&](long n) {
        std::lock_guard lock(mu);
        finished.insert(n);
      },
      iota_vec(10));
  shutdown(true);
  std::lock_guard lock(mu);
  EXPECT_EQ(finished, (std::multiset<long>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST_P(ExecutorTest, ShutdownRaceIssue12456) {
  std::vector<int> twos(6, 2);
  auto res = map([](int v) { return std::to_string(v); }, twos);
  shutdown(true);
  EXPECT_EQ(res.to_vector(), std::vector<std::string>(6, "2"));
}

// The lazy part of map is submitted as the consumer advances: after shutdown, reaching
// past the first window raises ShutdownError (as Python's map with buffersize does).
TEST_P(ExecutorTest, MapRefillAfterShutdownRaises) {
  auto res = map([](long v) { return v; }, iota_vec(100), concur::buffersize(4));
  shutdown(true);
  std::vector<long> got;
  EXPECT_THROW(
      {
        for (long v : res) got.push_back(v);
      },
      concur::ShutdownError);
  // Everything submitted before the shutdown is yielded first.
  EXPECT_EQ(got, (std::vector<long>{0, 1, 2, 3}));
}

TEST_P(ExecutorTest, MapAfterShutdownRaises) {
  shutdown(true);
  EXPECT_THROW((void)map([](int v) { return v; }, std::vector<int>{1, 2}), concur::ShutdownError);
  // With nothing to submit there is nothing to refuse.
  EXPECT_TRUE(map([](int v) { return v; }, std::vector<int>{}).to_vector().empty());
}

TEST_P(ExecutorTest, DroppingTheResultsCancelsPendingWork) {
  use_workers(1);
  std::atomic<int> ran{0};
  Event started, gate;
  {
    auto res = map(
        [&](long i) {
          ran.fetch_add(1);
          if (i == 0) {
            started.set();
            gate.wait();
          }
          return i;
        },
        iota_vec(100));
    ASSERT_TRUE(started.wait());
  }  // dropped without being iterated
  gate.set();
  shutdown(true);
  EXPECT_EQ(ran.load(), 1);
}

// The input is pulled as the consumer advances: however long the input (here a generator
// of a hundred million items), at most `buffersize` items are ever in flight and the number
// of live argument/result objects stays bounded. Dropping the range stops the pulling.
TEST_P(ExecutorTest, LazyMapOverAHundredMillionItemsStaysBounded) {
  constexpr long kWindow = 32;
  constexpr long kConsume = 20'000;
  Source src;
  src.limit = 100'000'000;
  long consumed = 0;
  long worst_ahead = 0;
  {
    auto res = map([](const Tracked& t) { return Tracked(t); }, Generator(&src),
                   concur::buffersize(kWindow));
    for (auto& r : res) {
      ASSERT_EQ(r.value(), consumed);
      ++consumed;
      worst_ahead = std::max(worst_ahead, src.pulled.load() - consumed);
      if (consumed == kConsume) break;
    }
  }
  EXPECT_EQ(consumed, kConsume);
  EXPECT_LE(worst_ahead, kWindow) << "more items in flight than the window";
  EXPECT_LE(src.pulled.load(), kConsume + kWindow);
  // Arguments queued in tasks, results waiting, a batch being moved: a few windows at most.
  EXPECT_LE(src.live.max_alive.load(), 4 * kWindow + 16);
  shutdown(true);
  EXPECT_EQ(src.live.alive.load(), 0);
  EXPECT_LE(src.pulled.load(), kConsume + kWindow) << "input pulled after the range was dropped";
}

using test_support::kSanitized;

// The whole hundred million, to the end, in bounded memory (about 35 s on the 2-core
// machines in a normal build). Sanitizers make each item ~20x dearer, so there the same
// test walks the first two million of the hundred million.
TEST(ExecutorMap, HundredMillionItemsToTheEndInBoundedMemory) {
  constexpr long kWindow = 256;
  const long to_consume = kSanitized ? 2'000'000 : 100'000'000;
  Source src;  // outlives the pool, whose tasks hold Tracked items
  src.limit = 100'000'000;
  concur::ThreadPoolExecutor pool(2);
  long consumed = 0;
  long worst_ahead = 0;
  for (auto& r : pool.map([](const Tracked& t) { return t.value(); }, Generator(&src),
                          concur::buffersize(kWindow))) {
    if (consumed == to_consume) break;
    if (r != consumed) FAIL() << "out of order at " << consumed;
    ++consumed;
    long ahead = src.pulled.load(std::memory_order_relaxed) - consumed;
    if (ahead > worst_ahead) worst_ahead = ahead;
  }
  EXPECT_EQ(consumed, to_consume);
  if (!kSanitized) {
    EXPECT_EQ(src.pulled.load(), src.limit) << "the input was not exhausted";
  }
  EXPECT_LE(worst_ahead, kWindow);
  EXPECT_LE(src.live.max_alive.load(), 4 * kWindow + 16);
}

// ------------------------------------------------------------------ Executor& as a base

// Code that takes "some executor" and uses only the abstract interface.
long sum_of_squares(concur::Executor& ex, const std::vector<long>& xs) {
  long total = 0;
  for (long v : ex.map([](long x) { return x * x; }, xs)) total += v;
  total += ex.submit([] { return 1000L; }).result();
  return total;
}

TEST(ExecutorBase, CodeTakingAnExecutorReference) {
  concur::ThreadPoolExecutor pool(3);
  EXPECT_EQ(sum_of_squares(pool, {1, 2, 3}), 1014);
  concur::Executor& ex = pool;
  ex.shutdown();
  EXPECT_THROW(ex.submit([] { return 1; }), concur::ShutdownError);
}

TEST(ExecutorBase, DestroyingThroughTheBaseWaitsForWork) {
  std::atomic<int> done{0};
  Event go;
  std::unique_ptr<concur::Executor> ex = std::make_unique<concur::ThreadPoolExecutor>(2);
  for (int i = 0; i < 10; ++i)
    (void)ex->submit([&] {
      go.wait();
      done.fetch_add(1);
    });
  go.set();
  ex.reset();  // virtual destructor: shutdown(wait = true)
  EXPECT_EQ(done.load(), 10);
}

// Thread pools ignore chunksize (as in Python): map through the base must behave like map on
// the pool. Chunked, the failing element would take the good result before it down with it.
// DISABLED: fails today; see the test report (Executor::map cannot tell that a thread pool
// ignores chunksize). Run with --gtest_also_run_disabled_tests.
TEST(ExecutorBase, ChunksizeIsIgnoredByThreadPoolsThroughTheBaseToo) {
  concur::ThreadPoolExecutor pool(2);
  concur::Executor& ex = pool;
  auto fn = [](int i) {
    if (i == 1) throw CustomError(i);
    return i;
  };
  for (auto* name : {"pool", "base"}) {
    SCOPED_TRACE(name);
    auto res = std::string(name) == "pool"
                   ? pool.map(fn, std::vector{0, 1, 2, 3}, concur::chunksize(3))
                   : ex.map(fn, std::vector{0, 1, 2, 3}, concur::chunksize(3));
    std::vector<int> got;
    EXPECT_THROW(
        {
          for (int v : res) got.push_back(v);
        },
        CustomError);
    EXPECT_EQ(got, std::vector<int>{0});
  }
}

}  // namespace
