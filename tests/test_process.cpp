// Tests of concur/process.hpp: Process under every start method, exit codes, signals,
// join timeouts, names and identity, daemons, subclasses, and every kind of shared object
// as an argument.
#include "concur/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using concur::Process;
using concur::Queue;
using concur::StartMethod;

const StartMethod kMethods[] = {StartMethod::forkserver, StartMethod::spawn, StartMethod::fork};
std::string method_name(const testing::TestParamInfo<StartMethod>& p) {
  return concur::to_string(p.param);
}

class ProcessTest : public testing::TestWithParam<StartMethod> {
 protected:
  concur::ProcessOptions opts() const { return {.start_method = GetParam()}; }
};

// ---------------------------------------------------------------- targets
void set_value(concur::Value<int> v, int x) { v.set_value(x); }
void throw_runtime(int) { throw std::runtime_error("boom in the child"); }
void exit_with(int code) { std::exit(code); }
void underscore_exit_with(int code) { ::_exit(code); }
void raise_signal(int sig) { ::raise(sig); }
void sleep_forever() {
  for (;;) ::pause();
}
void report_identity(Queue<std::string> q) {
  auto parent = concur::parent_process();
  q.put(concur::current_process().name());
  q.put(std::to_string(concur::current_process().pid()));
  q.put(parent ? parent->name() : "none");
  q.put(parent ? std::to_string(parent->pid()) : "none");
  q.put(parent && parent->is_alive() ? "alive" : "dead");
  q.put(concur::current_process().daemon() ? "daemon" : "not daemon");
}

// ---------------------------------------------------------------- basics per start method
TEST_P(ProcessTest, RunsTheTargetWithItsArguments) {
  concur::Value<int> v(0);
  Process p(opts(), set_value, v, 42);
  EXPECT_FALSE(p.is_alive());
  EXPECT_FALSE(p.pid().has_value());
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_EQ(p.start_method(), GetParam());
  p.start();
  EXPECT_TRUE(p.pid().has_value());
  p.join();
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(v.value(), 42);
}

TEST_P(ProcessTest, AnExceptionMeansExitCodeOne) {
  Process p(opts(), throw_runtime, 1);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 1);
}

TEST_P(ProcessTest, StdExitAndUnderscoreExitKeepTheirCode) {
  Process a(opts(), exit_with, 3);
  Process b(opts(), underscore_exit_with, 7);
  a.start();
  b.start();
  a.join();
  b.join();
  EXPECT_EQ(a.exitcode(), 3);
  EXPECT_EQ(b.exitcode(), 7);
}

TEST_P(ProcessTest, DeathBySignalIsMinusTheSignal) {
  Process p(opts(), raise_signal, SIGKILL);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
  Process q(opts(), raise_signal, SIGUSR1);  // one no sanitizer catches
  q.start();
  q.join();
  EXPECT_EQ(q.exitcode(), -SIGUSR1);
}

TEST_P(ProcessTest, TerminateAndKill) {
  Process t(opts(), sleep_forever);
  Process k(opts(), sleep_forever);
  t.start();
  k.start();
  EXPECT_TRUE(t.is_alive());
  t.terminate();
  k.kill();
  t.join();
  k.join();
  EXPECT_EQ(t.exitcode(), -SIGTERM);
  EXPECT_EQ(k.exitcode(), -SIGKILL);
  t.terminate();  // ended: nothing happens
  k.kill();
  EXPECT_EQ(t.exitcode(), -SIGTERM);
}

TEST_P(ProcessTest, JoinWithTimeout) {
  Process p(opts(), sleep_forever);
  p.start();
  EXPECT_FALSE(p.join(30ms));
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  p.kill();
  EXPECT_TRUE(p.join(60s));
  EXPECT_EQ(p.exitcode(), -SIGKILL);
  EXPECT_TRUE(p.join(0ms));
}

