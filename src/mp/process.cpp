// concur::Process on the process engine's launcher, and the child side of its calls.
#include "concur/process.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <typeinfo>

#include "process/internal.hpp"

namespace concur {

namespace detail {

namespace {

constexpr std::uint32_t kMetaMagic = 0x70636e63;  // "cncp"
// Bodies larger than this go in a memfd passed with the hand-shake rather than in the
// hand-shake datagram, whose size the socket buffer limits (~200 KiB).
constexpr std::size_t kInlineBody = std::size_t{64} << 10;
constexpr std::chrono::milliseconds kTerminateGrace{1000};

int pidfd_open(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Field 22 of /proc/<pid>/stat: when the process started, to tell it from a later process
// that reused its pid.
std::uint64_t start_time_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields after the command: state is field 3; starttime is field 22.
  for (int i = 3; i < 22; ++i) rest >> field;
  std::uint64_t t = 0;
  rest >> t;
  return t;
}

// What this process is (current_process / parent_process).
struct Self {
  std::mutex mu;
  std::string name = "MainProcess";
  std::vector<std::uint32_t> identity;
  bool daemon = false;
  std::uint32_t counter = 0;  // Process objects created here (Python's _process_counter)
  pid_t counter_pid = 0;      // the process the counter belongs to (a fork starts over)
  bool has_parent = false;
  std::string parent_name;
  pid_t parent_pid = 0;
  int parent_pidfd = -1;
};

Self& self() {
  // Never destroyed: used until _exit, by child watchdogs too. A fork (the fork method's
  // zygote) while another thread holds the mutex would leave it locked in every child
  // forked from there, hence the atfork hooks.
  static Self* s = [] {
    auto* fresh = new Self;
    pthread_atfork([] { self().mu.lock(); }, [] { self().mu.unlock(); },
                   [] { self().mu.unlock(); });
    return fresh;
  }();
  return *s;
}

std::string exception_text(std::exception_ptr e) {
  const char* raw = nullptr;
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    what = ex.what();
    raw = typeid(ex).name();
  } catch (...) {
    what = "(not a std::exception)";
    if (const std::type_info* t = abi::__cxa_current_exception_type()) raw = t->name();
  }
  std::string type = raw ? demangle(raw) : std::string("unknown exception");
  return type + ": " + what;
}

void flush_everything() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
  }
  std::fflush(nullptr);
}

[[noreturn]] void leave(int code) noexcept {
  flush_everything();
  ::_exit(code);
}

// Child-side state built by ChildStart.
struct ChildMeta {
  std::vector<std::byte> external_body;
  std::optional<Reader> body_reader;
};
ChildMeta& child_meta() {
  static ChildMeta* m = new ChildMeta;
  return *m;
}

}  // namespace

// ---------------------------------------------------------------- child side
ChildStart::ChildStart(Reader& in) noexcept {
  try {
    if (decode<std::uint32_t>(in) != kMetaMagic)
      throw SerializationError("concur: not a Process hand-shake");
    auto name = decode<std::string>(in);
    auto identity = decode<std::vector<std::uint32_t>>(in);
    bool daemon = decode<bool>(in);
    auto parent_pid = decode<std::int32_t>(in);
    auto parent_start = decode<std::uint64_t>(in);
    auto parent_name = decode<std::string>(in);
    auto ids = decode<std::vector<handoff::FileId>>(in);
    bool body_inline = decode<bool>(in);
    handoff::FdRef body_ref{};
    std::uint64_t body_len = 0;
    if (!body_inline) {
      body_ref = decode<handoff::FdRef>(in);
      body_len = decode<std::uint64_t>(in);
    }

    Self& s = self();
    {
      std::lock_guard lock(s.mu);
      s.name = std::move(name);
      s.identity = std::move(identity);
      s.daemon = daemon;
      s.counter = 0;
      s.counter_pid = ::getpid();
      s.has_parent = true;
      s.parent_name = std::move(parent_name);
      s.parent_pid = parent_pid;
      int fd = pidfd_open(parent_pid);
      // The pidfd names the parent only if the parent is still the process that started us.
      if (fd >= 0 && start_time_of(parent_pid) != parent_start) {
        ::close(fd);
        fd = -1;
      }
      s.parent_pidfd = fd;
    }
    importer_.emplace(std::move(ids));
    if (!body_inline) {
      UniqueFd fd = importer_->take(body_ref);
      if (!fd) throw SerializationError("concur: the arguments of the Process did not arrive");
      ChildMeta& m = child_meta();
      m.external_body.resize(static_cast<std::size_t>(body_len));
      std::size_t got = 0;
      while (got < m.external_body.size()) {
        ssize_t n = ::pread(fd.get(), m.external_body.data() + got, m.external_body.size() - got,
                            static_cast<off_t>(got));
        if (n <= 0) {
          if (n < 0 && errno == EINTR) continue;
          throw SerializationError("concur: the arguments of the Process were cut short");
        }
        got += static_cast<std::size_t>(n);
      }
      m.body_reader.emplace(m.external_body);
    }
  } catch (...) {
    child_failed_to_start(std::current_exception());
  }
}

