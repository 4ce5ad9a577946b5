// Tests of the process engine's internal pieces (detail/process_*.hpp, remote_call.hpp):
// the shared-memory transport, the launcher and its hand-shake, one-call children, code
// addresses, and descriptor hygiene across start methods.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "concur/detail/process_engine.hpp"
#include "concur/detail/process_launcher.hpp"
#include "concur/detail/process_transport.hpp"
#include "concur/process_pool.hpp"
#include "concur/thread_pool.hpp"
#include "support/sanitizers.hpp"

namespace {

using namespace std::chrono_literals;
using namespace concur::detail;
using concur::StartMethod;

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::string text_of(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// A worker endpoint attached in this very process to `link` (descriptors duplicated).
std::unique_ptr<WorkerEndpoint> attach_here(PoolTransport& pool, WorkerLink& link) {
  std::vector<UniqueFd> fds;
  for (int fd : pool.worker_fds()) fds.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  for (int fd : link.worker_fds()) fds.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  return WorkerEndpoint::attach_shm(pool.describe(), std::move(fds));
}

bool always_alive(void*) { return true; }

TransportConfig small_config() {
  TransportConfig c;
  c.ring_bytes = 1 << 16;
  c.max_inline = 1 << 12;
  c.request_area = std::size_t{64} << 20;
  c.response_area = std::size_t{64} << 20;
  return c;
}

// ================================================================ transport
TEST(ProcessTransport, MessagesKeepOrderAcrossManyRingWrapArounds) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  std::uint64_t seq = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string body(static_cast<std::size_t>(round * 37 % 3000), static_cast<char>('a' + round % 26));
    ASSERT_TRUE(link->send(MsgKind::call, ++seq, bytes_of(body)));
    InMessage m;
    ASSERT_TRUE(ep->receive(m, 0, 50, always_alive, nullptr));
    EXPECT_FALSE(m.corrupt);
    EXPECT_EQ(m.seq, seq);
    EXPECT_EQ(text_of(m.payload), body);
    ep->release(m);
    ep->send(MsgKind::outcome, seq, bytes_of(body + "!"));
    InMessage r;
    ASSERT_TRUE(link->receive(r));
    EXPECT_EQ(text_of(r.payload), body + "!");
    link->release(r);
  }
}

TEST(ProcessTransport, AFullRingRefusesInsteadOfOverwriting) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  std::string body(1000, 'x');
  int sent = 0;
  while (link->send(MsgKind::call, static_cast<std::uint64_t>(sent + 1), bytes_of(body))) ++sent;
  EXPECT_GT(sent, 10);
  EXPECT_LT(sent, 70);  // 64 KiB ring, ~1 KiB records
  auto ep = attach_here(*pool, *link);
  for (int i = 0; i < sent; ++i) {
    InMessage m;
    ASSERT_TRUE(ep->receive(m, 0, 50, always_alive, nullptr));
    EXPECT_EQ(m.seq, static_cast<std::uint64_t>(i + 1));
    ep->release(m);
  }
}

TEST(ProcessTransport, LargePayloadsSpillAndOutOfBandBlocksRoundTrip) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  // A response too big for the ring spills to the response area.
  std::string big(200'000, 'q');
  ep->send(MsgKind::outcome, 1, bytes_of(big));
  InMessage r;
  ASSERT_TRUE(link->receive(r));
  EXPECT_EQ(text_of(r.payload), big);
  link->release(r);
  // Out-of-band blocks through the sink and source.
  std::vector<std::byte> block(3 << 20, std::byte{7});
  std::uint64_t id = ep->response_sink(2).put(block.data(), block.size());
  auto back = link->response_source().get(id, block.size());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), block.begin()));
  EXPECT_THROW(link->response_source().get(std::uint64_t{1} << 40, 10), concur::SerializationError);
  std::uint64_t rid = pool->put_request_block(block.data(), block.size());
  auto req = ep->request_source().get(rid, block.size());
  EXPECT_TRUE(std::equal(req.begin(), req.end(), block.begin()));
  pool->free_request_block(rid);
}

