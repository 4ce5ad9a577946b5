// Tests of concur/queue.hpp: Queue, SimpleQueue, JoinableQueue between threads and
// processes, bounded waits, bad messages, and peers that die in the middle of things.
#include "concur/queue.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "concur/process.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Queue;
using concur::StartMethod;

const StartMethod kMethods[] = {StartMethod::forkserver, StartMethod::spawn, StartMethod::fork};

struct Point {
  int x = 0;
  double y = 0;
  std::string label;
  template <class A>
  void serialize(A& ar) {
    ar(x, y, label);
  }
  bool operator==(const Point&) const = default;
};

// ---------------------------------------------------------------- one process
TEST(Queue, ItemsComeOutInOrder) {
  Queue<int> q;
  for (int i = 0; i < 100; ++i) q.put(i);
  EXPECT_EQ(q.qsize(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(q.get(), i);
  EXPECT_TRUE(q.empty());
}

TEST(Queue, CarriesStringsVectorsAndUserTypes) {
  Queue<std::string> s;
  s.put("hello");
  s.put(std::string(5000, 'x'));
  EXPECT_EQ(s.get(), "hello");
  EXPECT_EQ(s.get(), std::string(5000, 'x'));
  Queue<std::vector<int>> v;
  v.put({6, 9});
  EXPECT_EQ(v.get(), (std::vector<int>{6, 9}));
  Queue<Point> p;
  p.put({1, 2.5, "a"});
  EXPECT_EQ(p.get(), (Point{1, 2.5, "a"}));
}

TEST(Queue, GetNowaitOnEmptyThrowsEmpty) {
  Queue<int> q;
  EXPECT_THROW(q.get_nowait(), concur::Empty);
  q.put(1);
  EXPECT_EQ(q.get_nowait(), 1);
  EXPECT_THROW(q.get_nowait(), concur::Empty);
}

TEST(Queue, GetWithTimeoutThrowsEmpty) {
  Queue<int> q;
  EXPECT_THROW(q.get(20ms), concur::Empty);
  EXPECT_THROW(q.get(0ms), concur::Empty);
  EXPECT_THROW(q.get(-5ms), concur::Empty);
}

TEST(Queue, BoundedPutNowaitThrowsFull) {
  Queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  q.put_nowait(1);
  EXPECT_FALSE(q.full());
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), concur::Full);
  EXPECT_THROW(q.put(3, 20ms), concur::Full);
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get(), 1);
  q.put_nowait(3);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

TEST(Queue, BlockedPutGoesThroughOnceThereIsRoom) {
  Queue<int> q(1);
  q.put(1);
  std::thread producer([q]() mutable { q.put(2); });  // waits for room
  EXPECT_EQ(q.get(), 1);
  producer.join();
  EXPECT_EQ(q.get(), 2);
}

TEST(Queue, BlockedGetWakesOnPut) {
  Queue<std::string> q;
  std::string got;
  std::thread consumer([&got, q]() mutable { got = q.get(); });
  q.put("wake up");
  consumer.join();
  EXPECT_EQ(got, "wake up");
}

TEST(Queue, SleepingGetWakesOnPut) {
  Queue<int> q(0, {.spin = 0ns});  // no spin: the consumer sleeps on the futex at once
  std::thread consumer([q]() mutable { EXPECT_EQ(q.get(), 42); });
  std::this_thread::sleep_for(5ms);
  q.put(42);
  consumer.join();
}

TEST(Queue, CopiesAreTheSameQueue) {
  Queue<int> a;
  Queue<int> b = a;
  a.put(7);
  EXPECT_EQ(b.qsize(), 1u);
  EXPECT_EQ(b.get(), 7);
}