Reader& ChildStart::body(Reader& in) noexcept {
  ChildMeta& m = child_meta();
  return m.body_reader ? *m.body_reader : in;
}

void ChildStart::arguments_decoded() noexcept {
  importer_->close_unclaimed();
  ChildMeta& m = child_meta();
  m.body_reader.reset();
  std::vector<std::byte>().swap(m.external_body);
  Self& s = self();
  if (s.daemon) {
    int fd = s.parent_pidfd;
    if (fd < 0) {
      ::kill(::getpid(), SIGTERM);  // the parent is gone already
      return;
    }
    try {
      // A daemonic process ends with its parent, however the parent ends.
      std::thread([fd] {
        pollfd p{fd, POLLIN, 0};
        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        ::kill(::getpid(), SIGTERM);
      }).detach();
    } catch (...) {
    }
  }
}

const std::string& ChildStart::name() const noexcept { return self().name; }
bool ChildStart::daemon() const noexcept { return self().daemon; }

void child_failed_to_start(std::exception_ptr e) noexcept {
  try {
    std::string text = "Process " + self().name + ": could not receive its target and arguments: " +
                       exception_text(e) + "\n";
    flush_everything();
    emit_diagnostic(text.c_str());
  } catch (...) {
  }
  leave(1);
}

void child_run(void (*body)(void*), void* ctx) noexcept {
  try {
    body(ctx);
  } catch (...) {
    try {
      std::string text = "Process " + self().name + ":\n" +
                         exception_text(std::current_exception()) + "\n";
      flush_everything();
      emit_diagnostic(text.c_str());
    } catch (...) {
    }
    leave(1);
  }
  leave(0);
}

void give_away(Connection&& c) noexcept { c.close(); }

// ---------------------------------------------------------------- parent side
class ProcessImpl {
 public:
  enum class State { created, started, ended, closed };

  std::mutex mu;
  std::string name;
  bool daemon = false;
  StartMethod method = StartMethod::forkserver;
  std::vector<std::uint32_t> identity;
  PreparedCall call;
  State state = State::created;
  bool is_self = false;  // the object a Process subclass runs in its own child
  std::shared_ptr<Launcher> launcher;
  std::unique_ptr<ChildProcess> child;
  UniqueFd control;
  pid_t pid = 0;
  std::optional<ExitStatus> status;

  ProcessImpl(ProcessOptions& o, PreparedCall c) : method(o.start_method), call(std::move(c)) {
    Self& s = self();
    std::lock_guard lock(s.mu);
    if (s.counter_pid != ::getpid()) {  // a fork of the program counts afresh
      s.counter_pid = ::getpid();
      s.counter = 0;
    }
    identity = s.identity;
    identity.push_back(++s.counter);
    daemon = o.daemon.value_or(s.daemon);
    if (!o.name.empty()) {
      name = std::move(o.name);
    } else {
      name = "Process-";
      for (std::size_t i = 0; i < identity.size(); ++i) {
        if (i) name += ':';
        name += std::to_string(identity[i]);
      }
    }
  }

