// Tests of concur/shared_memory.hpp: SharedMemory, Value<T>, Array<T>.
#include "concur/shared_memory.hpp"
#include "support/children.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using concur::Array;
using concur::FileExistsError;
using concur::FileNotFoundError;
using concur::SharedMemory;
using concur::Value;

namespace {

using test_support::Children;

// A name no other test run uses, removed at scope exit whatever happens.
struct TestName {
  std::string name;
  explicit TestName(const char* tag)
      : name(std::string("concur_test_") + tag + "_" + std::to_string(getpid())) {}
  ~TestName() { shm_unlink(("/" + name).c_str()); }
};

bool exists_in_dev_shm(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

struct Point {
  double x;
  int y;
  char tag[4];
};

}  // namespace

// ============================================================== SharedMemory

TEST(SharedMemory, CreateAttachReadWriteUnlink) {
  TestName n("basic");
  SharedMemory created = SharedMemory::create(n.name, 1000);
  EXPECT_EQ(created.name(), n.name);
  EXPECT_EQ(created.size(), 1000u);
  ASSERT_EQ(created.buf().size(), 1000u);
  EXPECT_TRUE(std::all_of(created.buf().begin(), created.buf().end(),
                          [](std::byte b) { return b == std::byte{0}; }));
  std::memcpy(created.data(), "hello", 5);

  SharedMemory attached(n.name);
  EXPECT_EQ(attached.name(), n.name);
  EXPECT_EQ(attached.size(), 1000u);
  EXPECT_EQ(std::memcmp(attached.data(), "hello", 5), 0);
  attached.buf()[999] = std::byte{42};
  EXPECT_EQ(created.buf()[999], std::byte{42});

  EXPECT_TRUE(exists_in_dev_shm(n.name));
  created.unlink();
  EXPECT_FALSE(exists_in_dev_shm(n.name));
  // Unlinking removes the name only: existing mappings keep working.
  attached.buf()[0] = std::byte{7};
  EXPECT_EQ(created.buf()[0], std::byte{7});
  EXPECT_THROW(SharedMemory{n.name}, FileNotFoundError);
  EXPECT_THROW(attached.unlink(), FileNotFoundError);
}

TEST(SharedMemory, AttachingAMissingNameFailsClearly) {
  TestName n("missing");
  try {
    SharedMemory shm(n.name);
    ADD_FAILURE() << "attached to a block that does not exist";
  } catch (const FileNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find(n.name), std::string::npos) << e.what();
    EXPECT_EQ(e.error_number(), ENOENT);
  }
}

TEST(SharedMemory, CreatingAnExistingNameFails) {
  TestName n("exists");
  SharedMemory first = SharedMemory::create(n.name, 64);
  EXPECT_THROW(SharedMemory::create(n.name, 64), FileExistsError);
  first.unlink();
}

TEST(SharedMemory, InvalidArguments) {
  TestName n("invalid");
  EXPECT_THROW(SharedMemory::create(n.name, 0), std::invalid_argument);
  EXPECT_THROW(SharedMemory::create("a/b", 10), std::invalid_argument);
  EXPECT_THROW(SharedMemory::create("", 10), std::invalid_argument);
  EXPECT_THROW(SharedMemory::create("/", 10), std::invalid_argument);
  EXPECT_THROW(SharedMemory{"x/y"}, std::invalid_argument);
  EXPECT_FALSE(exists_in_dev_shm(n.name));
}

TEST(SharedMemory, LeadingSlashIsAccepted) {
  TestName n("slash");
  SharedMemory shm = SharedMemory::create("/" + n.name, 16);
  EXPECT_EQ(shm.name(), n.name);
  SharedMemory attached("/" + n.name);
  EXPECT_EQ(attached.size(), 16u);
  shm.unlink();
}

TEST(SharedMemory, UnnamedCreateGetsAnAttachableName) {
  SharedMemory a = SharedMemory::create(32);
  SharedMemory b = SharedMemory::create(32);
  EXPECT_EQ(a.name().rfind("psm_", 0), 0u) << a.name();
  EXPECT_NE(a.name(), b.name());
  SharedMemory attached(a.name());
  attached.buf()[3] = std::byte{3};
  EXPECT_EQ(a.buf()[3], std::byte{3});
  a.unlink();
  b.unlink();
}

TEST(SharedMemory, CreatorKeepsTheNameUnlessAsked) {
  TestName kept("kept"), dropped("dropped");
  { SharedMemory shm = SharedMemory::create(kept.name, 8); }
  EXPECT_TRUE(exists_in_dev_shm(kept.name));  // as Python: close is not unlink
  {
    SharedMemory shm = SharedMemory::create(dropped.name, 8, {.unlink_on_destroy = true});
    SharedMemory other(dropped.name);  // an attacher never unlinks
  }
  EXPECT_FALSE(exists_in_dev_shm(dropped.name));
}

