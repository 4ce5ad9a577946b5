// Tests of include/concur/wait.hpp: wait() and as_completed().
//
// Ports the behaviours of CPython's test_wait.py and test_as_completed.py. One deliberate
// difference: Python keeps a future cancelled but "not yet notified" (CANCELLED) apart from
// CANCELLED_AND_NOTIFIED and treats the former as not done; concur notifies at cancel(), so
// a cancelled future always counts as done.
#include <gtest/gtest.h>

#include <concur/errors.hpp>
#include <concur/executor.hpp>
#include <concur/future.hpp>
#include <concur/thread_pool.hpp>
#include <concur/wait.hpp>

#include <atomic>
#include <chrono>
#include <list>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/foundation_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using concur::AnyFuture;
using concur::Future;
using foundation_test::current_tid;
using foundation_test::CustomError;
using foundation_test::Event;
using foundation_test::kBound;
using foundation_test::wait_until_blocked;
using foundation_test::cancelled_future;
using foundation_test::exception_future;
using foundation_test::pending_future;
using foundation_test::running_future;
using foundation_test::successful_future;

int mul(int x, int y) {
  return x * y;
}
int divide(int x, int y) {
  if (y == 0) throw std::domain_error("division by zero");
  return x / y;
}

// The states (identities) of some futures, to compare results as sets like Python does.
template <class... Fs>
std::set<const void*> ids(const Fs&... fs) {
  return {static_cast<const void*>(fs.state())...};
}
template <class F>
std::set<const void*> ids_of(const std::vector<F>& fs) {
  std::set<const void*> out;
  for (auto& f : fs) out.insert(f.state());
  return out;
}

// An input-only range yielding `value` n times by value, like Python's itertools.repeat.
template <class T>
struct Repeat {
  T value;
  int n;
  struct iterator {
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    const Repeat* r = nullptr;
    int i = 0;
    T operator*() const { return r->value; }
    iterator& operator++() {
      ++i;
      return *this;
    }
    void operator++(int) { ++i; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.i >= it.r->n; }
  };
  iterator begin() const { return iterator{this, 0}; }
  std::default_sentinel_t end() const { return {}; }
};
static_assert(std::ranges::input_range<Repeat<int>>);
static_assert(!std::ranges::forward_range<Repeat<int>>);

class WaitTest : public testing::Test {
 protected:
  Event event;  // released in TearDown, so no test leaves a task blocked; outlives executor
  concur::ThreadPoolExecutor executor{5};
  void TearDown() override { event.set(); }
  Future<bool> submit_blocked() {
    return executor.submit([this] { return event.wait(); });
  }
};

// ------------------------------------------------------------------ wait (test_wait.py)

TEST_F(WaitTest, DuplicatesCountOnce) {  // bpo-20369
  auto future = executor.submit(mul, 1, 2);
  auto [done, not_done] = concur::wait(std::vector{future, future}, concur::ALL_COMPLETED);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(ids_of(done), ids(future));
  EXPECT_TRUE(not_done.empty());
}

TEST_F(WaitTest, FirstCompleted) {
  auto future1 = executor.submit(mul, 21, 2);
  auto future2 = submit_blocked();
  // future2 cannot finish while `event` is clear, so future1 is the first (and only) one.
  auto [done, not_done] =
      concur::wait(std::vector<AnyFuture>{future1, future2}, concur::FIRST_COMPLETED);
  EXPECT_EQ(ids_of(done), ids(future1));
  EXPECT_EQ(ids_of(not_done), ids(future2));
  event.set();
  EXPECT_TRUE(future2.result(kBound));
}

TEST_F(WaitTest, CancelledFutureCountsAsDoneAtOnce) {
  auto cancelled = cancelled_future();
  auto future = submit_blocked();
  auto [done, not_done] =
      concur::wait(std::vector<AnyFuture>{cancelled, future}, concur::FIRST_COMPLETED);
  EXPECT_EQ(ids_of(done), ids(cancelled));
  EXPECT_EQ(ids_of(not_done), ids(future));
}

