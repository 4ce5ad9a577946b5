// The child side of the engine: the pool worker loop and the one-call role.
#include <malloc.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "concur/detail/process_engine.hpp"
#include "process/internal.hpp"
#include "process/worker_config.hpp"

namespace concur::detail {

namespace {

// Exit code of a worker whose initializer raised.
constexpr int kExitInitializerFailed = 123;

// The parent's end of the control socket closes when it exits (or the pool is gone).
bool parent_alive(void* ctx) {
  int fd = *static_cast<int*>(ctx);
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return true;
  if (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
}

// Resident anonymous memory (RSS minus file and shared-memory pages): what a task can
// leak. The transport's shared areas are excluded on purpose.
std::size_t anonymous_rss() {
  std::ifstream in("/proc/self/statm");
  std::size_t size = 0, resident = 0, shared = 0;
  in >> size >> resident >> shared;
  long page = ::sysconf(_SC_PAGESIZE);
  return (resident > shared ? resident - shared : 0) * static_cast<std::size_t>(page);
}

[[noreturn]] void leave(WorkerEndpoint* ep, ExitReason reason) {
  if (ep) ep->set_exit_reason(reason);
  std::fflush(nullptr);  // what tasks printed must not be lost
  _exit(0);
}

}  // namespace

[[noreturn]] void run_pool_worker(int control, const Hello& hello, std::vector<UniqueFd> fds) {
  WorkerConfig cfg;
  std::unique_ptr<WorkerEndpoint> ep;
  try {
    cfg = WorkerConfig::decode(hello.payload);
    ep = WorkerEndpoint::attach_shm(cfg.transport, std::move(fds));
  } catch (const std::exception& e) {
    send_hello_reply(control, {HelloStatus::failed, ::getpid(),
                               std::string("worker could not attach its channel: ") + e.what()});
    _exit(kExitBootstrapFailed);
  }
  // Large payloads arrive task after task: keep freed heap memory (up to a bound) instead
  // of returning every big buffer to the system, so the next one costs no page faults.
  // glibc always mmaps blocks above 32 MiB unless mmap is off for allocations.
  ::mallopt(M_MMAP_MAX, 0);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  Writer out;
  if (!cfg.initializer.empty()) {
    Reader in(cfg.initializer);
    run_remote_call(in, out);
    if (is_exception_outcome(out.bytes())) {
      send_hello_reply(control, {HelloStatus::failed, ::getpid(),
                                 "the initializer failed: " + exception_outcome_text(out.bytes())});
      std::fflush(nullptr);
      _exit(kExitInitializerFailed);
    }
  }
  send_hello_reply(control, {HelloStatus::ok, ::getpid(), {}});

  std::uint64_t tasks = 0;
  for (;;) {
    InMessage m;
    bool got;
    try {
      got = ep->receive(m, cfg.spin_ns, 250, parent_alive, &control);
    } catch (...) {
      leave(ep.get(), ExitReason::channel_corrupt);
    }
    if (!got) leave(ep.get(), ExitReason::parent_gone);
    if (m.corrupt || (m.kind != MsgKind::call && m.kind != MsgKind::exit)) {
      static const char msg[] =
          "concur: the request message of this task was corrupt (integrity check failed in "
          "the worker); the task was not run";
      ep->release(m);
      ep->send(MsgKind::protocol_error, m.seq,
               {reinterpret_cast<const std::byte*>(msg), sizeof msg - 1});
      continue;
    }
    if (m.kind == MsgKind::exit) {
      ep->release(m);
      leave(ep.get(), ExitReason::asked);
    }
    if (!ep->set_started(m.seq, cfg.timed ? monotonic_ns() : 0)) {
      ep->release(m);  // cancelled before it started: answer with nothing
      ep->send(MsgKind::outcome, m.seq, {});
      continue;
    }
    out.clear();
    out.set_oob_sink(&ep->response_sink(m.seq));
    Reader in(m.payload, &ep->request_source());
    run_remote_call(in, out);
    // What the task printed reaches the terminal before its result reaches the parent
    // (and is not lost when Pool::terminate() ends the worker); no syscall when nothing
    // was printed.
    std::fflush(stdout);
    ep->release(m);
    if (is_exception_outcome(out.bytes())) ep->discard_blocks(m.seq);
    try {
      ep->send(MsgKind::outcome, m.seq, out.bytes());
    } catch (...) {
      // The result does not fit the transfer area: the task fails, the worker lives on.
      ep->discard_blocks(m.seq);
      out.clear();
      out.set_oob_sink(nullptr);
      encode_current_exception(out, 0, "sending the result");
      ep->send(MsgKind::outcome, m.seq, out.bytes());
    }
    ++tasks;
    if (cfg.max_tasks && tasks >= cfg.max_tasks) leave(ep.get(), ExitReason::max_tasks);
    if (cfg.max_memory && anonymous_rss() > cfg.max_memory) {
      ::malloc_trim(0);  // what the allocator only keeps for reuse does not count
      if (anonymous_rss() > cfg.max_memory) leave(ep.get(), ExitReason::max_memory);
    }
  }
}

[[noreturn]] void run_call_once(int control, const Hello& hello, std::vector<UniqueFd>) {
  send_hello_reply(control, {HelloStatus::ok, ::getpid(), {}});
  Writer out;
  Reader in(hello.payload);
  run_remote_call(in, out);
  bool failed = is_exception_outcome(out.bytes());
  if (failed) {
    std::string text =
        "concur: the process's function raised: " + exception_outcome_text(out.bytes()) + "\n";
    emit_diagnostic(text.c_str());
  }
  try {
    send_message(control, out.bytes());
  } catch (...) {
    // Too large for one datagram or nobody listening: the exit code still tells.
  }
  std::fflush(nullptr);
  _exit(failed ? 1 : 0);
}

}  // namespace concur::detail
