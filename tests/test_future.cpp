// Tests of include/concur/future.hpp: Future<T>, AnyFuture, callbacks, then(), co_await.
//
// The first suites port the behaviours of CPython's Lib/test/test_concurrent_futures/
// test_future.py (states, timeouts, callbacks, outcome set once); the rest cover what concur
// adds (then(), co_await, AnyFuture) and the races between threads.
#include <gtest/gtest.h>

#include <concur/errors.hpp>
#include <concur/executor.hpp>
#include <concur/future.hpp>
#include <concur/thread_pool.hpp>
#include <concur/wait.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
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

// ------------------------------------------------------------------ states (test_future.py)

TEST(FutureState, CancelDependsOnState) {
  auto f1 = pending_future();
  auto f2 = running_future();
  auto f3 = cancelled_future();
  auto f5 = exception_future();
  auto f6 = successful_future();

  EXPECT_TRUE(f1.cancel());
  EXPECT_TRUE(f1.cancelled());

  EXPECT_FALSE(f2.cancel());
  EXPECT_TRUE(f2.running());
  EXPECT_FALSE(f2.cancelled());

  EXPECT_TRUE(f3.cancel());  // cancelling again is not an error
  EXPECT_TRUE(f3.cancelled());

  EXPECT_FALSE(f5.cancel());
  EXPECT_FALSE(f5.cancelled());
  EXPECT_THROW(f5.result(), concur::OSError);

  EXPECT_FALSE(f6.cancel());
  EXPECT_EQ(f6.result(), 42);
}

TEST(FutureState, Cancelled) {
  EXPECT_FALSE(pending_future().cancelled());
  EXPECT_FALSE(running_future().cancelled());
  EXPECT_TRUE(cancelled_future().cancelled());
  EXPECT_FALSE(exception_future().cancelled());
  EXPECT_FALSE(successful_future().cancelled());
}

TEST(FutureState, Done) {
  EXPECT_FALSE(pending_future().done());
  EXPECT_FALSE(running_future().done());
  EXPECT_TRUE(cancelled_future().done());
  EXPECT_TRUE(exception_future().done());
  EXPECT_TRUE(successful_future().done());
}

TEST(FutureState, Running) {
  EXPECT_FALSE(pending_future().running());
  EXPECT_TRUE(running_future().running());
  EXPECT_FALSE(cancelled_future().running());
  EXPECT_FALSE(exception_future().running());
  EXPECT_FALSE(successful_future().running());
}

TEST(FutureState, ResultWithZeroTimeout) {
  EXPECT_THROW(pending_future().result(0s), concur::TimeoutError);
  EXPECT_THROW(running_future().result(0s), concur::TimeoutError);
  EXPECT_THROW(cancelled_future().result(0s), concur::CancelledError);
  EXPECT_THROW(exception_future().result(0s), concur::OSError);
  EXPECT_EQ(successful_future().result(0s), 42);
}

TEST(FutureState, ResultWithNegativeTimeoutPolls) {
  EXPECT_THROW(pending_future().result(-1s), concur::TimeoutError);
  EXPECT_THROW(running_future().result(-5ms), concur::TimeoutError);
  EXPECT_THROW(cancelled_future().result(-1s), concur::CancelledError);
  EXPECT_THROW(exception_future().result(-1s), concur::OSError);
  EXPECT_EQ(successful_future().result(-1s), 42);
  EXPECT_EQ(successful_future().result(std::chrono::hours::min()), 42);
}

TEST(FutureState, ExceptionWithZeroTimeout) {
  EXPECT_THROW(pending_future().exception(0s), concur::TimeoutError);
  EXPECT_THROW(running_future().exception(0s), concur::TimeoutError);
  EXPECT_THROW(cancelled_future().exception(0s), concur::CancelledError);
  auto e = exception_future().exception(0s);
  ASSERT_TRUE(e);
  try {
    std::rethrow_exception(e);
  } catch (const concur::OSError& err) {
    EXPECT_EQ(err.error_number(), EIO);
  }
  EXPECT_EQ(successful_future().exception(0s), nullptr);
  EXPECT_EQ(successful_future().exception(), nullptr);
}

TEST(FutureState, TimeoutsDoNotSpoilTheFuture) {
  Future<int> f;
  EXPECT_THROW(f.result(1ms), concur::TimeoutError);
  EXPECT_THROW(f.exception(0s), concur::TimeoutError);
  EXPECT_FALSE(f.wait(0s));
  EXPECT_FALSE(f.done());
  f.set_result(7);
  EXPECT_EQ(f.result(0s), 7);
  EXPECT_TRUE(f.wait(0s));
}

TEST(FutureState, WaitNeverThrows) {
  EXPECT_FALSE(pending_future().wait(0s));
  EXPECT_FALSE(pending_future().wait(-1s));
  EXPECT_TRUE(cancelled_future().wait(0s));
  EXPECT_TRUE(exception_future().wait(0s));
  EXPECT_TRUE(exception_future().wait());
  EXPECT_TRUE(successful_future().wait(-1s));
}