TEST_F(WaitTest, FirstCompletedSomeAlreadyCompleted) {
  auto cancelled = cancelled_future();
  auto successful = successful_future();
  auto future1 = submit_blocked();
  auto [finished, pending] =
      concur::wait(std::vector<AnyFuture>{cancelled, successful, future1}, concur::FIRST_COMPLETED);
  EXPECT_EQ(ids_of(finished), ids(cancelled, successful));
  EXPECT_EQ(ids_of(pending), ids(future1));
}

TEST_F(WaitTest, FirstException) {
  Event event1, event2;
  auto future1 = executor.submit(mul, 2, 21);
  auto future2 = executor.submit([&] {
    event1.wait();
    throw CustomError(2);
  });
  auto future3 = executor.submit([&] { event2.wait(); });
  // future1 completes before future2 raises.
  std::thread t([&] {
    future1.result();
    event1.set();
  });
  auto [finished, pending] =
      concur::wait(std::vector<AnyFuture>{future1, future2, future3}, concur::FIRST_EXCEPTION);
  EXPECT_EQ(ids_of(finished), ids(future1, future2));
  EXPECT_EQ(ids_of(pending), ids(future3));
  t.join();
  event2.set();
  future3.result(kBound);
}

TEST_F(WaitTest, FirstExceptionSomeAlreadyComplete) {
  auto future1 = executor.submit(divide, 21, 0);
  auto future2 = submit_blocked();
  auto successful = successful_future();
  auto cancelled = cancelled_future();
  auto [finished, pending] = concur::wait(
      std::vector<AnyFuture>{successful, cancelled, future1, future2}, concur::FIRST_EXCEPTION);
  EXPECT_EQ(ids_of(finished), ids(successful, cancelled, future1));
  EXPECT_EQ(ids_of(pending), ids(future2));
}

TEST_F(WaitTest, FirstExceptionOneAlreadyFailed) {
  auto failed = exception_future();
  auto future1 = submit_blocked();
  auto [finished, pending] =
      concur::wait(std::vector<AnyFuture>{failed, future1}, concur::FIRST_EXCEPTION);
  EXPECT_EQ(ids_of(finished), ids(failed));
  EXPECT_EQ(ids_of(pending), ids(future1));
}

TEST_F(WaitTest, FirstExceptionWithoutAnyExceptionWaitsForAll) {
  Future<int> a, b;
  pid_t me = current_tid();
  std::thread t([&] {
    wait_until_blocked(me);
    a.set_result(1);
    wait_until_blocked(me);  // still waiting: no exception yet, b not done
    EXPECT_TRUE(b.cancel());
  });
  auto [finished, pending] = concur::wait(std::vector{a, b}, kBound, concur::FIRST_EXCEPTION);
  t.join();
  EXPECT_EQ(ids_of(finished), ids(a, b));
  EXPECT_TRUE(pending.empty());
}

TEST_F(WaitTest, AllCompleted) {
  auto future1 = executor.submit(divide, 2, 0);
  auto future2 = executor.submit(mul, 2, 21);
  auto successful = successful_future();
  auto cancelled = cancelled_future();
  auto failed = exception_future();
  auto [finished, pending] =
      concur::wait(std::vector<AnyFuture>{successful, cancelled, failed, future1, future2},
                   concur::ALL_COMPLETED);
  EXPECT_EQ(ids_of(finished), ids(successful, cancelled, failed, future1, future2));
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(future2.result(0s), 42);
}

TEST_F(WaitTest, Timeout) {
  auto future = submit_blocked();
  auto cancelled = cancelled_future();
  auto failed = exception_future();
  auto successful = successful_future();
  auto [finished, pending] = concur::wait(
      std::vector<AnyFuture>{cancelled, failed, successful, future}, 50ms, concur::ALL_COMPLETED);
  EXPECT_EQ(ids_of(finished), ids(cancelled, failed, successful));
  EXPECT_EQ(ids_of(pending), ids(future));
  event.set();
  EXPECT_TRUE(future.result(kBound));
}