TEST(Queue, ManyProducersAndConsumersEachItemOnce) {
  Queue<int> q(64);
  constexpr int kProducers = 4, kPerProducer = 5000, kConsumers = 3;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p)
    threads.emplace_back([q, p]() mutable {
      for (int i = 0; i < kPerProducer; ++i) q.put(p * kPerProducer + i);
    });
  std::vector<std::vector<int>> got(kConsumers);
  for (int c = 0; c < kConsumers; ++c)
    threads.emplace_back([q, &mine = got[static_cast<std::size_t>(c)]]() mutable {
      for (;;) {
        int v = q.get();
        if (v < 0) return;
        mine.push_back(v);
      }
    });
  for (int p = 0; p < kProducers; ++p) threads[static_cast<std::size_t>(p)].join();
  for (int c = 0; c < kConsumers; ++c) q.put(-1);
  for (std::size_t i = kProducers; i < threads.size(); ++i) threads[i].join();
  std::vector<int> all;
  for (auto& g : got) {
    // Each consumer sees every producer's items in that producer's order.
    std::map<int, int> last;
    for (int v : g) {
      int p = v / kPerProducer;
      auto it = last.find(p);
      if (it != last.end()) {
        EXPECT_LT(it->second, v);
      }
      last[p] = v;
    }
    all.insert(all.end(), g.begin(), g.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<int> want(kProducers * kPerProducer);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(all, want);
}

TEST(Queue, WrapsAroundASmallRingWithMixedSizes) {
  Queue<std::string> q(0, {.capacity = 8192});
  std::size_t put = 0, got = 0;
  auto item = [](std::size_t i) { return std::string(1 + (i * 37) % 900, static_cast<char>('a' + i % 26)); };
  for (int round = 0; round < 200; ++round) {
    // Keep a few items in flight so that records straddle the ring's end.
    while (q.qsize() < 5) q.put(item(put++));
    for (int k = 0; k < 3; ++k) EXPECT_EQ(q.get(), item(got++));
  }
  while (got < put) EXPECT_EQ(q.get(), item(got++));
  EXPECT_TRUE(q.empty());
}

TEST(Queue, FullRingInBytesWaitsOrThrowsFull) {
  Queue<std::string> q(0, {.capacity = 4096});
  q.put(std::string(3000, 'a'));
  EXPECT_THROW(q.put_nowait(std::string(3000, 'b')), concur::Full);
  EXPECT_EQ(q.get(), std::string(3000, 'a'));
  q.put_nowait(std::string(3000, 'b'));
  EXPECT_EQ(q.get(), std::string(3000, 'b'));
}

TEST(Queue, MessageLargerThanCapacityIsASerializationError) {
  Queue<std::string> q(0, {.capacity = 4096});
  EXPECT_THROW(q.put(std::string(10000, 'x')), concur::SerializationError);
  q.put("still fine");
  EXPECT_EQ(q.get(), "still fine");
}

TEST(Queue, LargeMessagesPastTheHotPagesRoundTrip) {
  Queue<std::vector<std::uint64_t>> q(0, {.capacity = std::size_t{16} << 20});
  for (int round = 0; round < 3; ++round) {
    std::vector<std::uint64_t> big(std::size_t{600} << 10);  // 4.8 MiB
    std::iota(big.begin(), big.end(), static_cast<std::uint64_t>(round));
    q.put(big);
    q.put({1, 2, 3});
    EXPECT_EQ(q.get(), big);
    EXPECT_EQ(q.get(), (std::vector<std::uint64_t>{1, 2, 3}));
  }
}

TEST(Queue, UndecodableMessageThrowsAndTheQueueGoesOn) {
  Queue<std::string> q;
  concur::detail::QueueCore raw = q.core();
  const std::byte junk[3] = {std::byte{1}, std::byte{2}, std::byte{3}};  // too short for a length
  ASSERT_TRUE(raw.put(junk, std::nullopt));
  q.put("after");
  EXPECT_THROW(q.get(), concur::SerializationError);
  EXPECT_EQ(q.get(), "after");
  q.put("again");
  EXPECT_EQ(q.get(), "again");
}

TEST(Queue, ClosedHandleThrowsOthersCarryOn) {
  Queue<int> q;
  Queue<int> other = q;
  q.put(1);
  q.close();
  EXPECT_TRUE(q.closed());
  EXPECT_THROW(q.put(2), concur::InvalidStateError);
  EXPECT_THROW(q.get(), concur::InvalidStateError);
  EXPECT_THROW(q.qsize(), concur::InvalidStateError);
  q.close();  // idempotent
  EXPECT_EQ(other.get(), 1);
}

TEST(Queue, AQueueOfAnotherTypeIsRefused) {
  Queue<int> q;
  auto bytes = concur::detail::dumps(q);
  EXPECT_THROW(concur::detail::loads<Queue<std::string>>(bytes), concur::SerializationError);
  EXPECT_THROW(concur::detail::loads<concur::JoinableQueue<int>>(bytes), concur::SerializationError);
  Queue<int> same = concur::detail::loads<Queue<int>>(bytes);
  same.put(5);
  EXPECT_EQ(q.get(), 5);
}

TEST(Queue, InvalidCapacityIsRejected) {
  EXPECT_THROW(Queue<int>(0, {.capacity = 10}), std::invalid_argument);
}

TEST(Queue, PutWithTimeoutGoesThroughOnceThereIsRoom) {
  Queue<int> q(1);
  q.put(1);
  std::thread producer([q]() mutable { q.put(2, 60s); });  // waits for room, well within
  EXPECT_EQ(q.get(), 1);
  producer.join();
  EXPECT_EQ(q.get(), 2);
}

TEST(Queue, GetWithTimeoutReceivesAnItemPutMeanwhile) {
  Queue<int> q(0, {.spin = 0ns});
  std::thread producer([q]() mutable { q.put(9); });
  EXPECT_EQ(q.get(60s), 9);
  producer.join();
}

// ---------------------------------------------------------------- SimpleQueue
TEST(SimpleQueue, PutGetEmptyClose) {
  concur::SimpleQueue<std::string> q;
  EXPECT_TRUE(q.empty());
  q.put("a");
  q.put("b");
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.get(), "a");
  EXPECT_EQ(q.get(), "b");
  q.close();
  EXPECT_THROW(q.put("c"), concur::InvalidStateError);
}