// Python's test_result_with_success, without the sleep: the setter waits until the main
// thread is really blocked in result().
TEST(FutureState, BlockedResultWokenBySetResult) {
  Future<int> f;
  pid_t me = current_tid();
  std::thread t([f, me] {
    wait_until_blocked(me);
    f.set_result(42);
  });
  EXPECT_EQ(f.result(kBound), 42);
  t.join();
}

TEST(FutureState, BlockedResultWokenByCancel) {
  Future<int> f;
  pid_t me = current_tid();
  std::thread t([f, me] {
    wait_until_blocked(me);
    EXPECT_TRUE(f.cancel());
  });
  EXPECT_THROW(f.result(kBound), concur::CancelledError);
  t.join();
}

TEST(FutureState, BlockedExceptionWokenBySetException) {
  Future<int> f;
  pid_t me = current_tid();
  std::thread t([f, me] {
    wait_until_blocked(me);
    f.set_exception(concur::OSError("late", EPIPE));
  });
  auto e = f.exception(kBound);
  t.join();
  ASSERT_TRUE(e);
  EXPECT_THROW(std::rethrow_exception(e), concur::OSError);
}

TEST(FutureState, BlockedResultWithoutTimeoutWoken) {
  Future<std::string> f;
  pid_t me = current_tid();
  std::thread t([f, me] {
    wait_until_blocked(me);
    f.set_result("hello");
  });
  EXPECT_EQ(f.result(), "hello");
  t.join();
}

TEST(FutureState, ManyBlockedWaitersAllWoken) {
  Future<int> f;
  constexpr int kWaiters = 6;
  std::atomic<int> ok{0};
  std::vector<std::thread> waiters;
  std::vector<std::atomic<pid_t>> tids(kWaiters);
  for (int i = 0; i < kWaiters; ++i)
    waiters.emplace_back([&, i] {
      tids[i] = current_tid();
      if (f.result(kBound) == 9) ok.fetch_add(1);
    });
  for (int i = 0; i < kWaiters; ++i) {
    while (tids[i].load() == 0) std::this_thread::yield();
    wait_until_blocked(tids[i]);
  }
  f.set_result(9);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(ok.load(), kWaiters);
}

// A duration so long that adding it to now() would overflow must mean "forever", not
// "already expired".
TEST(FutureState, HugeTimeoutsMeanForever) {
  Future<int> f;
  pid_t me = current_tid();
  std::thread t([f, me] {
    wait_until_blocked(me);
    f.set_result(5);
  });
  EXPECT_EQ(f.result(std::chrono::hours::max()), 5);
  t.join();
  EXPECT_EQ(f.result(std::chrono::nanoseconds::max()), 5);
  EXPECT_TRUE(f.wait(std::chrono::duration<double>(1e300)));

  Future<int> g;
  std::thread t2([g, me] {
    wait_until_blocked(me);
    g.set_result(6);
  });
  EXPECT_TRUE(g.wait(std::chrono::nanoseconds::max()));
  EXPECT_EQ(g.exception(std::chrono::hours::max()), nullptr);
  t2.join();
}

TEST(FutureState, SetResultTwiceKeepsTheFirst) {
  Future<int> f;
  f.set_result(1);
  try {
    f.set_result(2);
    FAIL() << "second set_result did not throw";
  } catch (const concur::InvalidStateError& e) {
    EXPECT_NE(std::string(e.what()).find("finished"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 1);
}

TEST(FutureState, SetExceptionTwiceKeepsTheFirst) {
  Future<int> f;
  f.set_exception(CustomError(1));
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(std::logic_error("second"))),
               concur::InvalidStateError);
  EXPECT_THROW(f.set_result(3), concur::InvalidStateError);
  try {
    f.result();
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 1);
  }
}

TEST(FutureState, SetExceptionAfterResultKeepsTheResult) {
  Future<int> f;
  f.set_result(11);
  EXPECT_THROW(f.set_exception(CustomError(2)), concur::InvalidStateError);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_EQ(f.result(), 11);
}

TEST(FutureState, SetAfterCancelThrows) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  EXPECT_THROW(f.set_result(1), concur::InvalidStateError);
  EXPECT_THROW(f.set_exception(CustomError(1)), concur::InvalidStateError);
  EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(f.result(), concur::CancelledError);
}

TEST(FutureState, SetExceptionRejectsNull) {
  Future<int> f;
  EXPECT_THROW(f.set_exception(std::exception_ptr()), concur::InvalidStateError);
  EXPECT_FALSE(f.done());
  f.set_result(3);
  EXPECT_EQ(f.result(), 3);
}

