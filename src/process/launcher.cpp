// Start methods: spawn (posix_spawn of /proc/self/exe), forkserver (a shared server),
// fork (a per-launcher zygote), plus the parent side of the bootstrap hand-shake.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "concur/detail/process_launcher.hpp"
#include "concur/errors.hpp"
#include "process/internal.hpp"
#include "process/server_protocol.hpp"

extern char** environ;

namespace concur {

const char* to_string(StartMethod m) noexcept {
  switch (m) {
    case StartMethod::fork: return "fork";
    case StartMethod::spawn: return "spawn";
    case StartMethod::forkserver: return "forkserver";
  }
  return "?";
}

}  // namespace concur

namespace concur::detail {

namespace {

int sys_pidfd_open(pid_t pid) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

ExitStatus status_from_wait(int st) {
  ExitStatus s;
  s.known = true;
  if (WIFEXITED(st)) {
    s.exit_code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    s.signal = WTERMSIG(st);
  } else {
    s.known = false;
  }
  return s;
}

// argv[0] of this program, so `ps` shows workers under the program's own name.
const std::string& program_name() {
  static const std::string name = [] {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string first;
    std::getline(in, first, '\0');
    return first.empty() ? std::string("concur-worker") : first;
  }();
  return name;
}

// posix_spawn of the executable with the bootstrap marker and `fd` as descriptor 3.
pid_t spawn_library_process(const std::string& exe, const char* role, int fd) {
  // dup2(3, 3) would keep close-on-exec set: make sure the source is another number.
  UniqueFd moved;
  if (fd == 3) {
    int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (d < 0) throw_os_error("fcntl(F_DUPFD_CLOEXEC)", errno);
    moved = UniqueFd(d);
    fd = d;
  }
  std::string marker = std::string(kBootstrapEnv) + "=" + role + ":3";
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, kBootstrapEnv, std::strlen(kBootstrapEnv)) != 0) envp.push_back(*e);
  envp.push_back(marker.data());
  envp.push_back(nullptr);
  std::string argv0 = program_name();
  char* argv[] = {argv0.data(), nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd, 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw_os_error("posix_spawn " + exe, rc);
  return pid;
}

std::string default_executable() { return "/proc/self/exe"; }

// ---------------------------------------------------------------- the shared fork server
struct SharedServer {
  std::mutex mu;
  UniqueFd master;
  std::unique_ptr<ChildProcess> process;
  pid_t owner = 0;  // the process that started it (a fork of ours must start its own)
  std::uint64_t generation = 0;  // bumped at every start
};

std::atomic<SharedServer*> g_shared_server{nullptr};

SharedServer& shared_server() {  // never destroyed: used until exit
  SharedServer* s = g_shared_server.load(std::memory_order_acquire);
  if (!s) {
    auto* fresh = new SharedServer;
    if (g_shared_server.compare_exchange_strong(s, fresh, std::memory_order_acq_rel)) s = fresh;
    else delete fresh;
  }
  return *s;
}

std::atomic<int> g_persistent_fd{-1};
std::atomic<int> g_persistent_pidfd{-1};
std::atomic<pid_t> g_persistent_pid{0};

// Starts a fork server process (spawned) and returns its master socket.
std::pair<UniqueFd, std::unique_ptr<ChildProcess>> start_server(const std::string& exe) {
  auto [mine, theirs] = make_socket_pair();
  pid_t pid = spawn_library_process(exe, "server", theirs.get());
  theirs.reset();
  int pfd = sys_pidfd_open(pid);
  if (pfd < 0) throw_os_error("pidfd_open", errno);
  auto proc = std::make_unique<ChildProcess>(pid, UniqueFd(pfd), nullptr);
  return {std::move(mine), std::move(proc)};
}

// A new connection to the server through its master socket.
UniqueFd connect_via_master(int master) {
  auto [mine, theirs] = make_socket_pair();
  ServerMsg m{};
  m.kind = ServerMsg::kConnect;
  int fd = theirs.get();
  send_message(master, as_bytes(m), {&fd, 1});
  return std::move(mine);
}

// A connection to the shared server, starting it if needed, and the server's generation.
// `broken_generation`: a connection to that server just broke, so it is dead or dying even
// if its exit is not visible yet: replace it (unless another pool already did).
std::pair<UniqueFd, std::uint64_t> connect_shared_server(std::uint64_t broken_generation = 0) {
  SharedServer& s = shared_server();
  std::lock_guard lock(s.mu);
  if (broken_generation && broken_generation == s.generation && s.process &&
      s.owner == ::getpid() && !s.process->reaped()) {
    s.process->send_signal(SIGKILL);
    s.process->wait();
  }
  bool usable = s.master && s.owner == ::getpid() && s.process && !s.process->reaped() &&
                !wait_readable(s.process->pidfd(), 0);
  if (usable) {
    try {
      return {connect_via_master(s.master.get()), s.generation};
    } catch (const OSError&) {
      usable = false;  // the server died just now: start another
    }
  }
  if (s.owner != ::getpid()) {
    // Inherited through a fork of the program: the server belongs to the parent.
    s.master.release();
    static_cast<void>(s.process.release());  // not ours to reap: forget the handle
  }
  g_persistent_fd.store(-1);
  g_persistent_pidfd.store(-1);
  g_persistent_pid.store(0);
  s.process.reset();
  s.master.reset();
  auto [master, proc] = start_server(default_executable());
  s.master = std::move(master);
  s.process = std::move(proc);
  s.owner = ::getpid();
  ++s.generation;
  g_persistent_fd.store(s.master.get());
  g_persistent_pidfd.store(s.process->pidfd());
  g_persistent_pid.store(s.process->pid());
  return {connect_via_master(s.master.get()), s.generation};
}

}  // namespace