// ---------------------------------------------------------------- JoinableQueue
TEST(JoinableQueue, TaskDoneTooOftenThrows) {
  concur::JoinableQueue<int> q;
  EXPECT_THROW(q.task_done(), concur::TaskDoneError);
  q.put(1);
  q.put(2);
  EXPECT_EQ(q.get(), 1);
  q.task_done();
  EXPECT_FALSE(q.join(10ms));
  EXPECT_EQ(q.get(), 2);
  q.task_done();
  EXPECT_TRUE(q.join(0ms));
  EXPECT_THROW(q.task_done(), concur::TaskDoneError);
  q.join();
}

TEST(JoinableQueue, JoinWaitsForEveryItem) {
  concur::JoinableQueue<int> q;
  for (int i = 0; i < 50; ++i) q.put(i);
  std::atomic<int> done{0};
  std::thread worker([q, &done]() mutable {
    for (int i = 0; i < 50; ++i) {
      q.get();
      ++done;
      q.task_done();
    }
  });
  q.join();
  EXPECT_EQ(done.load(), 50);
  worker.join();
}

TEST(JoinableQueue, IsAQueue) {
  concur::JoinableQueue<int> j;
  Queue<int>& q = j;
  q.put(3);
  EXPECT_EQ(j.get(), 3);
  j.task_done();
  // A plain Queue handle may be made from a JoinableQueue's message, not the reverse.
  Queue<int> plain = concur::detail::loads<Queue<int>>(concur::detail::dumps(j));
  plain.put(4);
  EXPECT_EQ(j.get(), 4);
  j.task_done();
  j.join();
}

// ---------------------------------------------------------------- between processes
void put_pair(Queue<std::vector<int>> q, int x) { q.put({x * 2, x * 3}); }

class QueueAcrossProcesses : public testing::TestWithParam<StartMethod> {};