TEST(ProcessTransport, FreedAreaBlocksAreReused) {
  auto pool = PoolTransport::create_shm(small_config());
  std::vector<std::byte> block(8 << 20, std::byte{1});
  std::uint64_t a = pool->put_request_block(block.data(), block.size());
  pool->free_request_block(a);
  std::uint64_t b = pool->put_request_block(block.data(), block.size());
  EXPECT_EQ(a, b);  // the same (already mapped) pages
  pool->free_request_block(b);
}

TEST(ProcessTransport, AnAreaThatCannotHoldABlockSaysSo) {
  auto pool = PoolTransport::create_shm(small_config());
  std::vector<std::byte> block(80u << 20);
  try {
    pool->put_request_block(block.data(), block.size());
    FAIL();
  } catch (const concur::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
}

TEST(ProcessTransport, CorruptMessagesAreDetectedAndTheStreamGoesOn) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  link->corrupt_next_request();
  ASSERT_TRUE(link->send(MsgKind::call, 1, bytes_of("damaged")));
  ASSERT_TRUE(link->send(MsgKind::call, 2, bytes_of("fine")));
  InMessage m;
  ASSERT_TRUE(ep->receive(m, 0, 50, always_alive, nullptr));
  EXPECT_TRUE(m.corrupt);
  EXPECT_EQ(m.seq, 1u);
  ep->release(m);
  ASSERT_TRUE(ep->receive(m, 0, 50, always_alive, nullptr));
  EXPECT_FALSE(m.corrupt);
  EXPECT_EQ(text_of(m.payload), "fine");
  ep->release(m);
}

TEST(ProcessTransport, SkipAndStartedHandshake) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  link->skip(5);
  EXPECT_FALSE(ep->set_started(5, monotonic_ns()));
  EXPECT_TRUE(ep->set_started(6, monotonic_ns()));
  EXPECT_EQ(link->started_seq(), 6u);
}