TEST_P(ProcessTest, ChildKnowsItsNameAndParent) {
  Queue<std::string> q;
  Process p({.name = "reporter", .start_method = GetParam()}, report_identity, q);
  EXPECT_EQ(p.name(), "reporter");
  p.start();
  EXPECT_EQ(q.get(), "reporter");
  EXPECT_EQ(q.get(), std::to_string(*p.pid()));
  EXPECT_EQ(q.get(), "MainProcess");
  EXPECT_EQ(q.get(), std::to_string(::getpid()));
  EXPECT_EQ(q.get(), "alive");
  EXPECT_EQ(q.get(), "not daemon");
  p.join();
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ProcessTest, testing::ValuesIn(kMethods), method_name);

// ---------------------------------------------------------------- every kind of argument
struct Shared {
  concur::Lock lock;
  concur::RLock rlock;
  concur::Semaphore sem{0};
  concur::BoundedSemaphore bsem{1};
  concur::Event event;
  concur::Condition cond;
  concur::Barrier barrier{2};
  concur::Value<int> value{0};
  concur::Array<int> array{0, 0, 0};
  concur::Queue<int> queue;
  concur::SimpleQueue<int> simple;
  concur::JoinableQueue<int> joinable;
};

void use_everything(concur::Lock lock, concur::RLock rlock, concur::Semaphore sem,
                    concur::BoundedSemaphore bsem, concur::Event event, concur::Condition cond,
                    concur::Barrier barrier, concur::Value<int> value, concur::Array<int> array,
                    concur::SharedMemory shm, concur::Queue<int> queue,
                    concur::SimpleQueue<int> simple, concur::JoinableQueue<int> joinable,
                    concur::Connection conn) {
  {
    std::lock_guard g(lock);
    std::lock_guard r1(rlock);
    std::lock_guard r2(rlock);
  }
  sem.release();
  bsem.acquire();
  bsem.release();
  value.set_value(11);
  array.set(2, 33);
  shm.buf()[0] = std::byte{0x5a};
  queue.put(1);
  simple.put(2);
  joinable.put(3);
  conn.send(std::string("over the pipe"));
  {
    std::unique_lock g(cond);
    cond.notify_all();
  }
  barrier.wait();
  event.set();
}

TEST_P(ProcessTest, EveryKindOfSharedObjectIsTheSameInTheChild) {
  Shared s;
  auto shm = concur::SharedMemory::create(64, {.unlink_on_destroy = true});
  auto [mine, theirs] = concur::Pipe();
  Process p(opts(), use_everything, s.lock, s.rlock, s.sem, s.bsem, s.event, s.cond, s.barrier,
            s.value, s.array, shm, s.queue, s.simple, s.joinable, std::move(theirs));
  EXPECT_TRUE(theirs.closed());  // given away
  p.start();
  EXPECT_TRUE(s.sem.acquire(60s));
  s.barrier.wait();
  EXPECT_TRUE(s.event.wait(60s));
  EXPECT_EQ(s.value.value(), 11);
  EXPECT_EQ(s.array.get(2), 33);
  EXPECT_EQ(shm.buf()[0], std::byte{0x5a});
  EXPECT_EQ(s.queue.get(), 1);
  EXPECT_EQ(s.simple.get(), 2);
  EXPECT_EQ(s.joinable.get(), 3);
  EXPECT_EQ(mine.recv<std::string>(), "over the pipe");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  // The child's end was the only other copy: its exit is our EOF.
  EXPECT_THROW(mine.recv<std::string>(), concur::EOFError);
}

void add_to_all(std::vector<concur::Value<int>> values) {
  for (auto& v : values) v.set_value(v.value() + 1);
}

TEST_P(ProcessTest, MoreSharedObjectsThanOneHandShakeCarries) {
  std::vector<concur::Value<int>> values;
  for (int i = 0; i < 40; ++i) values.emplace_back(i);
  Process p(opts(), add_to_all, values);
  p.start();
  p.join();
  ASSERT_EQ(p.exitcode(), 0);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(values[static_cast<std::size_t>(i)].value(), i + 1);
}