TEST_F(WaitTest, ZeroAndNegativeTimeoutsPoll) {
  auto future = submit_blocked();
  auto successful = successful_future();
  for (auto timeout : {0ms, -1ms, -1000ms}) {
    for (auto rw : {concur::FIRST_COMPLETED, concur::FIRST_EXCEPTION, concur::ALL_COMPLETED}) {
      auto [finished, pending] =
          concur::wait(std::vector<AnyFuture>{future, successful}, timeout, rw);
      EXPECT_EQ(ids_of(finished), ids(successful));
      EXPECT_EQ(ids_of(pending), ids(future));
    }
  }
  auto [finished, pending] = concur::wait(std::vector{future}, 0s, concur::FIRST_COMPLETED);
  EXPECT_TRUE(finished.empty());
  EXPECT_EQ(pending.size(), 1u);
}

TEST_F(WaitTest, AlreadyDoneFuturesNeedNoWaiting) {
  std::vector<Future<int>> fs{successful_future(), cancelled_future(), exception_future()};
  for (auto rw : {concur::FIRST_COMPLETED, concur::FIRST_EXCEPTION, concur::ALL_COMPLETED}) {
    auto [finished, pending] = concur::wait(fs, 0s, rw);
    EXPECT_TRUE(pending.empty());
    EXPECT_EQ(finished.size(), 3u);
  }
  auto [finished, pending] = concur::wait(fs);
  EXPECT_EQ(finished.size(), 3u);
}

TEST_F(WaitTest, PendingCallsRace) {  // bpo-14406
  std::vector<Future<bool>> fs;
  for (int i = 0; i < 100; ++i) fs.push_back(submit_blocked());
  event.set();
  auto [finished, pending] = concur::wait(fs, concur::ALL_COMPLETED);
  EXPECT_EQ(finished.size(), 100u);
  EXPECT_TRUE(pending.empty());
  for (auto& f : finished) EXPECT_TRUE(f.result(0s));
}

TEST_F(WaitTest, EmptyInput) {
  auto [finished, pending] = concur::wait(std::vector<Future<int>>{});
  EXPECT_TRUE(finished.empty());
  EXPECT_TRUE(pending.empty());
  auto [f2, p2] = concur::wait(std::vector<Future<int>>{}, 0s, concur::FIRST_COMPLETED);
  EXPECT_TRUE(f2.empty());
  EXPECT_TRUE(p2.empty());
}

TEST_F(WaitTest, KeepsInputOrderOfFirstOccurrence) {
  std::vector<Future<int>> fs(5);
  for (std::size_t i = 0; i < fs.size(); ++i) fs[i].set_result(static_cast<int>(i));
  std::vector<Future<int>> input{fs[3], fs[1], fs[3], fs[4], fs[0], fs[1], fs[2]};
  auto [finished, pending] = concur::wait(input);
  ASSERT_EQ(finished.size(), 5u);
  std::vector<int> order;
  for (auto& f : finished) order.push_back(f.result());
  EXPECT_EQ(order, (std::vector<int>{3, 1, 4, 0, 2}));
}

TEST_F(WaitTest, BlockedWaitWokenByAnotherThread) {
  Future<int> a, b, c;
  pid_t me = current_tid();
  std::thread t([&] {
    wait_until_blocked(me);
    b.set_result(2);
  });
  auto [finished, pending] = concur::wait(std::vector{a, b, c}, kBound, concur::FIRST_COMPLETED);
  t.join();
  EXPECT_EQ(ids_of(finished), ids(b));
  EXPECT_EQ(ids_of(pending), ids(a, c));
}