  // The hand-shake payload: [entry][meta][body], the body possibly in a memfd.
  std::vector<std::byte> payload(const Process& owner, std::optional<UniqueFd>& body_fd) {
    std::vector<std::byte> state_bytes;
    std::span<const std::byte> body = call.body;
    if (call.encode_self) {
      Writer sw;
      {
        handoff::ExportScope scope(call.exporter);
        call.encode_self(sw, owner);
      }
      auto b = sw.bytes();
      state_bytes.assign(b.begin(), b.end());
      body = state_bytes;
    }
    bool body_inline = body.size() <= kInlineBody;
    handoff::FdRef body_ref{};
    if (!body_inline) {
      int fd = ::memfd_create("concur-process-args", MFD_CLOEXEC);
      if (fd < 0) throw_os_error("memfd_create", errno);
      UniqueFd mfd(fd);
      std::size_t put = 0;
      while (put < body.size()) {
        ssize_t n = ::pwrite(fd, body.data() + put, body.size() - put, static_cast<off_t>(put));
        if (n < 0) {
          if (errno == EINTR) continue;
          throw_os_error("writing a Process's arguments", errno);
        }
        put += static_cast<std::size_t>(n);
      }
      handoff::ExportScope scope(call.exporter);
      body_ref = handoff::export_fd(fd, /*must_pass=*/false);
      body_fd = std::move(mfd);
    }
    Self& s = self();
    std::string parent_name;
    {
      std::lock_guard lock(s.mu);
      parent_name = s.name;
    }
    Writer w;
    w.write_bytes(call.entry.data(), call.entry.size());
    encode(w, kMetaMagic);
    encode(w, name);
    encode(w, identity);
    encode(w, daemon);
    encode(w, static_cast<std::int32_t>(::getpid()));
    encode(w, start_time_of(::getpid()));
    encode(w, parent_name);
    encode(w, call.exporter.passed_ids());
    encode(w, body_inline);
    if (body_inline) {
      w.write_bytes(body.data(), body.size());
    } else {
      encode(w, body_ref);
      encode(w, static_cast<std::uint64_t>(body.size()));
    }
    auto b = w.bytes();
    return {b.begin(), b.end()};
  }

  // Called with mu held: the process has ended (or is being forgotten); keep the status,
  // release everything else.
  void release_locked() noexcept {
    child.reset();
    control.reset();
    launcher.reset();
    call.exporter.clear();
    if (state == State::started) state = State::ended;
  }

  // Called with mu held: reaps the child if it has ended, without blocking.
  void poll_locked() {
    if (state != State::started || !child) return;
    if (!wait_readable(child->pidfd(), 0)) return;
    status = child->wait();  // it has ended; for a forked child the status is relayed
    release_locked();
  }

  // A duplicate of the pidfd, to wait on without holding mu.
  UniqueFd wait_handle_locked() {
    int fd = ::fcntl(child->pidfd(), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) throw_os_error("dup of a pidfd", errno);
    return UniqueFd(fd);
  }
};

}  // namespace detail

using detail::ProcessImpl;

Process::Process(ProcessOptions options, detail::PreparedCall call)
    : impl_(std::make_unique<ProcessImpl>(options, std::move(call))) {}

Process::Process(SubclassTag, ProcessOptions options,
                 void (*encode_self)(detail::Writer&, const Process&), std::vector<std::byte> entry) {
  detail::PreparedCall call;
  call.entry = std::move(entry);
  call.encode_self = encode_self;
  impl_ = std::make_unique<ProcessImpl>(options, std::move(call));
}