void sum_into(std::vector<std::uint64_t> big, concur::Value<std::uint64_t> out) {
  std::uint64_t s = 0;
  for (auto x : big) s += x;
  out.set_value(s);
}

TEST_P(ProcessTest, LargeArgumentsTravel) {
  std::vector<std::uint64_t> big(std::size_t{1} << 20);  // 8 MiB: too big for a datagram
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = i;
  concur::Value<std::uint64_t> out(0);
  Process p(opts(), sum_into, big, out);
  p.start();
  p.join();
  ASSERT_EQ(p.exitcode(), 0);
  EXPECT_EQ(out.value(), (std::uint64_t{1} << 20) * ((std::uint64_t{1} << 20) - 1) / 2);
}

void wait_for_event(concur::Event go, concur::Value<int> out) {
  go.wait();
  out.set_value(1);
}

TEST_P(ProcessTest, ArgumentsOutliveTheParentsObjects) {
  concur::Value<int> out(0);
  concur::Event go;
  std::optional<Process> p;
  {
    concur::Event temp = go;
    concur::Value<int> temp_out = out;
    p.emplace(opts(), wait_for_event, temp, temp_out);
  }
  p->start();
  go.set();
  p->join();
  EXPECT_EQ(p->exitcode(), 0);
  EXPECT_EQ(out.value(), 1);
}

// ---------------------------------------------------------------- lifetime and misuse
TEST(Process, StartTwiceJoinBeforeStartAndFriendsThrow) {
  Process p(sleep_forever);
  EXPECT_THROW(p.join(), concur::InvalidStateError);
  EXPECT_THROW(p.join(1ms), concur::InvalidStateError);
  EXPECT_THROW(p.terminate(), concur::InvalidStateError);
  EXPECT_THROW(p.kill(), concur::InvalidStateError);
  p.start();
  EXPECT_THROW(p.start(), concur::InvalidStateError);
  EXPECT_THROW(p.set_daemon(true), concur::InvalidStateError);
  EXPECT_THROW(p.close(), concur::InvalidStateError);  // still running
  p.kill();
  p.join();
  p.close();
  p.close();
  EXPECT_THROW(p.start(), concur::InvalidStateError);
  EXPECT_THROW(p.join(), concur::InvalidStateError);
  EXPECT_THROW(p.is_alive(), concur::InvalidStateError);
}

bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

TEST(Process, DestroyingARunningProcessTerminatesAndReapsIt) {
  for (StartMethod m : kMethods) {
    pid_t pid;
    {
      Process p({.start_method = m}, sleep_forever);
      p.start();
      pid = *p.pid();
      ASSERT_TRUE(p.is_alive());
    }
    // Our own children are checked by the census; a forked child belongs to a server, so
    // look at the pid itself (the server reaped it before the destructor returned).
    if (m == StartMethod::spawn) {
      EXPECT_TRUE(gone(pid));
    }
  }
}

void ignore_sigterm_forever(concur::Event ready) {
  ::signal(SIGTERM, SIG_IGN);
  ready.set();
  sleep_forever();
}

TEST(Process, DestroyingAChildThatIgnoresSigtermStillReapsIt) {
  concur::Event ready;
  {
    Process p(ignore_sigterm_forever, ready);
    p.start();
    ASSERT_TRUE(ready.wait(60s));
    p.terminate();
    EXPECT_FALSE(p.join(50ms));  // SIGTERM is ignored
  }  // the destructor escalates to SIGKILL after its grace second; the census checks
}

TEST(Process, MovedProcessKeepsRunningAndMovedFromThrows) {
  Process a(sleep_forever);
  a.start();
  Process b(std::move(a));
  EXPECT_TRUE(b.is_alive());
  EXPECT_THROW(a.is_alive(), concur::InvalidStateError);
  Process c(sleep_forever);
  c = std::move(b);  // c's own (never started) process goes
  EXPECT_TRUE(c.is_alive());
  c.kill();
  c.join();
  EXPECT_EQ(c.exitcode(), -SIGKILL);
}