TEST_F(WaitTest, AcceptsOtherRanges) {
  auto a = successful_future();
  auto b = exception_future();
  std::list<Future<int>> as_list{a, b};
  auto [d1, n1] = concur::wait(as_list);
  EXPECT_EQ(ids_of(d1), ids(a, b));
  std::set<Future<int>> as_set{a, b, a};
  auto [d2, n2] = concur::wait(as_set, 0s);
  EXPECT_EQ(d2.size(), 2u);
  std::vector<Future<int>> v{a, b, pending_future()};
  auto [d3, n3] = concur::wait(std::span<const Future<int>>(v.data(), 2), 0s);
  EXPECT_EQ(ids_of(d3), ids(a, b));
  EXPECT_TRUE(n3.empty());
}

TEST_F(WaitTest, BracedListOfMixedTypes) {
  Future<int> i;
  Future<std::string> s;
  Future<void> v = executor.submit([] {});
  i.set_result(1);
  auto [finished, pending] = concur::wait({i, s, v}, kBound, concur::FIRST_COMPLETED);
  static_assert(std::is_same_v<decltype(finished), std::vector<AnyFuture>>);
  EXPECT_TRUE(ids_of(finished).count(i.state()));
  EXPECT_TRUE(ids_of(pending).count(s.state()));
  s.set_result("x");
  auto [all_done, none] = concur::wait({i, s, v, i});
  EXPECT_EQ(all_done.size(), 3u);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(all_done[1].as<std::string>().result(), "x");
  auto [d0, n0] = concur::wait({i, s}, 0s);
  EXPECT_EQ(d0.size(), 2u);
  auto [d1, n1] = concur::wait({i, s}, concur::FIRST_EXCEPTION);
  EXPECT_EQ(d1.size(), 2u);
}

TEST_F(WaitTest, FuturesFromDifferentExecutors) {
  concur::ThreadPoolExecutor other(1);
  Event other_gate;
  auto a = executor.submit([] { return std::string("a"); });
  auto b = other.submit([&] { return other_gate.wait(); });
  auto [finished, pending] =
      concur::wait(std::vector<AnyFuture>{a, b}, kBound, concur::FIRST_COMPLETED);
  EXPECT_EQ(ids_of(finished), ids(a));
  EXPECT_EQ(ids_of(pending), ids(b));
  other_gate.set();
  auto [all, none] = concur::wait(std::vector<AnyFuture>{a, b});
  EXPECT_EQ(all.size(), 2u);
  EXPECT_TRUE(none.empty());
}

// After a wait times out, later completions must not reach the (gone) waiter.
TEST_F(WaitTest, TimedOutWaitLeavesNoWaiterBehind) {
  std::vector<Future<int>> fs(8);
  for (int round = 0; round < 3; ++round) {
    auto [finished, pending] = concur::wait(fs, 1ms, concur::ALL_COMPLETED);
    EXPECT_TRUE(finished.empty());
    EXPECT_EQ(pending.size(), fs.size());
  }
  for (std::size_t i = 0; i < fs.size(); ++i) fs[i].set_result(static_cast<int>(i));
  auto [finished, pending] = concur::wait(fs, 0s);
  EXPECT_EQ(finished.size(), fs.size());
}

// A future finishing while wait() sets itself up must still end the wait at once (a lost
// wake-up would leave it asleep until its timeout: hence no timeout here, and a watchdog).
TEST_F(WaitTest, FirstCompletedRacingCompletions) {
  for (auto rw : {concur::FIRST_COMPLETED, concur::FIRST_EXCEPTION}) {
    bool finished_in_time = foundation_test::returns_within(
        [rw] {
          for (int round = 0; round < 2000; ++round) {
            std::vector<Future<int>> fs(4);
            foundation_test::SpinStart start(2);
            std::size_t which = static_cast<std::size_t>(round) % fs.size();
            std::thread t([&] {
              start.arrive_and_wait();
              // Sweep the moment of completion across wait()'s set-up.
              for (int spin = 0; spin < round % 512; ++spin) concur::detail::cpu_relax();
              if (rw == concur::FIRST_COMPLETED)
                fs[which].set_result(round);
              else
                fs[which].set_exception(CustomError(round));
            });
            start.arrive_and_wait();
            auto [finished, pending] = concur::wait(fs, rw);
            t.join();
            ASSERT_EQ(finished.size(), 1u);
            ASSERT_TRUE(finished[0] == fs[which]);
            ASSERT_EQ(pending.size(), 3u);
          }
        },
        30s);
    EXPECT_TRUE(finished_in_time) << "a wait() missed a completion (return_when "
                                  << static_cast<int>(rw) << ")";
  }
}