Process::Process(Process&& other) noexcept = default;

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Process dying(std::move(*this));  // terminates and reaps at the end of this scope
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Process::~Process() {
  if (!impl_) return;
  ProcessImpl& m = *impl_;
  std::unique_lock lock(m.mu);
  if (m.state != ProcessImpl::State::started || !m.child) return;
  m.poll_locked();
  if (m.state != ProcessImpl::State::started) return;
  m.child->send_signal(SIGTERM);
  if (!detail::wait_readable(m.child->pidfd(), static_cast<int>(detail::kTerminateGrace.count())))
    m.child->send_signal(SIGKILL);
  try {
    m.status = m.child->wait();
  } catch (...) {
  }
  m.release_locked();
}

ProcessImpl& Process::impl(const char* op) const {
  if (!impl_)
    throw InvalidStateError(std::string("concur: Process.") + op + ": the Process was moved from");
  return *impl_;
}

void Process::start() {
  ProcessImpl& m = impl("start");
  std::lock_guard lock(m.mu);
  if (m.state == ProcessImpl::State::closed)
    throw InvalidStateError("concur: Process.start: the process object is closed");
  if (m.state != ProcessImpl::State::created || m.is_self)
    throw InvalidStateError("concur: Process.start: cannot start a process twice");
  if (current_process().daemon())
    throw InvalidStateError("concur: Process.start: daemonic processes are not allowed to have "
                            "children");
  std::optional<detail::UniqueFd> body_fd;
  std::vector<std::byte> payload = m.payload(*this, body_fd);
  auto launcher = detail::Launcher::create(m.method);
  auto [mine, theirs] = detail::make_socket_pair();
  std::unique_ptr<detail::ChildProcess> child = launcher->start(std::move(theirs));
  detail::Hello hello;
  hello.role = detail::ChildRole::call_once;
  hello.owner = ::getpid();
  hello.build_id = detail::executable_identity();
  hello.payload = std::move(payload);
  try {
    std::vector<int> fds = m.call.exporter.passed_fds();
    detail::send_hello(mine.get(), hello, fds);
  } catch (...) {
    child->send_signal(SIGKILL);
    child->wait();
    child.reset();
    throw;
  }
  // The kernel holds the passed descriptors now; ours were only there to be sent.
  m.call.exporter.release_passed();
  m.launcher = std::move(launcher);
  m.child = std::move(child);
  m.control = std::move(mine);
  m.pid = m.child->pid();
  m.state = ProcessImpl::State::started;
}

void Process::join() {
  while (!join_for(std::chrono::hours(24))) {
  }
}

bool Process::join_for(std::chrono::nanoseconds timeout) {
  ProcessImpl& m = impl("join");
  detail::UniqueFd handle;
  {
    std::lock_guard lock(m.mu);
    if (m.state == ProcessImpl::State::closed)
      throw InvalidStateError("concur: Process.join: the process object is closed");
    if (m.state == ProcessImpl::State::created || m.is_self)
      throw InvalidStateError("concur: Process.join: can only join a started process");
    if (m.state == ProcessImpl::State::ended) return true;
    m.poll_locked();
    if (m.state == ProcessImpl::State::ended) return true;
    handle = m.wait_handle_locked();
  }
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  if (ms > (1 << 30)) ms = 1 << 30;
  bool ended = detail::wait_readable(handle.get(), static_cast<int>(ms < 0 ? 0 : ms));
  std::lock_guard lock(m.mu);
  if (m.state == ProcessImpl::State::started && ended) m.poll_locked();
  return m.state != ProcessImpl::State::started;
}

bool Process::is_alive() {
  ProcessImpl& m = impl("is_alive");
  std::lock_guard lock(m.mu);
  if (m.is_self) return true;
  if (m.state == ProcessImpl::State::closed)
    throw InvalidStateError("concur: Process.is_alive: the process object is closed");
  m.poll_locked();
  return m.state == ProcessImpl::State::started;
}

std::optional<pid_t> Process::pid() const {
  ProcessImpl& m = impl("pid");
  std::lock_guard lock(m.mu);
  if (m.is_self) return ::getpid();
  if (m.pid == 0) return std::nullopt;
  return m.pid;
}