TEST_P(QueueAcrossProcesses, ChildPutsParentGets) {
  Queue<std::vector<int>> q;
  concur::Process p({.start_method = GetParam()}, put_pair, q, 3);
  p.start();
  EXPECT_EQ(q.get(), (std::vector<int>{6, 9}));
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

void produce(Queue<std::uint64_t> q, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) q.put(i);
}

TEST_P(QueueAcrossProcesses, ManyItemsFromTwoProducers) {
  Queue<std::uint64_t> q(100);
  constexpr std::uint64_t n = 20000;
  concur::Process a({.start_method = GetParam()}, produce, q, n);
  concur::Process b({.start_method = GetParam()}, produce, q, n);
  a.start();
  b.start();
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < 2 * n; ++i) sum += q.get();
  a.join();
  b.join();
  EXPECT_EQ(sum, n * (n - 1));
  EXPECT_TRUE(q.empty());
}

void join_worker(concur::JoinableQueue<int> tasks, Queue<int> results) {
  for (;;) {
    int v = tasks.get();
    if (v < 0) {
      tasks.task_done();
      return;
    }
    results.put(v * v);
    tasks.task_done();
  }
}

TEST_P(QueueAcrossProcesses, JoinableQueueTaskDoneInAChild) {
  concur::JoinableQueue<int> tasks;
  Queue<int> results;
  concur::Process w({.start_method = GetParam()}, join_worker, tasks, results);
  w.start();
  for (int i = 1; i <= 10; ++i) tasks.put(i);
  tasks.put(-1);
  tasks.join();
  int sum = 0;
  for (int i = 0; i < 10; ++i) sum += results.get();
  EXPECT_EQ(sum, 385);
  w.join();
  EXPECT_EQ(w.exitcode(), 0);
}

void answer_through(Queue<Queue<int>> mailbox) {
  Queue<int> reply = mailbox.get();  // a queue that travelled inside a queue
  reply.put(42);
}

TEST_P(QueueAcrossProcesses, AQueueTravelsInsideAQueue) {
  Queue<Queue<int>> mailbox;
  concur::Process p({.start_method = GetParam()}, answer_through, mailbox);
  p.start();
  Queue<int> reply;  // made after the child started: it can only learn of it from the message
  mailbox.put(reply);
  EXPECT_EQ(reply.get(), 42);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

void simple_echo(concur::SimpleQueue<std::string> in, concur::SimpleQueue<std::string> out) {
  for (;;) {
    std::string s = in.get();
    if (s.empty()) return;
    out.put(s + "!");
  }
}

TEST_P(QueueAcrossProcesses, SimpleQueueBothWays) {
  concur::SimpleQueue<std::string> in, out;
  concur::Process p({.start_method = GetParam()}, simple_echo, in, out);
  p.start();
  for (std::string s : {"a", "bb", "ccc"}) in.put(s);
  in.put("");
  EXPECT_EQ(out.get(), "a!");
  EXPECT_EQ(out.get(), "bb!");
  EXPECT_EQ(out.get(), "ccc!");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(in.empty());
  EXPECT_TRUE(out.empty());
}

void put_after_go(Queue<int> go, Queue<int> q) {
  go.get();
  q.put(5);
}

TEST_P(QueueAcrossProcesses, GetWithTimeoutReceivesWhatAChildPutsMeanwhile) {
  Queue<int> go, q;
  concur::Process p({.start_method = GetParam()}, put_after_go, go, q);
  p.start();
  EXPECT_THROW(q.get_nowait(), concur::Empty);  // nothing before the go
  go.put(1);
  EXPECT_EQ(q.get(60s), 5);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

std::string method_name(const testing::TestParamInfo<StartMethod>& p) {
  return concur::to_string(p.param);
}
INSTANTIATE_TEST_SUITE_P(StartMethods, QueueAcrossProcesses, testing::ValuesIn(kMethods),
                         method_name);

// ---------------------------------------------------------------- peers that die
void die_in_put(Queue<int> q, int where, int value) {
  int bytes = value;
  auto msg = concur::detail::dumps(bytes);
  concur::detail::QueueCore core = q.core();
  core.put_and_die(msg, static_cast<concur::detail::QueueCore::DieAt>(where));
}

int run_dying_put(Queue<int>& q, concur::detail::QueueCore::DieAt where, int value) {
  concur::Process p(die_in_put, q, static_cast<int>(where), value);
  p.start();
  p.join();
  return *p.exitcode();
}

TEST(QueuePeerDeath, ProducerKilledHoldingTheLockDoesNotDeadlock) {
  Queue<int> q;
  q.put(1);
  EXPECT_EQ(run_dying_put(q, concur::detail::QueueCore::DieAt::holding_lock, 100), 99);
  q.put(2);  // would hang forever without owner-death recovery
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 2);
  EXPECT_TRUE(q.empty());
}

TEST(QueuePeerDeath, PutThatDiedBeforeItsJournalNeverHappened) {
  Queue<int> q;
  q.put(1);
  EXPECT_EQ(run_dying_put(q, concur::detail::QueueCore::DieAt::after_copy, 100), 99);
  q.put(2);
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 2);
  EXPECT_THROW(q.get_nowait(), concur::Empty);
}