// Two kills on one worker: a stale one (its call finished, the result not yet collected)
// must not lift the fence of one that is about to land, or the call after it would run
// and be killed in its place.
TEST(ProcessTransport, AStaleKillDoesNotLiftAnotherKillsFence) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  ASSERT_TRUE(ep->set_started(1, 0));
  ASSERT_TRUE(ep->set_started(2, 0));
  EXPECT_TRUE(link->fence_kill(2));   // call 2 runs: its kill goes ahead
  EXPECT_FALSE(link->fence_kill(1));  // call 1 is over: nothing to kill, and no change
  std::atomic<bool> started{false};
  std::thread worker([&] {
    ep->set_started(3, 0);  // held until the fence on call 2 is gone
    started = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(started.load()) << "call 3 started while the kill of call 2 was on its way";
  EXPECT_TRUE(link->fence_kill(3));  // (in the engine the worker dies here; a later fence frees it)
  worker.join();
  EXPECT_TRUE(started.load());
}

TEST(ProcessTransport, ReceiveGivesUpWhenThePeerIsGone) {
  auto pool = PoolTransport::create_shm(small_config());
  auto link = pool->create_link();
  auto ep = attach_here(*pool, *link);
  InMessage m;
  EXPECT_FALSE(ep->receive(m, 1000, 10, [](void*) { return false; }, nullptr));
}

TEST(ProcessTransport, ACloseTransportRefusesWork) {
  auto pool = PoolTransport::create_shm(small_config());
  pool->close();
  std::byte b{};
  EXPECT_THROW(pool->put_request_block(&b, 1), concur::SerializationError);
  pool->ring_doorbell();  // harmless
}

// ================================================================ code addresses
int local_function(int x) { return x + 1; }

TEST(ProcessRemoteCall, CodeAddressesRoundTripAndBadOnesAreRefused) {
  Writer w;
  encode_code_address(w, reinterpret_cast<std::uintptr_t>(&local_function));
  Reader r(w.bytes());
  EXPECT_EQ(decode_code_address(r), reinterpret_cast<std::uintptr_t>(&local_function));
  // An offset outside the executable's code.
  Writer bad;
  std::uint32_t n = 0;
  std::uint64_t off = std::uint64_t{1} << 45;
  bad.write_bytes(&n, 4);
  bad.write_bytes(&off, 8);
  Reader br(bad.bytes());
  EXPECT_THROW(decode_code_address(br), concur::SerializationError);
  EXPECT_NE(describe_code_address(reinterpret_cast<std::uintptr_t>(&local_function)).find("local_function"),
            std::string::npos);
}

TEST(ProcessRemoteCall, FunctionsOfSharedLibrariesAreFoundByModule) {
  // libm is linked by this program: the worker has it at another address (ASLR).
  concur::ProcessPoolExecutor ex({.max_workers = 1, .start_method = StartMethod::spawn});
  auto cbrt_fn = static_cast<double (*)(double)>(&::cbrt);
  EXPECT_DOUBLE_EQ(ex.submit(cbrt_fn, 27.0).result(), 3.0);
  // libz is not: loaded here with dlopen, the re-executed worker must load it too.
  void* z = ::dlopen("libz.so.1", RTLD_NOW);
  if (!z) GTEST_SKIP() << "libz.so.1 is not installed";
  using Combine = unsigned long (*)(unsigned long, unsigned long, long);
  auto combine = reinterpret_cast<Combine>(::dlsym(z, "adler32_combine"));
  ASSERT_NE(combine, nullptr);
  EXPECT_EQ(ex.submit(combine, 1234ul, 5678ul, 100l).result(), combine(1234, 5678, 100));
  ex.shutdown();
  ::dlclose(z);
}

TEST(ProcessRemoteCall, PortableTasksAlsoRunOnAThreadPoolThroughExecutor) {
  concur::ThreadPoolExecutor threads(1);
  concur::Executor& e = threads;
  EXPECT_EQ(e.submit(local_function, 41).result(), 42);
}

// ================================================================ leader/follower
long twice(long x) { return 2 * x; }

// help_wait() is what SharedState::wait() calls when the foundation provides the wait
// hook; exercised here directly, from several threads at once.
TEST(ProcessEngineHelp, WaitingThreadsCollectTheirOwnResults) {
  concur::ProcessPoolExecutor ex(2);
  auto engine = ex.engine();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (long i = 0; i < 300; ++i) {
        auto f = ex.submit(twice, i + t * 1000);
        while (!engine->help_wait(*f.state(), std::nullopt)) {
        }
        if (!f.done() || f.result() != 2 * (i + t * 1000)) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  // A deadline in the past returns at once, done or not.
  auto slow = ex.submit([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return 1;
  });
  EXPECT_FALSE(engine->help_wait(*slow.state(), std::chrono::steady_clock::now()));
  EXPECT_EQ(slow.result(), 1);
}

// A thread that wakes a sleeping worker stands in for the collector until its submit
// returns. What it leaves (a result with a done-callback, which never runs inside
// submit(); a result that came a moment too late) must still reach the collector thread,
// with nobody waiting on the future.
TEST(ProcessEngineHelp, ResultsNobodyWaitsForAreCollectedAfterASubmitWokeAWorker) {
  concur::ProcessPoolExecutor ex(2);
  auto engine = ex.engine();
  ex.submit(twice, 1).result();
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(3ms);  // every spinner gives up: the next submit wakes one
    std::mutex mu;
    std::condition_variable cv;
    int called = 0;
    auto with_callback = ex.submit(twice, round);
    with_callback.add_done_callback([&](auto&) {
      std::lock_guard lock(mu);
      ++called;
      cv.notify_all();
    });
    auto without = ex.submit(twice, round + 100);
    EXPECT_EQ(engine->helping_threads(), 0);
    // Not waiting on the futures: only the collector thread can complete them. It sleeps
    // up to a second at a time when nothing rings its doorbell: a lost ring shows as that.
    const auto limit = std::chrono::steady_clock::now() + 900ms;
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_until(lock, limit, [&] { return called == 1; })) << "round " << round;
    }
    while (!without.done() && std::chrono::steady_clock::now() < limit)
      std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(without.done()) << "round " << round;
    EXPECT_EQ(with_callback.result(), 2 * round);
    EXPECT_EQ(without.result(), 2 * (round + 100));
  }
}