void reset_launcher_state_after_fork() noexcept {
  // The parent's server is not this process's: forget it (its descriptors are closed).
  g_shared_server.store(nullptr, std::memory_order_relaxed);
  g_persistent_fd.store(-1, std::memory_order_relaxed);
  g_persistent_pidfd.store(-1, std::memory_order_relaxed);
  g_persistent_pid.store(0, std::memory_order_relaxed);
}

bool is_library_persistent_fd(int fd) noexcept {
  return fd >= 0 && (fd == g_persistent_fd.load(std::memory_order_relaxed) ||
                     fd == g_persistent_pidfd.load(std::memory_order_relaxed));
}
bool is_library_persistent_pid(pid_t pid) noexcept {
  return pid > 0 && pid == g_persistent_pid.load(std::memory_order_relaxed);
}

const std::vector<std::byte>& executable_identity() { return self_build_id(); }

pid_t fork_server_pid() noexcept { return g_persistent_pid.load(std::memory_order_relaxed); }

std::string ExitStatus::describe() const {
  if (!known) return "unknown status";
  if (signal) return "signal " + signal_name(signal) + " (" + std::to_string(signal) + ")";
  return "exit code " + std::to_string(exit_code);
}

// ---------------------------------------------------------------- server connection
// One connection to a fork server (shared or zygote). Fork requests and relayed exit
// statuses share it; a mutex serialises requests, statuses are kept until asked for.
class ServerConnection {
 public:
  explicit ServerConnection(UniqueFd sock, std::uint64_t generation = 0)
      : sock_(std::move(sock)), generation_(generation) {}
  // Which start of the shared server this connects to (0: a zygote or private server).
  std::uint64_t generation() const noexcept { return generation_; }

  std::pair<pid_t, UniqueFd> fork_child(int child_end) {
    std::lock_guard lock(mu_);
    if (dead_) throw_os_error("fork server is gone", EPIPE);
    ServerMsg req{};
    req.kind = ServerMsg::kFork;
    req.req_id = ++next_req_;
    send_message(sock_.get(), as_bytes(req), {&child_end, 1});
    for (;;) {
      ReceivedMessage m;
      if (!receive_message(sock_.get(), m)) {
        dead_ = true;
        throw_os_error("fork server closed the connection", EPIPE);
      }
      ServerMsg r;
      if (!parse(m, r)) continue;
      if (r.kind == ServerMsg::kExited) {
        statuses_[r.pid] = r.status;
        continue;
      }
      if (r.kind == ServerMsg::kForked && r.req_id == req.req_id) {
        if (r.err != 0) throw_os_error("fork in the fork server", r.err);
        if (m.fds.empty()) throw_os_error("fork server sent no pidfd", EPROTO);
        return {r.pid, std::move(m.fds[0])};
      }
    }
  }

  // The relayed status of pid, reading what the server sent so far (waiting up to
  // timeout_ms for more). nullopt: not (yet) known.
  std::optional<ExitStatus> status_of(pid_t pid, int timeout_ms) {
    std::lock_guard lock(mu_);
    for (;;) {
      auto it = statuses_.find(pid);
      if (it != statuses_.end()) {
        ExitStatus s = status_from_wait(it->second);
        statuses_.erase(it);
        return s;
      }
      if (dead_) return ExitStatus{};  // the server is gone: status unknown
      if (timeout_ms != 0 && !wait_readable(sock_.get(), timeout_ms)) return std::nullopt;
      ReceivedMessage m;
      bool would_block = false;
      if (!receive_message(sock_.get(), m, /*nonblocking=*/true, &would_block)) {
        if (would_block) {
          if (timeout_ms == 0) return std::nullopt;
          continue;
        }
        dead_ = true;
        continue;
      }
      ServerMsg r;
      if (parse(m, r) && r.kind == ServerMsg::kExited) statuses_[r.pid] = r.status;
    }
  }