TEST(QueuePeerDeath, PutThatDiedAfterItsJournalHappenedCompletely) {
  Queue<int> q;
  q.put(1);
  EXPECT_EQ(run_dying_put(q, concur::detail::QueueCore::DieAt::after_journal, 100), 99);
  q.put(2);
  EXPECT_EQ(q.qsize(), 3u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 100);
  EXPECT_EQ(q.get(), 2);
  EXPECT_TRUE(q.empty());
}

TEST(QueuePeerDeath, SleepingConsumerGetsAnItemWhoseProducerDiedBeforeWaking) {
  Queue<int> q(0, {.spin = 0ns});
  int got = 0;
  std::thread consumer([q, &got]() mutable { got = q.get(); });  // asleep on the futex
  EXPECT_EQ(run_dying_put(q, concur::detail::QueueCore::DieAt::after_commit, 100), 99);
  // Nobody woke the consumer; it finds the dead holder on its periodic check.
  consumer.join();
  EXPECT_EQ(got, 100);
  q.put(5);
  EXPECT_EQ(q.get(), 5);
}

TEST(QueuePeerDeath, JoinableCountSurvivesADeadProducer) {
  concur::JoinableQueue<int> q;
  Queue<int> plain = q;
  EXPECT_EQ(run_dying_put(plain, concur::detail::QueueCore::DieAt::after_journal, 7), 99);
  EXPECT_EQ(q.get(), 7);
  q.task_done();
  EXPECT_TRUE(q.join(0ms));
}

void die_in_get(Queue<int> q, int where) {
  concur::detail::QueueCore core = q.core();
  core.get_and_die(static_cast<concur::detail::QueueCore::DieAt>(where));
}

int run_dying_get(Queue<int>& q, concur::detail::QueueCore::DieAt where) {
  concur::Process p(die_in_get, q, static_cast<int>(where));
  p.start();
  p.join();
  return *p.exitcode();
}

TEST(QueuePeerDeath, ConsumerKilledHoldingTheLockDoesNotDeadlock) {
  Queue<int> q;
  q.put(1);
  EXPECT_EQ(run_dying_get(q, concur::detail::QueueCore::DieAt::holding_lock), 99);
  EXPECT_EQ(q.get(), 1);
  q.put(2);
  EXPECT_EQ(q.get(), 2);
}

TEST(QueuePeerDeath, GetThatDiedBeforeItsJournalLeavesTheItem) {
  Queue<int> q;
  q.put(1);
  q.put(2);
  EXPECT_EQ(run_dying_get(q, concur::detail::QueueCore::DieAt::after_copy), 99);
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 2);
}

