// The fork server: a single-threaded process that forks library children on request and
// relays their exit statuses. The same loop serves the shared `forkserver` server (started
// with spawn, connections handed over its master socket) and the `fork` method's zygote
// (forked from the program, one connection: its master socket).
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "concur/detail/process_fd.hpp"
#include "concur/detail/process_launcher.hpp"
#include "process/internal.hpp"
#include "process/server_protocol.hpp"

namespace concur::detail {

namespace {

struct Server {
  int master = -1;
  bool zygote = false;
  UniqueFd epoll;
  UniqueFd sigfd;
  std::map<int, UniqueFd> conns;     // fd -> connection
  std::map<pid_t, int> child_owner;  // child pid -> connection fd

  void add(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev);
  }

  void drop_connection(int fd) {
    ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
    for (auto it = child_owner.begin(); it != child_owner.end();)
      it = it->second == fd ? child_owner.erase(it) : std::next(it);
    conns.erase(fd);
  }

  void reap() {
    signalfd_siginfo si;
    while (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
    }
    for (;;) {
      int st = 0;
      pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) break;
      auto it = child_owner.find(pid);
      if (it == child_owner.end()) continue;
      ServerMsg m{};
      m.kind = ServerMsg::kExited;
      m.pid = pid;
      m.status = st;
      try {
        send_message(it->second, as_bytes(m));
      } catch (...) {
      }
      child_owner.erase(it);
    }
  }

  void fork_child(int conn, const ServerMsg& req, UniqueFd child_sock) {
    ServerMsg reply{};
    reply.kind = ServerMsg::kForked;
    reply.req_id = req.req_id;
    pid_t pid = ::fork();
    if (pid == 0) {
      // The child: back to default signal handling, none of the server's descriptors.
      ::signal(SIGINT, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      int keep = child_sock.get();
      close_library_fds_except({&keep, 1});
      run_child_role(keep);
    }
    if (pid < 0) {
      reply.err = errno;
      try {
        send_message(conn, as_bytes(reply));
      } catch (...) {
      }
      return;
    }
    child_sock.reset();
    child_owner[pid] = conn;
    reply.pid = pid;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    try {
      if (pidfd >= 0) send_message(conn, as_bytes(reply), {&pidfd, 1});
      else {
        reply.err = errno;
        send_message(conn, as_bytes(reply));
      }
    } catch (...) {
    }
    if (pidfd >= 0) ::close(pidfd);
  }

  // Handles one message on a connection (or on the master); false on EOF.
  bool serve(int fd) {
    ReceivedMessage m;
    bool would_block = false;
    bool got;
    try {
      got = receive_message(fd, m, /*nonblocking=*/true, &would_block);
    } catch (...) {
      got = false;
    }
    if (!got) return would_block;
    if (m.bytes.size() != sizeof(ServerMsg)) return true;
    ServerMsg req;
    std::memcpy(&req, m.bytes.data(), sizeof req);
    if (req.kind == ServerMsg::kConnect && fd == master && !zygote && !m.fds.empty()) {
      int c = m.fds[0].get();
      conns.emplace(c, std::move(m.fds[0]));
      add(c);
    } else if (req.kind == ServerMsg::kFork && !m.fds.empty()) {
      fork_child(fd, req, std::move(m.fds[0]));
    }
    return true;
  }
};

}  // namespace

[[noreturn]] void run_fork_server(int master_fd, bool zygote) noexcept {
  try {
    register_library_fd(master_fd);
    // Ctrl-C in a terminal reaches the whole process group; the program decides what
    // happens to its pools, the server must not vanish under them (Python's rule too).
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);
    Server s;
    s.master = master_fd;
    s.zygote = zygote;
    s.sigfd = UniqueFd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    s.epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!s.sigfd || !s.epoll) _exit(kExitBootstrapFailed);
    s.add(s.sigfd.get());
    s.add(master_fd);
    for (;;) {
      epoll_event evs[16];
      int n = ::epoll_wait(s.epoll.get(), evs, 16, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      bool stop = false;
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == s.sigfd.get()) {
          s.reap();
        } else if (fd == master_fd) {
          if (!s.serve(fd)) stop = true;
        } else if (s.conns.count(fd)) {
          if (!s.serve(fd)) s.drop_connection(fd);
        }
      }
      if (stop) break;
    }
  } catch (...) {
  }
  // The owner has gone: children already started keep running (their pools handle them).
  _exit(0);
}

}  // namespace concur::detail