TEST_F(WaitTest, AllCompletedRacingCompletionsFromManyThreads) {
  for (int round = 0; round < 100; ++round) {
    std::vector<Future<int>> fs(16);
    foundation_test::SpinStart start(5);
    std::vector<std::thread> setters;
    for (int t = 0; t < 4; ++t)
      setters.emplace_back([&, t] {
        start.arrive_and_wait();
        for (std::size_t i = static_cast<std::size_t>(t); i < fs.size(); i += 4)
          fs[i].set_result(static_cast<int>(i));
      });
    start.arrive_and_wait();
    auto [finished, pending] = concur::wait(fs);
    for (auto& t : setters) t.join();
    ASSERT_EQ(finished.size(), fs.size());
    ASSERT_TRUE(pending.empty());
  }
}

// ------------------------------------------------------------------ as_completed

using AsCompletedTest = WaitTest;

TEST_F(AsCompletedTest, NoTimeout) {
  auto future1 = executor.submit(mul, 2, 21);
  auto future2 = executor.submit(mul, 7, 6);
  auto cancelled = cancelled_future();
  auto failed = exception_future();
  auto successful = successful_future();
  std::set<const void*> completed;
  for (auto& f :
       concur::as_completed(std::vector{cancelled, failed, successful, future1, future2})) {
    EXPECT_TRUE(f.done());
    EXPECT_TRUE(completed.insert(f.state()).second) << "yielded twice";
  }
  EXPECT_EQ(completed, ids(cancelled, failed, successful, future1, future2));
}