TEST(FutureState, SetRunningOrNotifyCancel) {
  Future<int> f;
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());
  EXPECT_THROW(f.set_running_or_notify_cancel(), concur::InvalidStateError);
  f.set_result(4);
  EXPECT_FALSE(f.running());
  EXPECT_THROW(f.set_running_or_notify_cancel(), concur::InvalidStateError);
  EXPECT_EQ(f.result(), 4);

  Future<int> g;
  ASSERT_TRUE(g.cancel());
  EXPECT_FALSE(g.set_running_or_notify_cancel());
  EXPECT_TRUE(g.cancelled());
}

TEST(FutureState, CancelKillRunningOnAPlainFutureIsPlainCancel) {
  Future<int> pending;
  EXPECT_TRUE(pending.cancel(concur::kill_running));
  EXPECT_TRUE(pending.cancelled());
  auto running = running_future();
  EXPECT_FALSE(running.cancel(concur::kill_running));
  EXPECT_TRUE(running.running());
}

TEST(FutureState, VoidFuture) {
  Future<void> f;
  EXPECT_FALSE(f.done());
  f.set_result();
  EXPECT_TRUE(f.done());
  EXPECT_NO_THROW(f.result());
  EXPECT_EQ(f.exception(), nullptr);
  static_assert(std::is_void_v<decltype(f.result())>);
  EXPECT_THROW(f.set_result(), concur::InvalidStateError);

  Future<void> g;
  g.set_exception(CustomError(5));
  EXPECT_THROW(g.result(), CustomError);
}

TEST(FutureState, MoveOnlyValue) {
  Future<std::unique_ptr<int>> f;
  f.set_result(std::make_unique<int>(7));
  ASSERT_TRUE(f.result());
  EXPECT_EQ(*f.result(), 7);
  static_assert(std::is_same_v<decltype(f.result()), const std::unique_ptr<int>&>);
}

TEST(FutureState, ValueWhoseCopyThrowsBecomesTheException) {
  struct Fragile {
    Fragile() = default;
    Fragile(const Fragile&) { throw CustomError(77); }
  };
  Future<Fragile> f;
  Fragile original;
  EXPECT_NO_THROW(f.set_result(original));
  EXPECT_TRUE(f.done());
  try {
    f.result();
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 77);
  }
}

TEST(FutureState, CopiesShareOneState) {
  Future<int> a;
  Future<int> b = a;
  Future<int> other;
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == other);
  std::unordered_set<Future<int>> set{a, b, other};
  EXPECT_EQ(set.size(), 2u);
  std::set<Future<int>> ordered{a, b, other};
  EXPECT_EQ(ordered.size(), 2u);
  b.set_result(8);
  EXPECT_TRUE(a.done());
  EXPECT_EQ(a.result(), 8);
  EXPECT_FALSE(other.done());
}

TEST(FutureState, MovedFromHandleIsInvalid) {
  Future<int> a;
  EXPECT_TRUE(a.valid());
  Future<int> b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): that is the point
  EXPECT_TRUE(b.valid());
  b.set_result(1);
  EXPECT_EQ(b.result(), 1);
}

// ------------------------------------------------------------------ exceptions keep their type

TEST(FutureExceptions, UserTypeSurvivesWithPayload) {
  Future<int> f;
  f.set_exception(CustomError(123));
  try {
    f.result();
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 123);
  }
  // The same object on every call, as Python re-raises the same exception instance.
  const void* first = nullptr;
  const void* second = nullptr;
  try {
    f.result();
  } catch (const CustomError& e) {
    first = &e;
  }
  try {
    f.result();
  } catch (const CustomError& e) {
    second = &e;
  }
  EXPECT_EQ(first, second);
}

TEST(FutureExceptions, NonStdExceptionTypes) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(17));
  try {
    f.result();
    FAIL() << "no exception";
  } catch (int v) {
    EXPECT_EQ(v, 17);
  }
  Future<int> g;
  g.set_exception(std::make_exception_ptr(std::string("text")));
  EXPECT_THROW(g.result(), std::string);
}

// An exception object that tests falsy in Python (gh-132063) has no C++ analogue; the nearest
// is an exception with an empty message, which must still be raised.
TEST(FutureExceptions, EmptyMessageStillRaised) {
  Future<int> f;
  f.set_exception(std::runtime_error(""));
  EXPECT_THROW(f.result(), std::runtime_error);
  EXPECT_NE(f.exception(), nullptr);
}