TEST(QueuePeerDeath, GetThatDiedAfterItsJournalTookTheItem) {
  Queue<int> q;
  q.put(1);
  q.put(2);
  EXPECT_EQ(run_dying_get(q, concur::detail::QueueCore::DieAt::after_journal), 99);
  EXPECT_EQ(q.get(), 2);  // 1 went with the dead consumer, as it would after a get()
  EXPECT_TRUE(q.empty());
  q.put(3);
  EXPECT_EQ(q.get(), 3);
}

TEST(QueuePeerDeath, SleepingProducerGetsRoomWhoseConsumerDiedBeforeWaking) {
  Queue<int> q(1, {.spin = 0ns});
  q.put(1);
  std::thread producer([q]() mutable { q.put(2); });  // asleep: the queue is full
  EXPECT_EQ(run_dying_get(q, concur::detail::QueueCore::DieAt::after_commit), 99);
  // The dead consumer took 1 and woke nobody; the producer finds it on its periodic check.
  producer.join();
  EXPECT_EQ(q.get(), 2);
  EXPECT_TRUE(q.empty());
}

void consume_into(Queue<std::uint64_t> q, Queue<std::uint64_t> seen) {
  for (;;) seen.put(q.get());
}

TEST(QueuePeerDeath, ConsumerSigkilledMidStreamLosesOnlyWhatItTook) {
  for (int round = 0; round < 5; ++round) {
    Queue<std::uint64_t> q(2000);
    Queue<std::uint64_t> seen;
    concur::Process c(consume_into, q, seen);
    c.start();
    std::uint64_t next = 0;
    for (int i = 0; i < 1000 + round * 500; ++i) q.put(next++);
    c.kill();
    c.join();
    EXPECT_EQ(c.exitcode(), -SIGKILL);
    // What the consumer reported is a prefix; what is left is the rest, whole and in
    // order; at most the one item it held when it died is missing between them.
    std::uint64_t reported = 0;
    while (!seen.empty()) EXPECT_EQ(seen.get(), reported++);
    std::vector<std::uint64_t> left;
    while (!q.empty()) left.push_back(q.get());
    for (std::size_t i = 1; i < left.size(); ++i) {
      EXPECT_EQ(left[i], left[i - 1] + 1);
    }
    std::uint64_t first_left = left.empty() ? next : left.front();
    EXPECT_GE(first_left, reported);
    EXPECT_LE(first_left, reported + 1);
    if (!left.empty()) {
      EXPECT_EQ(left.back(), next - 1);
    }
  }
}

void produce_forever(Queue<std::uint64_t> q) {
  for (std::uint64_t i = 0;; ++i) q.put(i);
}

TEST(QueuePeerDeath, ProducerSigkilledMidStreamLeavesAConsistentPrefix) {
  for (int round = 0; round < 5; ++round) {
    Queue<std::uint64_t> q(1000);
    concur::Process p(produce_forever, q);
    p.start();
    for (int i = 0; i < 200 + round * 300; ++i) q.get();
    p.kill();
    p.join();
    EXPECT_EQ(p.exitcode(), -SIGKILL);
    // Whatever it managed to put is whole and in order; the queue still works.
    std::uint64_t last = 0;
    bool first = true;
    while (!q.empty()) {
      std::uint64_t v = q.get();
      if (!first) {
        EXPECT_EQ(v, last + 1);
      }
      last = v;
      first = false;
    }
    q.put(12345);
    EXPECT_EQ(q.get(), 12345u);
  }
}

void consume_forever(Queue<int> q, Queue<int> seen) {
  for (;;) seen.put(q.get());
}

TEST(QueuePeerDeath, ConsumerSigkilledWhileWaitingCostsNothing) {
  Queue<int> q(0, {.spin = 0ns});
  Queue<int> seen;
  concur::Process c(consume_forever, q, seen);
  c.start();
  q.put(1);
  EXPECT_EQ(seen.get(), 1);  // the consumer is now back asleep in get()
  c.kill();
  c.join();
  EXPECT_EQ(c.exitcode(), -SIGKILL);
  q.put(2);
  q.put(3);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

}  // namespace
