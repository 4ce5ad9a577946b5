// Tests of concur/threading.hpp (Timer) and concur/system.hpp (cpu_count).
#include "concur/threading.hpp"

#include <sched.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "concur/synchronize.hpp"
#include "concur/system.hpp"

using namespace std::chrono_literals;
using concur::Timer;

TEST(Timer, RunsAfterTheInterval) {
  std::atomic<int> ran{0};
  Timer t(5ms, [&] { ++ran; });
  EXPECT_FALSE(t.is_alive());
  t.start();
  t.join();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_FALSE(t.is_alive());
  EXPECT_FALSE(t.cancelled());
}

TEST(Timer, PassesArguments) {
  int result = 0;
  auto owned = std::make_unique<int>(20);  // move-only argument
  Timer t(
      0s, [&](int a, const std::unique_ptr<int>& b) { result = a + *b; }, 22, std::move(owned));
  t.start();
  t.join();
  EXPECT_EQ(result, 42);
}

TEST(Timer, CancelBeforeExpiryMeansItNeverRuns) {
  std::atomic<bool> ran{false};
  Timer t(1h, [&] { ran = true; });
  t.start();
  EXPECT_TRUE(t.is_alive());
  t.cancel();
  t.join();  // returns promptly: cancel wakes the timer thread
  EXPECT_FALSE(ran.load());
  EXPECT_TRUE(t.cancelled());
  EXPECT_FALSE(t.is_alive());
}

TEST(Timer, CancelBeforeStart) {
  std::atomic<bool> ran{false};
  Timer t(0s, [&] { ran = true; });
  t.cancel();
  t.start();
  t.join();
  EXPECT_FALSE(ran.load());
  EXPECT_TRUE(t.cancelled());
}

TEST(Timer, CancelAfterItRanHasNoEffect) {
  std::atomic<int> ran{0};
  Timer t(0s, [&] { ++ran; });
  t.start();
  t.join();
  t.cancel();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_FALSE(t.cancelled());
}

TEST(Timer, CancelWhileRunningDoesNotStopIt) {
  concur::Event started, release;
  std::atomic<bool> finished{false};
  Timer t(0s, [&] {
    started.set();
    release.wait();
    finished = true;
  });
  t.start();
  started.wait();
  t.cancel();  // too late: the function is running
  EXPECT_TRUE(t.is_alive());
  release.set();
  t.join();
  EXPECT_TRUE(finished.load());
  EXPECT_FALSE(t.cancelled());
}

TEST(Timer, DestructorCancelsAndJoins) {
  auto ran = std::make_shared<std::atomic<bool>>(false);
  {
    Timer t(1h, [ran] { *ran = true; });
    t.start();
  }
  EXPECT_FALSE(ran->load());
  { Timer never_started(0s, [ran] { *ran = true; }); }
  EXPECT_FALSE(ran->load());
}

TEST(Timer, MisuseThrows) {
  Timer t(0s, [] {});
  EXPECT_THROW(t.join(), std::logic_error);
  EXPECT_THROW(t.join(1ms), std::logic_error);
  t.start();
  EXPECT_THROW(t.start(), std::logic_error);
  t.join();
  t.join();  // joining twice is harmless, as in Python
}

TEST(Timer, JoinRethrowsTheFunctionsException) {
  Timer t(0s, [] { throw std::runtime_error("boom"); });
  t.start();
  EXPECT_THROW(t.join(), std::runtime_error);
  t.join();  // reported once
}

TEST(Timer, TimedJoin) {
  concur::Event release;
  Timer t(0s, [&] { release.wait(); });
  t.start();
  EXPECT_FALSE(t.join(10ms));
  release.set();
  EXPECT_TRUE(t.join(1h));
  Timer waiting(1h, [] {});
  waiting.start();
  EXPECT_FALSE(waiting.join(1ms));
  waiting.cancel();
  EXPECT_TRUE(waiting.join(1h));
}

TEST(Timer, MoveAndMoveAssign) {
  std::atomic<int> ran{0};
  Timer a(0s, [&] { ++ran; });
  Timer b = std::move(a);
  b.start();
  b.join();
  EXPECT_EQ(ran.load(), 1);
  Timer c(1h, [&] { ran += 10; });
  c.start();
  c = Timer(0s, [&] { ran += 100; });  // the waiting one is cancelled and joined
  c.start();
  c.join();
  EXPECT_EQ(ran.load(), 101);
  std::vector<Timer> timers;
  for (int i = 0; i < 3; ++i) timers.emplace_back(0s, [&] { ++ran; });
  for (auto& t : timers) t.start();
  for (auto& t : timers) t.join();
  EXPECT_EQ(ran.load(), 104);
}

TEST(Timer, FunctionMayCancelItsOwnTimer) {
  std::atomic<int> ran{0};
  Timer* self = nullptr;
  Timer t(0s, [&] {
    self->cancel();  // no effect, no deadlock
    ++ran;
  });
  self = &t;
  t.start();
  t.join();
  EXPECT_EQ(ran.load(), 1);
}

TEST(System, CpuCountHonoursAffinity) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(concur::cpu_count(), static_cast<unsigned>(CPU_COUNT(&set)));
  EXPECT_GE(concur::cpu_count(), 1u);
  // Narrowed to one CPU in a thread of its own (affinity is per thread on Linux).
  unsigned narrowed = 0;
  std::thread([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) {
        CPU_SET(c, &one);
        break;
      }
    if (sched_setaffinity(0, sizeof one, &one) == 0) narrowed = concur::cpu_count();
  }).join();
  EXPECT_EQ(narrowed, 1u);
}