TEST(FutureExceptions, ErrorHierarchy) {
  // Every library error is a concur::Error and a std::runtime_error, and the broken-pool
  // errors are BrokenExecutors: code written against the base types must catch them.
  auto raises_as_runtime_error = [](auto e) {
    try {
      throw e;
    } catch (const concur::Error&) {
      try {
        throw e;
      } catch (const std::runtime_error&) {
        return true;
      }
    } catch (...) {
    }
    return false;
  };
  EXPECT_TRUE(raises_as_runtime_error(concur::CancelledError()));
  EXPECT_TRUE(raises_as_runtime_error(concur::TimeoutError()));
  EXPECT_TRUE(raises_as_runtime_error(concur::InvalidStateError("x")));
  EXPECT_TRUE(raises_as_runtime_error(concur::ShutdownError()));
  EXPECT_TRUE(raises_as_runtime_error(concur::BrokenThreadPool("x")));
  EXPECT_TRUE(raises_as_runtime_error(concur::BrokenProcessPool("x")));
  EXPECT_THROW(throw concur::BrokenThreadPool("x"), concur::BrokenExecutor);
  EXPECT_THROW(throw concur::BrokenProcessPool("x"), concur::BrokenExecutor);
  EXPECT_STREQ(concur::CancelledError().what(), "future was cancelled");
}

// ------------------------------------------------------------------ callbacks (test_future.py)

TEST(FutureCallbacks, WithResult) {
  int seen = 0;
  Future<int> f;
  f.add_done_callback([&](const Future<int>& g) { seen = g.result(); });
  EXPECT_EQ(seen, 0);
  f.set_result(5);
  EXPECT_EQ(seen, 5);
}

TEST(FutureCallbacks, WithException) {
  std::exception_ptr seen;
  Future<int> f;
  f.add_done_callback([&](const Future<int>& g) { seen = g.exception(); });
  f.set_exception(CustomError(9));
  ASSERT_TRUE(seen);
  EXPECT_THROW(std::rethrow_exception(seen), CustomError);
}

TEST(FutureCallbacks, WithCancel) {
  int calls = 0;
  bool was_cancelled = false;
  Future<int> f;
  f.add_done_callback([&](const Future<int>& g) {
    ++calls;
    was_cancelled = g.cancelled();
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(was_cancelled);
  EXPECT_TRUE(f.cancel());  // a second cancel must not run the callbacks again
  EXPECT_EQ(calls, 1);
}

TEST(FutureCallbacks, AlreadySuccessfulRunsAtOnceInCaller) {
  std::thread::id where;
  int seen = 0;
  auto f = successful_future();
  f.add_done_callback([&](const Future<int>& g) {
    seen = g.result();
    where = std::this_thread::get_id();
  });
  EXPECT_EQ(seen, 42);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST(FutureCallbacks, AlreadyFailedRunsAtOnce) {
  std::exception_ptr seen;
  auto f = exception_future();
  f.add_done_callback([&](const Future<int>& g) { seen = g.exception(); });
  ASSERT_TRUE(seen);
  EXPECT_THROW(std::rethrow_exception(seen), concur::OSError);
}

TEST(FutureCallbacks, AlreadyCancelledRunsAtOnce) {
  bool was_cancelled = false;
  auto f = cancelled_future();
  f.add_done_callback([&](const Future<int>& g) { was_cancelled = g.cancelled(); });
  EXPECT_TRUE(was_cancelled);
}

TEST(FutureCallbacks, RunInTheOrderAdded) {
  std::vector<int> order;
  Future<int> f;
  for (int i = 0; i < 20; ++i)
    f.add_done_callback([&order, i](const Future<int>&) { order.push_back(i); });
  f.set_result(0);
  std::vector<int> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
}

TEST(FutureCallbacks, RaisingCallbackIsReportedAndTheOthersStillRun) {
  bool raising_was_called = false;
  bool later_was_called = false;
  Future<int> f;
  f.add_done_callback([&](const Future<int>&) {
    raising_was_called = true;
    throw std::runtime_error("doh!");
  });
  f.add_done_callback([&](const Future<int>&) { later_was_called = true; });
  testing::internal::CaptureStderr();
  f.set_result(5);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(raising_was_called);
  EXPECT_TRUE(later_was_called);
  EXPECT_NE(err.find("exception calling callback for"), std::string::npos) << err;
  EXPECT_NE(err.find("doh!"), std::string::npos) << err;
  EXPECT_NE(err.find("std::runtime_error"), std::string::npos) << err;
  EXPECT_EQ(f.result(), 5);
}

TEST(FutureCallbacks, RaisingCallbackOnAlreadyDoneFutureIsReported) {
  auto f = successful_future();
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(f.add_done_callback([](const Future<int>&) { throw CustomError(1); }));
  EXPECT_NO_THROW(f.add_done_callback([](const Future<int>&) { throw 3; }));
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("exception calling callback for"), std::string::npos) << err;
  EXPECT_NE(err.find("CustomError"), std::string::npos) << err;
  EXPECT_NE(err.find("non-standard exception"), std::string::npos) << err;
}

TEST(FutureCallbacks, RunInTheCompletingThread) {
  Future<int> f;
  std::thread::id where;
  f.add_done_callback([&](const Future<int>&) { where = std::this_thread::get_id(); });
  std::thread::id setter;
  std::thread t([&] {
    setter = std::this_thread::get_id();
    f.set_result(1);
  });
  t.join();
  EXPECT_EQ(where, setter);
  EXPECT_NE(where, std::this_thread::get_id());
}

TEST(FutureCallbacks, CallbackAddedFromACallbackRunsAtOnce) {
  std::vector<std::string> order;
  Future<int> f;
  f.add_done_callback([&](const Future<int>& g) {
    order.push_back("outer");
    g.add_done_callback([&](const Future<int>&) { order.push_back("inner"); });
    order.push_back("outer-end");
  });
  f.set_result(1);
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "inner", "outer-end"}));
}