// Many threads submitting into an idle pool and waiting, then none: the count of helping
// threads (while it is not 0, workers skip the doorbell) goes back to 0.
TEST(ProcessEngineHelp, HelpingThreadsAreCountedBackToZero) {
  concur::ProcessPoolExecutor ex(2);
  auto engine = ex.engine();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (long i = 0; i < 40; ++i) {
        if (i % 8 == t) std::this_thread::sleep_for(2ms);
        auto f = ex.submit(twice, i);
        if (i % 3 == 0) std::this_thread::sleep_for(100us);
        if (f.result() != 2 * i) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(engine->helping_threads(), 0);
  std::this_thread::sleep_for(5ms);
  auto f = ex.submit(twice, 21);
  // The collector completes it, not us; it would sleep through a worker that skipped the
  // doorbell because the count was left above 0.
  const auto limit = std::chrono::steady_clock::now() + 900ms;
  while (!f.done() && std::chrono::steady_clock::now() < limit) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(f.done());
  EXPECT_EQ(f.result(), 42);
}

// ================================================================ launcher
int answer() { return 42; }
void raise_error() { throw std::runtime_error("one-shot failure"); }

TEST(ProcessLauncher, OneCallInAChildWithEachStartMethod) {
  for (StartMethod m : {StartMethod::forkserver, StartMethod::spawn, StartMethod::fork}) {
    SCOPED_TRACE(concur::to_string(m));
    auto launcher = Launcher::create(m);
    Writer w;
    encode_call<int, int (*)()>(w, &answer, std::tuple<>{});
    auto shot = start_call_once(*launcher, w.bytes());
    auto outcome = read_call_outcome(shot, 60'000);
    ASSERT_TRUE(outcome.has_value());
    concur::Future<int> f;
    ASSERT_TRUE(f.state()->try_begin_complete());
    Reader r(*outcome);
    decode_outcome<int>(*f.state(), r);
    f.state()->end_complete();
    EXPECT_EQ(f.result(), 42);
    auto st = shot.child->wait();
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->exitcode(), 0);

    Writer w2;
    encode_call<void, void (*)()>(w2, &raise_error, std::tuple<>{});
    auto shot2 = start_call_once(*launcher, w2.bytes());
    EXPECT_TRUE(read_call_outcome(shot2, 60'000).has_value());
    EXPECT_EQ(shot2.child->wait()->exitcode(), 1);
  }
}

TEST(ProcessLauncher, ExitStatusesAreReportedLikePython) {
  auto launcher = Launcher::create(StartMethod::forkserver);
  Writer w;
  encode_call<void, void (*)()>(w, [] { ::raise(SIGKILL); }, std::tuple<>{});
  auto shot = start_call_once(*launcher, w.bytes());
  auto st = shot.child->wait();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->signal, SIGKILL);
  EXPECT_EQ(st->exitcode(), -SIGKILL);
  EXPECT_NE(st->describe().find("SIGKILL"), std::string::npos);
}

TEST(ProcessLauncher, DestroyingAChildHandleKillsAndReapsIt) {
  for (StartMethod m : {StartMethod::spawn, StartMethod::forkserver}) {
    auto launcher = Launcher::create(m);
    Writer w;
    encode_call<void, void (*)()>(w, [] { ::pause(); }, std::tuple<>{});
    pid_t pid;
    {
      auto shot = start_call_once(*launcher, w.bytes());
      pid = shot.child->pid();
    }
    // The handle's destructor killed it and its parent reaped it.
    bool gone = false;
    for (int i = 0; i < 10'000 && !gone; ++i) {
      gone = ::kill(pid, 0) != 0;
      if (!gone) std::this_thread::sleep_for(1ms);
    }
    EXPECT_TRUE(gone);
  }
}

TEST(ProcessLauncher, ADeadForkServerIsReplaced) {
  concur::ProcessPoolExecutor ex({.max_workers = 1, .max_tasks_per_child = 1});
  EXPECT_EQ(ex.submit(answer).result(), 42);
  pid_t server = fork_server_pid();
  ASSERT_GT(server, 0);
  ::kill(server, SIGKILL);
  // The next task needs a new worker (one task per child), hence a new server.
  EXPECT_EQ(ex.submit(answer).result(), 42);
  EXPECT_EQ(ex.submit(answer).result(), 42);
  EXPECT_NE(fork_server_pid(), server);
}

// The executable of another test program: a different build id.
std::string other_executable() {
  auto self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path() / "test_process_pool").string();
}

TEST(ProcessLauncher, AWorkerRunningAnotherBinaryRefusesTheHandshake) {
  ASSERT_TRUE(std::filesystem::exists(other_executable()));
  for (StartMethod m : {StartMethod::spawn, StartMethod::forkserver}) {
    SCOPED_TRACE(concur::to_string(m));
    EngineOptions o;
    o.max_workers = 1;
    o.start_method = m;
    o.launch.executable = other_executable();
    auto engine = ProcessEngine::create(o);
    auto task = make_remote_task<int>(&answer);
    engine->submit(TaskPtr(task));
    concur::Future<int> f(task);
    try {
      f.result();
      ADD_FAILURE() << "a foreign worker ran the task";
    } catch (const concur::BrokenProcessPool& e) {
      EXPECT_NE(std::string(e.what()).find("different executable"), std::string::npos) << e.what();
    }
    EXPECT_LE(engine->processes_started(), 1u);
    engine->shutdown(true, false);
  }
}

// ================================================================ killing a running task
// Writes `marker` (the task has started in the worker), then sleeps, then returns v.
int mark_then_sleep(std::string marker, int ms, int v) {
  if (!marker.empty()) ::close(::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return v;
}

TEST(ProcessEngineKill, AKillThatLosesTheRaceWithTheNextTaskDoesNotHitIt) {
  // cancel(kill_running) of A decides to kill A's worker, but (debug_kill_delay) A ends and
  // the worker reaches B before the signal is sent. The kill fence makes the worker wait
  // before starting B, so the kill finds B not run: B goes to a new worker and succeeds,
  // instead of failing with WorkerDiedError as an innocent bystander.
  std::string marker = ::testing::TempDir() + "concur-kill-race-" + std::to_string(::getpid());
  ::unlink(marker.c_str());
  EngineOptions o;
  o.max_workers = 1;
  o.on_worker_death = concur::OnWorkerDeath::break_pool;  // even so: B's worker is killed
  o.debug_kill_delay = 400ms;                                // for A, not for B
  auto engine = ProcessEngine::create(o);
  auto a = make_remote_task<int>(&mark_then_sleep, marker, 100, 1);
  auto b = make_remote_task<int>(&mark_then_sleep, std::string(), 600, 2);
  engine->submit(TaskPtr(a));
  engine->submit(TaskPtr(b));
  concur::Future<int> fa(a), fb(b);
  for (int i = 0; i < 30'000 && ::access(marker.c_str(), F_OK) != 0; ++i) ::usleep(1000);
  ASSERT_EQ(::access(marker.c_str(), F_OK), 0) << "task A never started";
  std::thread canceller([&] { EXPECT_TRUE(fa.cancel(concur::kill_running)); });
  std::string b_failed;
  try {
    EXPECT_EQ(fb.result(), 2);
  } catch (const std::exception& e) {
    b_failed = e.what();
  }
  canceller.join();
  EXPECT_EQ(b_failed, "") << "task B was hit by the kill meant for A";
  EXPECT_TRUE(fa.cancelled());
  EXPECT_EQ(engine->processes_started(), 2u);  // A's worker was killed, B ran on the next
  EXPECT_FALSE(engine->broken());
  engine->shutdown(true, false);
  ::unlink(marker.c_str());
}

// ================================================================ threads
int thread_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/task");
  while (dirent* e = d ? ::readdir(d) : nullptr) n += e->d_name[0] != '.';
  if (d) ::closedir(d);
  return n;
}

// The threads of this process once the first thread was started (ThreadSanitizer starts a
// background thread of its own then).
int baseline_thread_count() {
  std::thread([] {}).join();
  return thread_count();
}

// An engine with one worker that has run one task; its collector lingers `exit_delay`
// after it has released everything.
std::shared_ptr<ProcessEngine> engine_after_one_task(std::chrono::milliseconds exit_delay) {
  EngineOptions o;
  o.max_workers = 1;
  o.debug_collector_exit_delay = exit_delay;
  auto engine = ProcessEngine::create(o);
  auto t = make_remote_task<int>(&mark_then_sleep, std::string(), 0, 7);
  engine->submit(TaskPtr(t));
  EXPECT_EQ(concur::Future<int>(t).result(), 7);
  return engine;
}

// shutdown(wait=true) returns once the collector thread has ended, not just its loop (as
// Python's joins its management thread): a thread still on its way out while the program
// forks a `fork` pool's zygote can leave an allocator lock held in the zygote under
// allocators that do not lock around fork() (seen with clang 14's ASan).
TEST(ProcessEngineHygiene, ShutdownWithWaitLeavesNoThreadBehind) {
  const int before = baseline_thread_count();
  auto engine = engine_after_one_task(300ms);
  EXPECT_GT(thread_count(), before);
  engine->shutdown(true, false);
  EXPECT_EQ(thread_count(), before);
}

// Shut down without waiting and dropped at once, the engine ends on its own collector
// thread, which cannot join itself.
TEST(ProcessEngineHygiene, AnEngineDroppedWithoutWaitingEndsOnItsOwnThread) {
  const int before = baseline_thread_count();
  engine_after_one_task(50ms)->shutdown(false, false);
  for (int i = 0; i < 5000 && thread_count() != before; ++i) ::usleep(1000);
  EXPECT_EQ(thread_count(), before);
}

// ================================================================ descriptor hygiene
// How many shared pool areas ("memfd:concur-pool") this process has open.
int pool_areas_open() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) {
    char target[256] = {};
    std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
        std::strstr(target, "concur-pool"))
      ++n;
  }
  ::closedir(d);
  return n;
}