TEST(Process, ConcurrentJoinAndTerminate) {
  Process p(sleep_forever);
  p.start();
  std::thread joiner([&p] { p.join(); });
  p.terminate();
  joiner.join();
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST(Process, SentinelIsReadableOnceItEnds) {
  Process p(sleep_forever);
  EXPECT_EQ(p.sentinel(), -1);
  p.start();
  int fd = p.sentinel();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(concur::detail::wait_readable(fd, 0));
  p.kill();
  EXPECT_TRUE(concur::detail::wait_readable(fd, -1));
  p.join();
  EXPECT_EQ(p.sentinel(), -1);
}

TEST(Process, DefaultNamesCountUp) {
  Process a(sleep_forever);
  Process b(sleep_forever);
  ASSERT_EQ(a.name().rfind("Process-", 0), 0u);
  int na = std::stoi(a.name().substr(8));
  EXPECT_EQ(b.name(), "Process-" + std::to_string(na + 1));
  b.set_name("renamed");
  EXPECT_EQ(b.name(), "renamed");
}

TEST(Process, MainProcessIdentity) {
  EXPECT_EQ(concur::current_process().name(), "MainProcess");
  EXPECT_EQ(concur::current_process().pid(), ::getpid());
  EXPECT_FALSE(concur::current_process().daemon());
  EXPECT_TRUE(concur::current_process().identity().empty());
  EXPECT_FALSE(concur::parent_process().has_value());
}

void start_grandchild(Queue<std::string> q) {
  Process g(report_identity, q);
  q.put(g.name());
  g.start();
  g.join();
}

TEST(Process, GrandchildrenAreNamedAfterTheirParent) {
  Queue<std::string> q;
  Process p({.name = "Process-77"}, start_grandchild, q);  // a name, not an identity
  p.start();
  std::string grandchild = q.get();
  EXPECT_EQ(grandchild.rfind("Process-", 0), 0u);
  EXPECT_NE(grandchild.find(':'), std::string::npos);
  EXPECT_EQ(q.get(), grandchild);
  q.get();  // pid
  EXPECT_EQ(q.get(), "Process-77");
  q.get();
  q.get();
  q.get();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

// ---------------------------------------------------------------- daemons
void try_to_start_a_child(Queue<std::string> q) {
  try {
    Process c(sleep_forever);
    c.start();
    q.put("started");
  } catch (const concur::InvalidStateError&) {
    q.put("refused");
  }
}

TEST(Process, DaemonicProcessesHaveNoChildren) {
  Queue<std::string> q;
  Process d({.daemon = true}, try_to_start_a_child, q);
  EXPECT_TRUE(d.daemon());
  d.start();
  EXPECT_EQ(q.get(), "refused");
  d.join();
  EXPECT_EQ(d.exitcode(), 0);
}

void start_daemon_then_crash(Queue<int> q) {
  Process d({.daemon = true}, sleep_forever);
  d.start();
  q.put(*d.pid());
  ::_exit(5);  // no destructor: only the watchdog can end the daemon
}

TEST(Process, ADaemonEndsWithItsParentEvenACrashedOne) {
  Queue<int> q;
  Process middle({.start_method = StartMethod::spawn}, start_daemon_then_crash, q);
  middle.start();
  pid_t daemon_pid = q.get();
  middle.join();
  EXPECT_EQ(middle.exitcode(), 5);
  while (!gone(daemon_pid)) std::this_thread::sleep_for(5ms);
}

// ---------------------------------------------------------------- subclass
class Squarer : public concur::ProcessSubclass<Squarer> {
 public:
  Squarer() = default;
  Squarer(int n, Queue<long> out, StartMethod m)
      : ProcessSubclass({.start_method = m}), n_(n), out_(std::move(out)) {}
  void run() override {
    out_.put(static_cast<long>(n_) * n_);
    out_.put(*pid() == ::getpid() ? 1 : 0);
    out_.put(name() == concur::current_process().name() ? 1 : 0);
  }
  template <class A>
  void serialize(A& ar) {
    ar(n_, out_);
  }

 private:
  int n_ = 0;
  Queue<long> out_;
};

TEST_P(ProcessTest, SubclassRunsItsRunWithItsFields) {
  Queue<long> out;
  Squarer s(12, out, GetParam());
  s.set_name("squarer");
  s.start();
  EXPECT_EQ(out.get(), 144);
  EXPECT_EQ(out.get(), 1);
  EXPECT_EQ(out.get(), 1);
  s.join();
  EXPECT_EQ(s.exitcode(), 0);
}

class Stateless : public concur::ProcessSubclass<Stateless> {
 public:
  using ProcessSubclass::ProcessSubclass;
  void run() override { std::exit(9); }
};

TEST_P(ProcessTest, SubclassWithoutState) {
  Stateless s({.start_method = GetParam()});
  s.start();
  s.join();
  EXPECT_EQ(s.exitcode(), 9);
}

// ---------------------------------------------------------------- the hand-off machinery
TEST(Handoff, AdoptedDescriptorsAreMatchedToTheirSlots) {
  namespace h = concur::detail::handoff;
  int a = ::memfd_create("handoff-a", MFD_CLOEXEC);
  int b = ::memfd_create("handoff-b", MFD_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  h::Exporter ex;
  h::FdRef ra = ex.add(a, false), rb = ex.add(b, false);
  EXPECT_EQ(ra.slot, 0);
  EXPECT_EQ(rb.slot, 1);
  EXPECT_EQ(ex.add(a, false).slot, 0);  // the same file twice: one slot
  std::vector<concur::detail::UniqueFd> received;
  // Handed over in the wrong order: matching goes by identity, not position.
  received.emplace_back(::fcntl(b, F_DUPFD_CLOEXEC, 3));
  received.emplace_back(::fcntl(a, F_DUPFD_CLOEXEC, 3));
  h::adopt_received_fds(std::move(received));
  {
    h::Importer im(ex.passed_ids());
    int fa = im.peek(ra), fb = im.peek(rb);
    ASSERT_GE(fa, 0);
    ASSERT_GE(fb, 0);
    EXPECT_EQ(h::file_id(fa), h::file_id(a));
    EXPECT_EQ(h::file_id(fb), h::file_id(b));
    concur::detail::UniqueFd taken = im.take(ra);
    EXPECT_EQ(taken.get(), fa);
    concur::detail::UniqueFd again = im.take(ra);  // taken already: a duplicate
    EXPECT_NE(again.get(), fa);
    EXPECT_EQ(h::file_id(again.get()), h::file_id(a));
  }  // the Importer closes what nobody took (fb); `taken` and `again` close here
  ex.clear();
  ::close(a);
  ::close(b);
}

TEST(Handoff, WithoutAnExporterDescriptorsAreNamedByPidAndNumber) {
  namespace h = concur::detail::handoff;
  int a = ::memfd_create("handoff-proc", MFD_CLOEXEC);
  ASSERT_GE(a, 0);
  h::FdRef ref = h::export_fd(a, false);
  EXPECT_EQ(ref.slot, -1);
  EXPECT_EQ(ref.pid, ::getpid());
  EXPECT_EQ(ref.fd, a);
  concur::detail::UniqueFd reopened = h::import_fd(ref, O_RDWR);  // through /proc
  EXPECT_NE(reopened.get(), a);
  EXPECT_EQ(h::file_id(reopened.get()), h::file_id(a));
  ::close(a);
  EXPECT_THROW(h::import_fd(ref, O_RDWR), concur::OSError);
}

}  // namespace