TEST_F(AsCompletedTest, FutureTimesOut) {
  auto cancelled = cancelled_future();
  auto failed = exception_future();
  auto successful = successful_future();
  for (auto timeout : {0ms, 100ms}) {
    SCOPED_TRACE(timeout.count());
    auto future = submit_blocked();
    std::set<const void*> completed;
    bool timed_out = false;
    try {
      for (auto& f : concur::as_completed(
               std::vector<AnyFuture>{cancelled, failed, successful, future}, timeout))
        completed.insert(f.state());
    } catch (const concur::TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(completed, ids(cancelled, failed, successful));
  }
}

TEST_F(AsCompletedTest, DuplicateFuturesYieldedOnce) {  // bpo-20367, bpo-31641
  auto future1 = submit_blocked();
  event.set();
  std::vector<Future<bool>> repeated{future1, future1, future1};
  int n = 0;
  for (auto& f : concur::as_completed(repeated)) {
    EXPECT_TRUE(f == future1);
    ++n;
  }
  EXPECT_EQ(n, 1);
  // Any input range will do, including one producing its futures on the fly
  // (Python's itertools.repeat(future1, 3)).
  n = 0;
  for (auto& f : concur::as_completed(Repeat<Future<bool>>{future1, 3})) {
    EXPECT_TRUE(f.done());
    ++n;
  }
  EXPECT_EQ(n, 1);
}

TEST_F(AsCompletedTest, TimeoutMessageCountsUnfinished) {
  auto range = concur::as_completed(
      std::vector{cancelled_future(), pending_future(), running_future(), successful_future()}, 0s);
  EXPECT_EQ(range.size(), 4u);
  std::size_t yielded = 0;
  try {
    for (auto& f : range) {
      EXPECT_TRUE(f.done());
      ++yielded;
    }
    FAIL() << "no TimeoutError";
  } catch (const concur::TimeoutError& e) {
    EXPECT_STREQ(e.what(), "2 (of 4) futures unfinished");
  }
  EXPECT_EQ(yielded, 2u);
}

TEST_F(AsCompletedTest, TimeoutMessageAfterSomeFinishLater) {
  std::vector<Future<int>> fs(5);
  fs[0].set_result(0);
  auto range = concur::as_completed(fs, 200ms);
  auto it = range.begin();
  ASSERT_FALSE(it == range.end());
  EXPECT_TRUE(*it == fs[0]);
  fs[3].set_result(3);
  ++it;
  ASSERT_FALSE(it == range.end());
  EXPECT_TRUE(*it == fs[3]);
  try {
    ++it;
    FAIL() << "no TimeoutError";
  } catch (const concur::TimeoutError& e) {
    EXPECT_STREQ(e.what(), "3 (of 5) futures unfinished");
  }
}

TEST_F(AsCompletedTest, NegativeTimeoutBehavesLikeZero) {
  auto range = concur::as_completed(std::vector{successful_future(), pending_future()}, -5s);
  auto it = range.begin();
  ASSERT_FALSE(it == range.end());
  EXPECT_TRUE(it->done());
  EXPECT_THROW(++it, concur::TimeoutError);
}

TEST_F(AsCompletedTest, FinishedFirstInInputOrderThenInCompletionOrder) {
  std::vector<Future<int>> fs(6);
  fs[4].set_result(4);
  fs[1].set_result(1);
  auto range = concur::as_completed(fs);
  // Finishing after the call: yielded in the order they finish.
  fs[5].set_result(5);
  fs[0].set_result(0);
  fs[3].set_result(3);
  fs[2].set_result(2);
  std::vector<int> order;
  for (auto& f : range) order.push_back(f.result());
  EXPECT_EQ(order, (std::vector<int>{1, 4, 5, 0, 3, 2}));
}

TEST_F(AsCompletedTest, BlockedIterationWokenByAnotherThread) {
  std::vector<Future<int>> fs(3);
  pid_t me = current_tid();
  std::thread t([&] {
    for (int i : {2, 0, 1}) {
      wait_until_blocked(me);
      fs[static_cast<std::size_t>(i)].set_result(i);
    }
  });
  std::vector<int> order;
  for (auto& f : concur::as_completed(fs, kBound)) order.push_back(f.result());
  t.join();
  EXPECT_EQ(order.size(), 3u);
  EXPECT_EQ(std::set<int>(order.begin(), order.end()), (std::set<int>{0, 1, 2}));
}

TEST_F(AsCompletedTest, EmptyInput) {
  auto range = concur::as_completed(std::vector<Future<int>>{});
  EXPECT_EQ(range.size(), 0u);
  EXPECT_TRUE(range.begin() == range.end());
  auto timed = concur::as_completed(std::vector<Future<int>>{}, 0s);
  EXPECT_TRUE(timed.begin() == timed.end());
}

TEST_F(AsCompletedTest, BracedListOfMixedTypes) {
  Future<int> i;
  Future<std::string> s;
  auto v = executor.submit([] {});
  s.set_result("first");
  auto range = concur::as_completed({i, s, v, s});
  EXPECT_EQ(range.size(), 3u);
  auto it = range.begin();
  ASSERT_FALSE(it == range.end());
  EXPECT_EQ(it->as<std::string>().result(), "first");
  i.set_result(2);
  std::set<const void*> rest;
  for (++it; it != range.end(); ++it) rest.insert(it->state());
  EXPECT_EQ(rest, ids(i, v));

  Future<double> late;
  auto timed = concur::as_completed({late, s}, 0s);
  auto t = timed.begin();
  ASSERT_FALSE(t == timed.end());
  EXPECT_TRUE(t->state() == s.state());
  EXPECT_THROW(++t, concur::TimeoutError);
}

TEST_F(AsCompletedTest, IsAnInputRange) {
  using R = decltype(concur::as_completed(std::vector<Future<int>>{}));
  static_assert(std::ranges::input_range<R>);
  static_assert(std::is_same_v<std::ranges::range_value_t<R>, Future<int>>);
  // And works with the standard algorithms over input ranges.
  std::vector<Future<int>> fs(4);
  for (std::size_t i = 0; i < fs.size(); ++i) fs[i].set_result(static_cast<int>(i) * 2);
  auto range = concur::as_completed(fs);
  auto n = std::ranges::count_if(range, [](const Future<int>& f) { return f.result() >= 4; });
  EXPECT_EQ(n, 2);
}

TEST_F(AsCompletedTest, PoolFuturesEachYieldedOnce) {
  std::vector<Future<int>> fs;
  for (int i = 0; i < 200; ++i) fs.push_back(executor.submit(mul, i, 2));
  std::set<const void*> seen;
  long total = 0;
  for (auto& f : concur::as_completed(fs, kBound)) {
    EXPECT_TRUE(seen.insert(f.state()).second);
    total += f.result();
  }
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_EQ(total, 2L * 199 * 200 / 2);
}

TEST_F(AsCompletedTest, RacingCompletionsYieldEachExactlyOnce) {
  for (int round = 0; round < 200; ++round) {
    std::vector<Future<int>> fs(8);
    foundation_test::SpinStart start(2);
    std::thread t([&] {
      start.arrive_and_wait();
      for (std::size_t i = fs.size(); i-- > 0;) fs[i].set_result(static_cast<int>(i));
    });
    start.arrive_and_wait();
    std::set<int> seen;
    for (auto& f : concur::as_completed(fs, kBound)) ASSERT_TRUE(seen.insert(f.result()).second);
    t.join();
    ASSERT_EQ(seen.size(), fs.size());
  }
}

// CPython bpo-14406: as_completed must not keep the futures it has yielded. Here only the
// range holds them; once the iteration moves past a future, its state (and value) must go.
TEST_F(AsCompletedTest, DoesNotKeepYieldedFutures) {
  foundation_test::LiveCount live;
  std::vector<Future<foundation_test::Tracked>> fs(6);
  fs[4].set_result(foundation_test::Tracked(&live, 4));  // finished before the call
  ASSERT_TRUE(fs[5].cancel());
  auto range = concur::as_completed(fs, kBound);
  for (long i = 0; i < 4; ++i)
    fs[static_cast<std::size_t>(i)].set_result(foundation_test::Tracked(&live, i));
  fs.clear();  // from now on, only the range refers to the futures
  EXPECT_EQ(live.alive.load(), 5);
  // Yielded: fs[4] and fs[5] (finished before the call), then fs[0..3] in completion order.
  // Alive at each step: the current future's value and those not reached yet.
  std::vector<long> alive_at_step;
  for (auto it = range.begin(); it != range.end(); ++it) alive_at_step.push_back(live.alive.load());
  EXPECT_EQ(alive_at_step, (std::vector<long>{5, 4, 4, 3, 2, 1}));
  EXPECT_EQ(live.alive.load(), 0) << "the exhausted range still holds futures";
}

// Dropping the range part-way must unregister it: later completions reach no dead waiter.
TEST_F(AsCompletedTest, DroppedMidwayLeavesNoWaiterBehind) {
  std::vector<Future<int>> fs(6);
  {
    auto range = concur::as_completed(fs);
    fs[2].set_result(2);
    auto it = range.begin();
    ASSERT_FALSE(it == range.end());
    EXPECT_TRUE(*it == fs[2]);
  }
  for (std::size_t i = 0; i < fs.size(); ++i)
    if (i != 2) fs[i].set_result(static_cast<int>(i));
  EXPECT_EQ(concur::wait(fs, 0s).done.size(), fs.size());
}

}  // namespace