TEST(ProcessEngineHygiene, WorkersHoldNoDescriptorsOfOtherPools) {
  concur::ProcessPoolExecutor first({.max_workers = 1, .start_method = StartMethod::spawn});
  first.submit(answer).result();
  for (StartMethod m : {StartMethod::fork, StartMethod::forkserver, StartMethod::spawn}) {
    concur::ProcessPoolExecutor second({.max_workers = 1, .start_method = m});
    EXPECT_EQ(second.submit(pool_areas_open).result(), 1) << concur::to_string(m);
  }
}

struct Unknown : std::exception {};
void throw_unregistered_type() { throw Unknown(); }

// The zygote of the fork method is forked while other threads of the program may hold the
// library's locks; its workers must not inherit them held (every call a worker decodes
// reads the module table under its lock).
TEST(ProcessEngineHygiene, ForkWorkersDoNotInheritLocksHeldByOtherThreads) {
  if (test_support::kAddressSanitizer) {
    // clang 14's ASan does not lock its own allocator around fork(): a worker forked while
    // the hammering thread allocates can hang inside ASan's malloc (seen in a debugger),
    // which is not what this test is about. Plain builds and TSan run it.
    GTEST_SKIP() << "ASan's allocator (LLVM 14) is not fork-safe under concurrent malloc";
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> warm{false};
  std::thread hammer([&] {
    // An address in no module makes the module table rebuild itself under its exclusive
    // lock every time: that lock is held most of the time.
    while (!stop.load(std::memory_order_relaxed)) {
      Writer w;
      try {
        encode_code_address(w, 1);
      } catch (const concur::SerializationError&) {
      }
      warm.store(true, std::memory_order_release);
    }
  });
  // The first throw of a thread runs libgcc's one-time unwinder set-up under pthread_once.
  // glibc's pthread_once survives a fork in the middle of it, ThreadSanitizer's interceptor
  // does not (the child waits forever for the initialiser, seen in gdb): start forking
  // once that is done, since it is not what this test is about.
  while (!warm.load(std::memory_order_acquire)) std::this_thread::yield();
  int hung = 0;
  for (int i = 0; i < 12; ++i) {
    concur::ProcessPoolExecutor ex({.max_workers = 1, .start_method = StartMethod::fork});
    auto f = ex.submit(throw_unregistered_type);
    try {
      f.result(std::chrono::seconds(20));
    } catch (const concur::RemoteError&) {
    } catch (const concur::TimeoutError&) {
      ++hung;
      ex.kill_workers();
    }
  }
  stop = true;
  hammer.join();
  EXPECT_EQ(hung, 0);
}

TEST(ProcessEngineHygiene, LibraryDescriptorsAreRegistered) {
  concur::ProcessPoolExecutor ex(1);
  ex.submit(answer).result();
  int registered = 0;
  for (int fd = 0; fd < 1024; ++fd) registered += is_library_fd(fd);
  EXPECT_GE(registered, 3);  // pool area, doorbell, epoll, worker channel...
}

}  // namespace