TEST(FutureCallbacks, MoveOnlyCallback) {
  auto owned = std::make_unique<int>(5);
  int seen = 0;
  Future<int> f;
  f.add_done_callback(
      [p = std::move(owned), &seen](const Future<int>& g) { seen = *p + g.result(); });
  f.set_result(1);
  EXPECT_EQ(seen, 6);
}

// The callback is given a usable future even when the only other handle is gone.
TEST(FutureCallbacks, CallbackOutlivesTheCallersHandles) {
  std::atomic<int> seen{0};
  std::thread t;
  {
    Future<int> f;
    f.add_done_callback([&](const Future<int>& g) { seen = g.result() + (g.done() ? 1 : 0); });
    t = std::thread([g = std::move(f)] { g.set_result(41); });
  }
  t.join();
  EXPECT_EQ(seen.load(), 42);
}

// A pending future that is dropped must free its callbacks (and whatever they own), rather
// than keep itself alive through a callback that holds a handle to it.
TEST(FutureCallbacks, DroppedPendingFutureReleasesItsCallbacks) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  {
    Future<int> f;
    f.add_done_callback([token](const Future<int>&) {});
    token.reset();
  }
  EXPECT_TRUE(watch.expired()) << "the callback (and the future's state) leaked";
}

TEST(FutureCallbacks, DroppedPendingAnyFutureReleasesItsCallbacks) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  {
    Future<std::string> f;
    AnyFuture(f).add_done_callback([token](const AnyFuture&) {});
    token.reset();
  }
  EXPECT_TRUE(watch.expired()) << "the callback (and the future's state) leaked";
}

// ------------------------------------------------------------------ races

// CPython's "callbacks added while the future completes": every callback runs exactly once,
// whether it was registered in time or ran at once in the adding thread.
TEST(FutureRaces, CallbacksAddedWhileCompletingRunExactlyOnce) {
  constexpr int kRounds = 300;
  constexpr int kCallbacks = 50;
  for (int round = 0; round < kRounds; ++round) {
    Future<int> f;
    std::vector<std::atomic<int>> runs(kCallbacks);
    foundation_test::SpinStart start(2);
    std::thread completer([&] {
      start.arrive_and_wait();
      f.set_result(round);
    });
    start.arrive_and_wait();
    for (int i = 0; i < kCallbacks; ++i)
      f.add_done_callback([&runs, i, round](const Future<int>& g) {
        if (g.result() == round) runs[i].fetch_add(1);
      });
    completer.join();
    for (int i = 0; i < kCallbacks; ++i)
      ASSERT_EQ(runs[i].load(), 1) << "callback " << i << " in round " << round;
  }
}

TEST(FutureRaces, CancelVersusSetResultExactlyOneWins) {
  constexpr int kRounds = 2000;
  int cancels = 0, results = 0;
  for (int round = 0; round < kRounds; ++round) {
    Future<int> f;
    foundation_test::SpinStart start(2);
    bool cancel_won = false;
    bool set_won = false;
    std::thread setter([&] {
      start.arrive_and_wait();
      try {
        f.set_result(round);
        set_won = true;
      } catch (const concur::InvalidStateError&) {
      }
    });
    start.arrive_and_wait();
    cancel_won = f.cancel();
    setter.join();
    ASSERT_NE(cancel_won, set_won) << "round " << round;
    ASSERT_TRUE(f.done());
    if (cancel_won) {
      ++cancels;
      ASSERT_TRUE(f.cancelled());
      ASSERT_THROW(f.result(), concur::CancelledError);
    } else {
      ++results;
      ASSERT_FALSE(f.cancelled());
      ASSERT_EQ(f.result(), round);
    }
  }
  EXPECT_EQ(cancels + results, kRounds);
}

TEST(FutureRaces, SetResultVersusSetExceptionExactlyOneWins) {
  for (int round = 0; round < 2000; ++round) {
    Future<int> f;
    foundation_test::SpinStart start(2);
    bool result_won = false, exception_won = false;
    std::thread a([&] {
      start.arrive_and_wait();
      try {
        f.set_result(1);
        result_won = true;
      } catch (const concur::InvalidStateError&) {
      }
    });
    start.arrive_and_wait();
    try {
      f.set_exception(CustomError(2));
      exception_won = true;
    } catch (const concur::InvalidStateError&) {
    }
    a.join();
    ASSERT_NE(result_won, exception_won);
    if (result_won) {
      ASSERT_EQ(f.result(), 1);
    } else {
      ASSERT_THROW(f.result(), CustomError);
    }
  }
}