std::optional<int> Process::exitcode() {
  ProcessImpl& m = impl("exitcode");
  std::lock_guard lock(m.mu);
  m.poll_locked();
  if (!m.status || !m.status->known) return std::nullopt;
  return m.status->exitcode();
}

void Process::terminate() {
  ProcessImpl& m = impl("terminate");
  std::lock_guard lock(m.mu);
  if (m.state == ProcessImpl::State::created)
    throw InvalidStateError("concur: Process.terminate: the process was not started");
  if (m.state == ProcessImpl::State::started && m.child) m.child->send_signal(SIGTERM);
}

void Process::kill() {
  ProcessImpl& m = impl("kill");
  std::lock_guard lock(m.mu);
  if (m.state == ProcessImpl::State::created)
    throw InvalidStateError("concur: Process.kill: the process was not started");
  if (m.state == ProcessImpl::State::started && m.child) m.child->send_signal(SIGKILL);
}

void Process::close() {
  ProcessImpl& m = impl("close");
  std::lock_guard lock(m.mu);
  if (m.state == ProcessImpl::State::closed) return;
  m.poll_locked();
  if (m.state == ProcessImpl::State::started)
    throw InvalidStateError("concur: Process.close: the process is still running");
  m.release_locked();
  m.call = {};
  m.state = ProcessImpl::State::closed;
}

const std::string& Process::name() const {
  ProcessImpl& m = impl("name");
  std::lock_guard lock(m.mu);
  return m.name;
}

void Process::set_name(std::string name) {
  ProcessImpl& m = impl("set_name");
  std::lock_guard lock(m.mu);
  m.name = std::move(name);
}

bool Process::daemon() const {
  ProcessImpl& m = impl("daemon");
  std::lock_guard lock(m.mu);
  return m.daemon;
}

void Process::set_daemon(bool daemon) {
  ProcessImpl& m = impl("set_daemon");
  std::lock_guard lock(m.mu);
  if (m.state != ProcessImpl::State::created || m.is_self)
    throw InvalidStateError("concur: Process.daemon: the process has already started");
  m.daemon = daemon;
}

StartMethod Process::start_method() const { return impl("start_method").method; }

int Process::sentinel() const {
  ProcessImpl& m = impl("sentinel");
  std::lock_guard lock(m.mu);
  return m.child ? m.child->pidfd() : -1;
}

void Process::adopt_self(const std::string& name, bool daemon) noexcept {
  ProcessImpl& m = *impl_;
  std::lock_guard lock(m.mu);
  m.name = name;
  m.daemon = daemon;
  m.is_self = true;
}

// ---------------------------------------------------------------- identity
const std::string& CurrentProcess::name() const noexcept { return detail::self().name; }
void CurrentProcess::set_name(std::string name) {
  auto& s = detail::self();
  std::lock_guard lock(s.mu);
  s.name = std::move(name);
}
pid_t CurrentProcess::pid() const noexcept { return ::getpid(); }
bool CurrentProcess::daemon() const noexcept {
  auto& s = detail::self();
  std::lock_guard lock(s.mu);
  return s.daemon;
}
const std::vector<std::uint32_t>& CurrentProcess::identity() const noexcept {
  return detail::self().identity;
}

CurrentProcess& current_process() {
  static CurrentProcess c;
  return c;
}

std::optional<ParentProcess> parent_process() {
  auto& s = detail::self();
  std::lock_guard lock(s.mu);
  if (!s.has_parent) return std::nullopt;
  return ParentProcess(s.parent_name, s.parent_pid, s.parent_pidfd);
}

bool ParentProcess::is_alive() const {
  if (pidfd_ < 0) return false;
  return !detail::wait_readable(pidfd_, 0);
}

void ParentProcess::join() const {
  if (pidfd_ < 0) return;
  detail::wait_readable(pidfd_, -1);
}

bool ParentProcess::join_ms(long long ms) const {
  if (pidfd_ < 0) return true;
  if (ms > (1 << 30)) ms = 1 << 30;
  return detail::wait_readable(pidfd_, static_cast<int>(ms < 0 ? 0 : ms));
}

}  // namespace concur
