// Starting library child processes with Python's three start methods. Internal API shared
// by the process pool engine and concur::Process (issue 4).
//
//  - spawn: posix_spawn of /proc/self/exe (vfork-based, safe in a multi-threaded parent).
//    The re-executed program runs its static initialisers, then the library's pre-main
//    hook (src/process/bootstrap.cpp) sees the environment marker and takes the process
//    over; the user's main() never runs in it.
//  - forkserver (default): one single-threaded server per process, itself started like
//    spawn and shared by every pool, forks children on request; descriptors travel with
//    SCM_RIGHTS, exit statuses come back over the same connection.
//  - fork: the same server code, but created by fork() of the calling process when the
//    launcher is created (a "zygote"), so children inherit the program's state as it was
//    then. Every later child is forked from the zygote, which is single-threaded: no
//    child is ever forked from a multi-threaded parent after the launcher exists.
//
// Whatever the method, the child speaks the bootstrap protocol on its control socket (the
// other end of `start()`'s socket pair): it receives a Hello (build id, role, payload,
// descriptors), refuses with HelloReply::wrong_binary when the build id differs from its
// own, and otherwise runs its role (pool worker, or one encoded call).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "concur/detail/process_fd.hpp"

namespace concur {

// How worker processes are started, as Python's multiprocessing start methods.
// `fork` forks the program once, when the pool is created, into a single-threaded zygote
// that forks the workers: what other threads hold at that moment (a lock, an allocator's
// lock in a malloc that does not lock around fork(), as clang 14's ASan) stays held in
// every worker. glibc's malloc is safe; create `fork` pools while other threads are quiet,
// or use the default.
enum class StartMethod {
  fork,        // fork of the program as it is when the pool is created (via a zygote)
  spawn,       // a fresh copy of the executable, taken over before main()
  forkserver,  // forked from a shared single-threaded server started like spawn (default)
};

// "fork", "spawn" or "forkserver".
const char* to_string(StartMethod m) noexcept;

}  // namespace concur

namespace concur::detail {

// How a child process ended.
struct ExitStatus {
  bool known = false;  // false: it is gone but its status could not be learned
  int exit_code = -1;  // when it exited (signal == 0)
  int signal = 0;      // when a signal killed it
  // "exit code 3", "signal SIGKILL (9)", "unknown status".
  std::string describe() const;
  // Python's Process.exitcode: the exit code, or minus the signal number.
  int exitcode() const noexcept { return signal ? -signal : exit_code; }
};

class ServerConnection;

// A started child. Destroying it kills (SIGKILL) and reaps a child still running, so no
// path leaves a zombie behind.
class ChildProcess {
 public:
  ChildProcess(pid_t pid, UniqueFd pidfd, std::shared_ptr<ServerConnection> server);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  // Readable (POLLIN) once the process has exited: for epoll loops.
  int pidfd() const noexcept { return pidfd_.get(); }
  // The exit status once the child has exited and its status is known; reaps it.
  std::optional<ExitStatus> try_reap();
  // Blocks until the child has exited (or the timeout passes: nullopt).
  std::optional<ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout = {});
  // Sends a signal unless the child is already reaped; false when it is gone.
  bool send_signal(int sig) noexcept;
  bool reaped() const noexcept { return reaped_.load(std::memory_order_acquire); }

 private:
  pid_t pid_;
  UniqueFd pidfd_;
  std::shared_ptr<ServerConnection> server_;  // null: a direct child (waitid)
  // Written by the thread that reaps (the pool's collector); other threads only look at
  // reaped_ (send_signal from shutdown or cancel): a pidfd never reaches another process,
  // so a signal sent while the reaping goes on is harmless.
  std::optional<ExitStatus> status_;
  std::atomic<bool> reaped_{false};
  void set_status(const ExitStatus& s) noexcept {
    status_ = s;
    reaped_.store(true, std::memory_order_release);
  }
};

struct LaunchOptions {
  // Executable for spawn and for starting a fork server; empty: /proc/self/exe.
  std::string executable{};
};

// Starts children with one start method. Thread-safe.
class Launcher {
 public:
  // For fork, creates the zygote now (this is the moment whose state children inherit).
  static std::shared_ptr<Launcher> create(StartMethod method, LaunchOptions options = {});
  ~Launcher();
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  // Starts a child whose control socket is `child_end` (this call closes its copy).
  // Throws OSError when the process cannot be started.
  std::unique_ptr<ChildProcess> start(UniqueFd child_end);
  StartMethod method() const noexcept { return method_; }

 private:
  Launcher(StartMethod m, LaunchOptions o) : method_(m), options_(std::move(o)) {}
  std::unique_ptr<ChildProcess> spawn_child(UniqueFd child_end);

  StartMethod method_;
  LaunchOptions options_;
  std::mutex mu_;
  std::shared_ptr<ServerConnection> server_;  // forkserver / fork
  std::unique_ptr<ChildProcess> zygote_;      // fork, or a private server's process
  UniqueFd private_master_;                   // a private server's master socket
};

// ---------------------------------------------------------------- bootstrap protocol
enum class ChildRole : std::uint32_t {
  pool_worker = 1,  // run the worker loop of a process pool
  call_once = 2,    // run one encoded call, report its outcome, exit
};

// What a child receives first on its control socket.
struct Hello {
  ChildRole role{};
  pid_t owner = 0;                  // the parent (liveness checks)
  std::vector<std::byte> build_id;  // the parent's executable identity
  std::vector<std::byte> payload;   // role-specific
};

// The child's answer to a Hello.
enum class HelloStatus : std::uint32_t {
  ok = 0,
  wrong_binary = 1,  // the child runs a different executable: refused
  failed = 2,        // the role could not start (message says why)
};
struct HelloReply {
  HelloStatus status = HelloStatus::ok;
  pid_t pid = 0;
  std::string message;
};

// Sends a Hello with descriptors (parent side).
void send_hello(int control, const Hello& hello, std::span<const int> fds);
// Reads a HelloReply (parent side); false on EOF. Blocks up to timeout_ms (-1: forever).
bool receive_hello_reply(int control, HelloReply& out, int timeout_ms);
// Exit code a child uses when it refused the hand-shake (wrong binary).
inline constexpr int kExitWrongBinary = 121;
// Exit code of a child whose bootstrap failed before it could report.
inline constexpr int kExitBootstrapFailed = 122;

// Pid of this process's shared fork server, or 0 when none runs (tests, diagnostics).
pid_t fork_server_pid() noexcept;

// The running program's identity (GNU build id, or a file digest without one).
const std::vector<std::byte>& executable_identity();

// ---------------------------------------------------------------- one call in a child
// What concur::Process needs: run one encoded call (detail::encode_call, the format of
// remote_call.hpp) in a new child started with the launcher's method. The child answers
// the hand-shake, runs the call, sends its outcome (an outcome record: tag byte, then the
// value or an exception record) on the control socket and exits with 0, or 1 when the
// call threw (Python's Process.exitcode).
struct OneShot {
  std::unique_ptr<ChildProcess> child;
  UniqueFd control;  // readable when the outcome (or EOF) arrives
};
OneShot start_call_once(Launcher& launcher, std::span<const std::byte> encoded_call);
// Reads the child's hand-shake reply and outcome (blocking up to timeout_ms for each;
// -1: no limit). nullopt when the child died or refused before sending one.
std::optional<std::vector<std::byte>> read_call_outcome(OneShot& shot, int timeout_ms = -1);

}  // namespace concur::detail