TEST(FutureRaces, CancelVersusStartExactlyOneWins) {
  for (int round = 0; round < 2000; ++round) {
    Future<int> f;
    foundation_test::SpinStart start(2);
    bool started = false;
    std::thread runner([&] {
      start.arrive_and_wait();
      started = f.set_running_or_notify_cancel();
      if (started) f.set_result(1);
    });
    start.arrive_and_wait();
    bool cancelled = f.cancel();
    runner.join();
    ASSERT_NE(started, cancelled) << "round " << round;
    ASSERT_EQ(f.cancelled(), cancelled);
    if (started) {
      ASSERT_EQ(f.result(), 1);
    }
  }
}

// A waiter that arrives while the outcome is being published must neither miss the wake-up
// nor see a half-written value.
TEST(FutureRaces, WaitersRacingCompletionAlwaysWake) {
  for (int round = 0; round < 1000; ++round) {
    Future<std::string> f;
    foundation_test::SpinStart start(3);
    std::string seen1, seen2;
    std::thread w1([&] {
      start.arrive_and_wait();
      seen1 = f.result(kBound);
    });
    std::thread w2([&] {
      start.arrive_and_wait();
      seen2 = f.result(kBound);
    });
    start.arrive_and_wait();
    f.set_result("round " + std::to_string(round));
    w1.join();
    w2.join();
    ASSERT_EQ(seen1, "round " + std::to_string(round));
    ASSERT_EQ(seen2, seen1);
  }
}

// ------------------------------------------------------------------ then()

TEST(FutureThen, ValueToValue) {
  Future<int> f;
  Future<std::string> g = f.then([](int v) { return std::to_string(v * 2); });
  EXPECT_FALSE(g.done());
  f.set_result(21);
  EXPECT_EQ(g.result(0s), "42");
}

TEST(FutureThen, VoidSourceAndVoidContinuation) {
  Future<void> f;
  int calls = 0;
  Future<int> g = f.then([&] {
    ++calls;
    return 3;
  });
  Future<void> h = g.then([&](int v) { calls += v; });
  static_assert(std::is_same_v<decltype(h), Future<void>>);
  f.set_result();
  EXPECT_EQ(g.result(0s), 3);
  EXPECT_NO_THROW(h.result(0s));
  EXPECT_EQ(calls, 4);
}

TEST(FutureThen, Chains) {
  Future<int> f;
  auto g = f.then([](int v) { return v + 1; }).then([](int v) { return v * 10; }).then([](int v) {
    return std::vector<int>(static_cast<std::size_t>(v), 1);
  });
  f.set_result(1);
  EXPECT_EQ(g.result(0s).size(), 20u);
}

TEST(FutureThen, OnDoneFutureRunsAtOnceInCaller) {
  auto f = successful_future();
  std::thread::id where;
  auto g = f.then([&](int v) {
    where = std::this_thread::get_id();
    return v + 1;
  });
  EXPECT_TRUE(g.done());
  EXPECT_EQ(g.result(), 43);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST(FutureThen, RunsInTheCompletingThread) {
  Future<int> f;
  std::thread::id where;
  auto g = f.then([&](int v) {
    where = std::this_thread::get_id();
    return v;
  });
  std::thread::id setter;
  std::thread t([&] {
    setter = std::this_thread::get_id();
    f.set_result(1);
  });
  t.join();
  EXPECT_EQ(g.result(0s), 1);
  EXPECT_EQ(where, setter);
}

TEST(FutureThen, ExceptionPropagatesWithItsTypeWithoutCallingFn) {
  Future<int> f;
  bool called = false;
  auto g = f.then([&](int v) {
    called = true;
    return v;
  });
  auto h = g.then([&](int) { called = true; });
  f.set_exception(CustomError(31));
  EXPECT_FALSE(called);
  try {
    h.result(0s);
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 31);
  }
  EXPECT_THROW(g.result(0s), CustomError);
}

TEST(FutureThen, ThrowingContinuationFailsTheNewFuture) {
  Future<int> f;
  auto g = f.then([](int v) -> int { throw CustomError(v); });
  auto h = g.then([](int v) { return v; });
  f.set_result(8);
  EXPECT_FALSE(f.exception());  // the source is untouched
  try {
    h.result(0s);
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code, 8);
  }
}

TEST(FutureThen, CancellationPropagates) {
  Future<int> f;
  bool called = false;
  auto g = f.then([&](int v) {
    called = true;
    return v;
  });
  auto h = g.then([&](int) { called = true; });
  ASSERT_TRUE(f.cancel());
  EXPECT_FALSE(called);
  EXPECT_TRUE(g.cancelled());
  EXPECT_TRUE(h.cancelled());
  EXPECT_THROW(h.result(0s), concur::CancelledError);
}