 private:
  static bool parse(const ReceivedMessage& m, ServerMsg& out) {
    if (m.bytes.size() != sizeof(ServerMsg)) return false;
    std::memcpy(&out, m.bytes.data(), sizeof out);
    return true;
  }

  std::mutex mu_;
  UniqueFd sock_;
  std::uint64_t generation_ = 0;
  bool dead_ = false;
  std::uint64_t next_req_ = 0;
  std::map<pid_t, int> statuses_;
};

// ---------------------------------------------------------------- ChildProcess
ChildProcess::ChildProcess(pid_t pid, UniqueFd pidfd, std::shared_ptr<ServerConnection> server)
    : pid_(pid), pidfd_(std::move(pidfd)), server_(std::move(server)) {}

ChildProcess::~ChildProcess() {
  if (status_) return;
  send_signal(SIGKILL);
  wait();
}

std::optional<ExitStatus> ChildProcess::try_reap() {
  if (status_) return status_;
  if (!server_) {
    siginfo_t si{};
    int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si,
                      WEXITED | WNOHANG);
    if (rc == 0 && si.si_pid != 0) {
      ExitStatus s;
      s.known = true;
      if (si.si_code == CLD_EXITED) s.exit_code = si.si_status;
      else s.signal = si.si_status;
      set_status(s);
    } else if (rc != 0 && errno == ECHILD && wait_readable(pidfd_.get(), 0)) {
      set_status(ExitStatus{});  // reaped by someone else (SIGCHLD ignored?)
    }
    return status_;
  }
  if (!wait_readable(pidfd_.get(), 0)) return std::nullopt;
  if (auto s = server_->status_of(pid_, 0)) set_status(*s);
  return status_;
}

std::optional<ExitStatus> ChildProcess::wait(std::optional<std::chrono::milliseconds> timeout) {
  if (status_) return status_;
  int ms = timeout ? static_cast<int>(timeout->count()) : -1;
  if (!wait_readable(pidfd_.get(), ms)) return std::nullopt;
  if (!server_) {
    for (int i = 0; i < 1000 && !try_reap(); ++i) std::this_thread::yield();
    if (!status_) set_status(ExitStatus{});
    return status_;
  }
  // The server relays the status right after it reaps; allow it a moment.
  if (auto s = server_->status_of(pid_, 2000)) set_status(*s);
  else set_status(ExitStatus{});
  return status_;
}

bool ChildProcess::send_signal(int sig) noexcept {
  if (reaped()) return false;
  return ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) == 0;
}

// ---------------------------------------------------------------- Launcher
std::shared_ptr<Launcher> Launcher::create(StartMethod method, LaunchOptions options) {
  bootstrap_anchor = bootstrap_anchor + 1;  // keep the pre-main hook linked in
  std::shared_ptr<Launcher> l(new Launcher(method, std::move(options)));
  std::string exe = l->options_.executable.empty() ? default_executable() : l->options_.executable;
  if (method == StartMethod::forkserver) {
    if (l->options_.executable.empty()) {
      auto [sock, gen] = connect_shared_server();
      l->server_ = std::make_shared<ServerConnection>(std::move(sock), gen);
    } else {
      // A server of another executable is private to this launcher.
      auto [master, proc] = start_server(exe);
      l->server_ = std::make_shared<ServerConnection>(connect_via_master(master.get()));
      l->zygote_ = std::move(proc);
      l->private_master_ = std::move(master);
    }
  } else if (method == StartMethod::fork) {
    auto [mine, theirs] = make_socket_pair();
    int keep = theirs.get();
    // Whatever sits in stdio buffers now would be written once more by every worker that
    // flushes at exit (Python flushes before forking too).
    std::fflush(nullptr);
    prepare_remote_state_for_fork();
    pid_t pid = ::fork();
    if (pid < 0) throw_os_error("fork", errno);
    if (pid == 0) {
      // The zygote: single-threaded from here on; drop every library descriptor of the
      // parent (other pools' channels and sockets) so it holds none of them open.
      close_library_fds_except({&keep, 1});
      reset_remote_state_after_fork();
      reset_launcher_state_after_fork();
      run_fork_server(keep, /*zygote=*/true);
    }
    theirs.reset();
    int pfd = sys_pidfd_open(pid);
    if (pfd < 0) throw_os_error("pidfd_open", errno);
    l->zygote_ = std::make_unique<ChildProcess>(pid, UniqueFd(pfd), nullptr);
    l->server_ = std::make_shared<ServerConnection>(std::move(mine));
  }
  return l;
}