TEST(SharedMemory, ForkedChildsCopyDoesNotUnlink) {
  TestName n("forkcopy");
  SharedMemory shm = SharedMemory::create(n.name, 8, {.unlink_on_destroy = true});
  Children kids;
  pid_t pid = kids.fork([&] {
    {
      SharedMemory moved = std::move(shm);  // destroyed here, in the child
    }
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_TRUE(exists_in_dev_shm(n.name));
}

TEST(SharedMemory, CloseAndMove) {
  TestName n("close");
  SharedMemory shm = SharedMemory::create(n.name, 8, {.unlink_on_destroy = true});
  SharedMemory moved = std::move(shm);
  EXPECT_EQ(moved.name(), n.name);
  EXPECT_EQ(shm.data(), nullptr);  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_TRUE(shm.buf().empty());
  moved.close();
  EXPECT_EQ(moved.data(), nullptr);
  EXPECT_TRUE(moved.buf().empty());
  moved.close();  // idempotent
  EXPECT_TRUE(exists_in_dev_shm(n.name));
  SharedMemory again(n.name);
  EXPECT_EQ(again.size(), 8u);
  SharedMemory assigned = SharedMemory::create(8);
  std::string auto_name = assigned.name();
  assigned.unlink();
  assigned = std::move(again);
  EXPECT_EQ(assigned.name(), n.name);
}

TEST(SharedMemory, SharedWithAForkedChild) {
  TestName n("fork");
  SharedMemory shm = SharedMemory::create(n.name, 4096);
  Children kids;
  pid_t pid = kids.fork([&] {
    SharedMemory mine(n.name);  // attach by name, as an unrelated process would
    auto* ints = reinterpret_cast<int*>(mine.data());
    for (int i = 0; i < 100; ++i) ints[i] = i * i;
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  auto* ints = reinterpret_cast<const int*>(shm.data());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ints[i], i * i);
  shm.unlink();
}

// ============================================================== Value

TEST(Value, LockedByDefault) {
  Value<int> v(5);
  EXPECT_TRUE(v.has_lock());
  EXPECT_EQ(v.value(), 5);
  v.set_value(6);
  EXPECT_EQ(v.value(), 6);
  EXPECT_EQ(v.modify([](int& x) { return ++x; }), 7);
  EXPECT_EQ(*v.get_obj(), 7);
  concur::RLock lock = v.get_lock();
  {
    std::lock_guard g(lock);
    v.set_value(v.value() + 1);  // re-entrant: the accessors take the same RLock
  }
  EXPECT_EQ(v.value(), 8);
  Value<double> d;
  EXPECT_EQ(d.value(), 0.0);
}

TEST(Value, LockExcludesOtherThreads) {
  Value<int> v(0);
  concur::RLock lock = v.get_lock();
  lock.acquire();
  bool got = true;
  std::thread([&] {
    concur::RLock other = v.get_lock();
    got = other.try_acquire();
  }).join();
  EXPECT_FALSE(got);
  lock.release();
}

TEST(Value, RawHasNoLock) {
  auto v = concur::RawValue<long>(3);
  EXPECT_FALSE(v.has_lock());
  EXPECT_THROW(v.get_lock(), concur::InvalidStateError);
  v.set_value(4);
  EXPECT_EQ(v.value(), 4);
  Value<long> w(1, false);
  EXPECT_FALSE(w.has_lock());
}

TEST(Value, StructsAndCopiesShare) {
  Value<Point> p(Point{1.5, 2, "ab"});
  Value<Point> copy = p;
  copy.modify([](Point& q) { q.y = 9; });
  EXPECT_EQ(p.value().y, 9);
  EXPECT_EQ(p.value().x, 1.5);
  EXPECT_STREQ(p.value().tag, "ab");
}

TEST(Value, CounterAcrossProcessesUnderItsLock) {
  constexpr int K = 4, N = 500;
  Value<long> counter(0);
  Children kids;
  std::vector<pid_t> pids;
  for (int k = 0; k < K; ++k)
    pids.push_back(kids.fork([&] {
      for (int i = 0; i < N; ++i) counter.modify([](long& x) { ++x; });
      return 0;
    }));
  for (pid_t p : pids) EXPECT_EQ(kids.wait(p), 0);
  EXPECT_EQ(counter.value(), long{K} * N);
}

TEST(Value, ChildWritesParentReads) {
  Value<Point> p;
  Children kids;
  pid_t pid = kids.fork([&] {
    p.set_value(Point{3.25, 4, "cd"});
    return 0;
  });
  EXPECT_EQ(kids.wait(pid), 0);
  EXPECT_EQ(p.value().x, 3.25);
  EXPECT_EQ(p.value().y, 4);
}

TEST(Value, AttachChecksKindAndSize) {
  Value<int> v(11);
  Value<int> attached = Value<int>::attach(v.handle());
  EXPECT_EQ(attached.value(), 11);
  EXPECT_TRUE(attached.has_lock());
  attached.set_value(12);
  EXPECT_EQ(v.value(), 12);
  EXPECT_THROW(Value<double>::attach(v.handle()), std::invalid_argument);
  EXPECT_THROW(Array<int>::attach(v.handle()), std::invalid_argument);
  auto raw = concur::RawValue<int>(1);
  EXPECT_FALSE(Value<int>::attach(raw.handle()).has_lock());
}

// ============================================================== Array

TEST(Array, SizedArrayIsZeroed) {
  Array<int> a(10);
  EXPECT_TRUE(a.has_lock());
  EXPECT_EQ(a.size(), 10u);
  for (int x : a) EXPECT_EQ(x, 0);
  Array<int> empty(0);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.to_vector().empty());
}

TEST(Array, InitialisersIndexingAndViews) {
  Array<int> a{1, 2, 3, 4};
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a[2], 3);
  a[2] = 30;
  EXPECT_EQ(a.get(2), 30);
  a.set(3, 40);
  EXPECT_EQ(a.at(3), 40);
  EXPECT_EQ(a.to_vector(), (std::vector<int>{1, 2, 30, 40}));
  std::span<int> s = a.span();
  EXPECT_EQ(std::accumulate(s.begin(), s.end(), 0), 73);
  EXPECT_THROW(a.get(4), std::out_of_range);
  EXPECT_THROW(a.set(4, 0), std::out_of_range);
  EXPECT_THROW(a.at(100), std::out_of_range);
  std::vector<double> src{0.5, 1.5};
  Array<double> b(src);
  EXPECT_EQ(b.to_vector(), src);
  std::array<Point, 2> pts{Point{1, 1, "a"}, Point{2, 2, "b"}};
  Array<Point> c(pts, false);
  EXPECT_FALSE(c.has_lock());
  EXPECT_EQ(c[1].y, 2);
  EXPECT_EQ(a.modify([](std::span<int> all) {
    for (int& x : all) x *= 2;
    return all.size();
  }), 4u);
  EXPECT_EQ(a.to_vector(), (std::vector<int>{2, 4, 60, 80}));
}

TEST(Array, RawArrays) {
  auto a = concur::RawArray<int>(3);
  EXPECT_FALSE(a.has_lock());
  EXPECT_THROW(a.get_lock(), concur::InvalidStateError);
  auto b = concur::RawArray<int>({7, 8});
  EXPECT_EQ(b.to_vector(), (std::vector<int>{7, 8}));
}

TEST(Array, AcrossProcesses) {
  constexpr int K = 3;
  Array<long> a(K * 100);
  Array<long> totals(1);
  Children kids;
  std::vector<pid_t> pids;
  for (int k = 0; k < K; ++k)
    pids.push_back(kids.fork([&, k] {
      for (int i = 0; i < 100; ++i) a.set(static_cast<std::size_t>(k * 100 + i), k * 1000 + i);
      concur::RLock lock = totals.get_lock();
      for (int i = 0; i < 50; ++i) {
        std::lock_guard g(lock);
        totals[0] += 1;
      }
      return 0;
    }));
  for (pid_t p : pids) EXPECT_EQ(kids.wait(p), 0);
  for (int k = 0; k < K; ++k)
    for (int i = 0; i < 100; ++i) EXPECT_EQ(a[static_cast<std::size_t>(k * 100 + i)], k * 1000 + i);
  EXPECT_EQ(totals.get(0), K * 50);
}

TEST(Array, AttachChecksElementSize) {
  Array<int> a{5, 6, 7};
  Array<int> attached = Array<int>::attach(a.handle());
  EXPECT_EQ(attached.size(), 3u);
  EXPECT_EQ(attached.to_vector(), (std::vector<int>{5, 6, 7}));
  attached.set(0, 50);
  EXPECT_EQ(a[0], 50);
  EXPECT_THROW(Array<long>::attach(a.handle()), std::invalid_argument);
  EXPECT_THROW(Value<int>::attach(a.handle()), std::invalid_argument);
}

TEST(Array, OverAlignedElements) {
  struct alignas(128) Wide {
    int v;
  };
  Array<Wide> a(3);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 128, 0u);
  a[2].v = 5;
  EXPECT_EQ(a.get(2).v, 5);
}