TEST(FutureThen, FlattensAReturnedFuture) {
  Future<int> f;
  Future<std::string> inner;
  auto g = f.then([&](int v) {
    EXPECT_EQ(v, 2);
    return inner;
  });
  static_assert(std::is_same_v<decltype(g), Future<std::string>>);
  f.set_result(2);
  EXPECT_FALSE(g.done()) << "must wait for the returned future";
  inner.set_result("inner");
  EXPECT_EQ(g.result(0s), "inner");
}

TEST(FutureThen, FlattenedFutureAlreadyDone) {
  Future<int> f;
  auto g = f.then([](int v) {
    Future<int> r;
    r.set_result(v * 3);
    return r;
  });
  f.set_result(5);
  EXPECT_EQ(g.result(0s), 15);
}

TEST(FutureThen, FlattenedVoidFuture) {
  Future<int> f;
  Future<void> inner;
  Future<void> g = f.then([&](int) { return inner; });
  f.set_result(1);
  EXPECT_FALSE(g.done());
  inner.set_result();
  EXPECT_NO_THROW(g.result(0s));
}

TEST(FutureThen, FlattenedFutureExceptionAndCancellationPropagate) {
  Future<int> f1, f2;
  Future<int> inner1, inner2;
  auto g1 = f1.then([&](int) { return inner1; });
  auto g2 = f2.then([&](int) { return inner2; });
  f1.set_result(0);
  f2.set_result(0);
  inner1.set_exception(CustomError(4));
  ASSERT_TRUE(inner2.cancel());
  EXPECT_THROW(g1.result(0s), CustomError);
  EXPECT_TRUE(g2.cancelled());
}

TEST(FutureThen, WithPoolFutures) {
  concur::ThreadPoolExecutor pool(2);
  auto g = pool.submit([] { return 20; }).then([](int v) { return v + 1; }).then([](int v) {
    return std::to_string(v * 2);
  });
  EXPECT_EQ(g.result(kBound), "42");
}

TEST(FutureThen, DroppedSourceReleasesTheContinuation) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  {
    Future<int> f;
    auto g = f.then([token](int v) { return v; });
    token.reset();
  }
  EXPECT_TRUE(watch.expired()) << "the continuation leaked";
}

// ------------------------------------------------------------------ co_await

// A minimal eager coroutine type: starts at once, reports its outcome through a std::promise,
// frees its frame when it ends. Nothing from concur but the awaited futures.
template <class T>
struct EagerBase {
  std::promise<T> outcome;
  void return_value(T v) { outcome.set_value(std::move(v)); }
};
template <>
struct EagerBase<void> {
  std::promise<void> outcome;
  void return_void() { outcome.set_value(); }
};

template <class T>
struct Eager {
  struct promise_type : EagerBase<T> {
    Eager get_return_object() { return Eager{this->outcome.get_future()}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void unhandled_exception() { this->outcome.set_exception(std::current_exception()); }
  };
  std::future<T> result;