Launcher::~Launcher() {
  // Closing our connection ends a zygote (or a private server); reap it.
  server_.reset();
  private_master_.reset();
  if (zygote_) zygote_->wait(std::chrono::milliseconds(5000));
}

std::unique_ptr<ChildProcess> Launcher::start(UniqueFd child_end) {
  if (method_ == StartMethod::spawn) return spawn_child(std::move(child_end));
  std::shared_ptr<ServerConnection> server;
  {
    std::lock_guard lock(mu_);
    server = server_;
  }
  try {
    auto [pid, pidfd] = server->fork_child(child_end.get());
    child_end.reset();
    return std::make_unique<ChildProcess>(pid, std::move(pidfd), server);
  } catch (const OSError&) {
    // The shared server died (killed, OOM): start another and try once more. A zygote
    // cannot be replaced (its state is the program's at pool creation), nor can a
    // private server.
    if (method_ != StartMethod::forkserver || !options_.executable.empty()) throw;
    auto [sock, gen] = connect_shared_server(server->generation());
    auto fresh = std::make_shared<ServerConnection>(std::move(sock), gen);
    {
      std::lock_guard lock(mu_);
      server_ = fresh;
    }
    auto [pid, pidfd] = fresh->fork_child(child_end.get());
    child_end.reset();
    return std::make_unique<ChildProcess>(pid, std::move(pidfd), fresh);
  }
}

std::unique_ptr<ChildProcess> Launcher::spawn_child(UniqueFd child_end) {
  std::string exe = options_.executable.empty() ? default_executable() : options_.executable;
  pid_t pid = spawn_library_process(exe, "child", child_end.get());
  child_end.reset();
  int pfd = sys_pidfd_open(pid);
  if (pfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw_os_error("pidfd_open", err);
  }
  return std::make_unique<ChildProcess>(pid, UniqueFd(pfd), nullptr);
}

// ---------------------------------------------------------------- hand-shake (parent)
void send_hello(int control, const Hello& hello, std::span<const int> fds) {
  std::vector<std::byte> out;
  auto put = [&](const void* p, std::size_t n) {
    auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  std::uint64_t magic = kHelloMagic;
  std::uint32_t role = static_cast<std::uint32_t>(hello.role);
  std::int32_t owner = hello.owner;
  std::uint64_t idn = hello.build_id.size(), pn = hello.payload.size();
  put(&magic, 8);
  put(&role, 4);
  put(&owner, 4);
  put(&idn, 8);
  put(hello.build_id.data(), hello.build_id.size());
  put(&pn, 8);
  put(hello.payload.data(), hello.payload.size());
  send_message(control, out, fds);
}

OneShot start_call_once(Launcher& launcher, std::span<const std::byte> encoded_call) {
  auto [mine, theirs] = make_socket_pair();
  OneShot shot;
  shot.child = launcher.start(std::move(theirs));
  Hello hello;
  hello.role = ChildRole::call_once;
  hello.owner = ::getpid();
  hello.build_id = executable_identity();
  hello.payload.assign(encoded_call.begin(), encoded_call.end());
  send_hello(mine.get(), hello, {});
  shot.control = std::move(mine);
  return shot;
}

std::optional<std::vector<std::byte>> read_call_outcome(OneShot& shot, int timeout_ms) {
  HelloReply reply;
  if (!receive_hello_reply(shot.control.get(), reply, timeout_ms) ||
      reply.status != HelloStatus::ok)
    return std::nullopt;
  if (!wait_readable(shot.control.get(), timeout_ms)) return std::nullopt;
  ReceivedMessage m;
  if (!receive_message(shot.control.get(), m)) return std::nullopt;
  return std::move(m.bytes);
}

bool receive_hello_reply(int control, HelloReply& out, int timeout_ms) {
  if (!wait_readable(control, timeout_ms)) return false;
  ReceivedMessage m;
  if (!receive_message(control, m)) return false;
  if (m.bytes.size() < 12) return false;
  std::uint32_t st;
  std::int32_t pid;
  std::uint32_t n;
  std::memcpy(&st, m.bytes.data(), 4);
  std::memcpy(&pid, m.bytes.data() + 4, 4);
  std::memcpy(&n, m.bytes.data() + 8, 4);
  out.status = static_cast<HelloStatus>(st);
  out.pid = pid;
  std::size_t len = std::min<std::size_t>(n, m.bytes.size() - 12);
  out.message.assign(reinterpret_cast<const char*>(m.bytes.data()) + 12, len);
  return true;
}

}  // namespace concur::detail