  bool finished_now() const { return result.wait_for(0s) == std::future_status::ready; }
  T get() {
    if (result.wait_for(kBound) != std::future_status::ready)
      throw std::runtime_error("coroutine did not finish");
    return result.get();
  }
};

Eager<int> add_one(Future<int> f, std::thread::id* resumed_on) {
  int v = co_await f;
  *resumed_on = std::this_thread::get_id();
  co_return v + 1;
}

Eager<int> code_of_error(Future<int> f) {
  try {
    co_await f;
  } catch (const CustomError& e) {
    co_return e.code;
  }
  co_return -1;
}

Eager<std::string> cancelled_or_not(Future<int> f) {
  try {
    co_await f;
  } catch (const concur::CancelledError&) {
    co_return "cancelled";
  }
  co_return "not cancelled";
}

Eager<void> await_void(Future<void> f, int* after) {
  co_await f;
  *after = 1;
}

Eager<long> sum_all(std::vector<Future<long>> fs) {
  long total = 0;
  for (auto& f : fs) total += co_await f;
  co_return total;
}

Eager<int> two_steps(concur::ThreadPoolExecutor* pool) {
  int a = co_await pool->submit([] { return 20; });
  int b = co_await pool->submit([a] { return a + 22; });
  co_return b;
}

TEST(FutureCoAwait, DoneFutureDoesNotSuspend) {
  std::thread::id where;
  auto c = add_one(successful_future(), &where);
  EXPECT_TRUE(c.finished_now()) << "co_await on a done future suspended";
  EXPECT_EQ(c.get(), 43);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST(FutureCoAwait, ResumesInTheCompletingThread) {
  Future<int> f;
  std::thread::id where;
  auto c = add_one(f, &where);
  EXPECT_FALSE(c.finished_now());
  std::thread::id setter;
  std::thread t([&] {
    setter = std::this_thread::get_id();
    f.set_result(9);
  });
  t.join();
  EXPECT_EQ(c.get(), 10);
  EXPECT_EQ(where, setter);
}

TEST(FutureCoAwait, ExceptionKeepsItsType) {
  Future<int> f;
  auto c = code_of_error(f);
  f.set_exception(CustomError(55));
  EXPECT_EQ(c.get(), 55);
  // And an already-failed future too.
  auto d = code_of_error(exception_future());
  EXPECT_THROW(d.get(), concur::OSError);
}

TEST(FutureCoAwait, CancelledRaisesCancelledError) {
  Future<int> f;
  auto c = cancelled_or_not(f);
  ASSERT_TRUE(f.cancel());
  EXPECT_EQ(c.get(), "cancelled");
  EXPECT_EQ(cancelled_or_not(successful_future()).get(), "not cancelled");
}

TEST(FutureCoAwait, VoidFuture) {
  Future<void> f;
  int after = 0;
  auto c = await_void(f, &after);
  EXPECT_EQ(after, 0);
  f.set_result();
  c.get();
  EXPECT_EQ(after, 1);
}

TEST(FutureCoAwait, AwaitsPoolFutures) {
  concur::ThreadPoolExecutor pool(2);
  auto c = two_steps(&pool);
  EXPECT_EQ(c.get(), 42);
}

// The coroutine registers its resumption while another thread completes the futures: each
// await must resume exactly once (a lost or double resume hangs or corrupts the sum).
TEST(FutureCoAwait, AwaitsRacingCompletion) {
  for (int round = 0; round < 20; ++round) {
    constexpr int kN = 500;
    std::vector<Future<long>> fs(kN);
    foundation_test::SpinStart start(2);
    std::thread setter([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kN; ++i) fs[static_cast<std::size_t>(i)].set_result(i);
    });
    start.arrive_and_wait();
    auto c = sum_all(fs);
    setter.join();
    ASSERT_EQ(c.get(), static_cast<long>(kN) * (kN - 1) / 2);
  }
}

// ------------------------------------------------------------------ AnyFuture

TEST(AnyFutureTest, AsRecoversTheTypedFuture) {
  Future<std::string> f;
  AnyFuture any = f;
  auto back = any.as<std::string>();
  EXPECT_TRUE(back == f);
  f.set_result("typed");
  EXPECT_EQ(back.result(), "typed");
}

TEST(AnyFutureTest, AsWithTheWrongTypeThrows) {
  Future<int> f;
  AnyFuture any = f;
  EXPECT_THROW(any.as<long>(), concur::InvalidStateError);
  EXPECT_THROW(any.as<void>(), concur::InvalidStateError);
  EXPECT_NO_THROW(any.as<int>());
  Future<void> v;
  EXPECT_NO_THROW(AnyFuture(v).as<void>());
}

TEST(AnyFutureTest, ObservesTheUnderlyingFuture) {
  Future<int> f;
  AnyFuture any = f;
  EXPECT_FALSE(any.done());
  EXPECT_FALSE(any.running());
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(any.running());
  EXPECT_THROW(any.result(0s), concur::TimeoutError);
  f.set_result(1);
  EXPECT_TRUE(any.done());
  EXPECT_NO_THROW(any.result());
  EXPECT_EQ(any.exception(), nullptr);
}

TEST(AnyFutureTest, ResultRethrowsWithTheOriginalType) {
  Future<double> f;
  AnyFuture any = f;
  f.set_exception(CustomError(6));
  EXPECT_THROW(any.result(), CustomError);
  EXPECT_THROW(std::rethrow_exception(any.exception()), CustomError);
}

TEST(AnyFutureTest, CancelThroughTheErasedHandle) {
  Future<int> f;
  AnyFuture any = f;
  EXPECT_TRUE(any.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(any.result(), concur::CancelledError);
  EXPECT_THROW(any.exception(), concur::CancelledError);
}

TEST(AnyFutureTest, CallbacksSeeTheErasedHandle) {
  Future<std::string> f;
  AnyFuture any = f;
  std::string seen;
  any.add_done_callback([&](const AnyFuture& a) { seen = a.as<std::string>().result(); });
  f.set_result("cb");
  EXPECT_EQ(seen, "cb");
  int again = 0;
  any.add_done_callback([&](const AnyFuture& a) { again = a.done() ? 1 : 0; });
  EXPECT_EQ(again, 1);
}

TEST(AnyFutureTest, EqualityAndHashFollowTheState) {
  Future<int> f;
  AnyFuture a1 = f, a2 = f;
  AnyFuture other = Future<int>();
  EXPECT_TRUE(a1 == a2);
  EXPECT_FALSE(a1 == other);
  std::unordered_set<AnyFuture> set{a1, a2, other};
  EXPECT_EQ(set.size(), 2u);
}

}  // namespace
