// The pre-main hook: a re-executed copy of the program (spawn, the fork server) finds the
// bootstrap marker in its environment and becomes a library process before main() runs.
// Also the child side of the hand-shake common to every start method.
//
// This object file is always linked into a program that can start processes: the
// launcher references bootstrap_anchor, defined here, so a static library cannot drop it.
// The hook is an ordinary (unprioritised) constructor: it runs after the static
// initialisers of the shared libraries and of the objects linked before this library
// (the user's own), so the functions a worker runs find their globals initialised.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "concur/detail/process_engine.hpp"
#include "concur/detail/process_launcher.hpp"
#include "process/internal.hpp"
#include "process/server_protocol.hpp"

namespace concur::detail {

volatile int bootstrap_anchor = 0;

namespace {

bool parse_hello(const ReceivedMessage& m, Hello& out) {
  const std::byte* p = m.bytes.data();
  std::size_t left = m.bytes.size();
  auto take = [&](void* dst, std::size_t n) {
    if (n > left) return false;
    std::memcpy(dst, p, n);
    p += n;
    left -= n;
    return true;
  };
  std::uint64_t magic = 0, idn = 0, pn = 0;
  std::uint32_t role = 0;
  std::int32_t owner = 0;
  if (!take(&magic, 8) || magic != kHelloMagic || !take(&role, 4) || !take(&owner, 4) ||
      !take(&idn, 8) || idn > left)
    return false;
  out.role = static_cast<ChildRole>(role);
  out.owner = owner;
  out.build_id.assign(p, p + idn);
  p += idn;
  left -= idn;
  if (!take(&pn, 8) || pn > left) return false;
  out.payload.assign(p, p + pn);
  return true;
}

std::string hex(const std::vector<std::byte>& id) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::byte b : id) {
    auto v = std::to_integer<unsigned>(b);
    s += digits[v >> 4];
    s += digits[v & 15];
  }
  return s;
}

}  // namespace

void send_hello_reply(int control, const HelloReply& r) noexcept {
  std::vector<std::byte> out(12 + r.message.size());
  std::uint32_t st = static_cast<std::uint32_t>(r.status);
  std::int32_t pid = r.pid;
  std::uint32_t n = static_cast<std::uint32_t>(r.message.size());
  std::memcpy(out.data(), &st, 4);
  std::memcpy(out.data() + 4, &pid, 4);
  std::memcpy(out.data() + 8, &n, 4);
  std::memcpy(out.data() + 12, r.message.data(), r.message.size());
  try {
    send_message(control, out);
  } catch (...) {
  }
}

[[noreturn]] void run_child_role(int control_fd) noexcept {
  try {
    register_library_fd(control_fd);
    ReceivedMessage m;
    if (!receive_message(control_fd, m)) _exit(kExitBootstrapFailed);
    Hello hello;
    if (!parse_hello(m, hello)) {
      send_hello_reply(control_fd, {HelloStatus::failed, ::getpid(), "malformed hand-shake"});
      _exit(kExitBootstrapFailed);
    }
    const auto& mine = executable_identity();
    if (hello.build_id != mine) {
      send_hello_reply(control_fd,
                       {HelloStatus::wrong_binary, ::getpid(),
                        "it runs a different executable than its parent (build id " + hex(mine) +
                            ", parent's " + hex(hello.build_id) + ")"});
      _exit(kExitWrongBinary);
    }
    switch (hello.role) {
      case ChildRole::pool_worker: run_pool_worker(control_fd, hello, std::move(m.fds));
      case ChildRole::call_once: run_call_once(control_fd, hello, std::move(m.fds));
    }
    send_hello_reply(control_fd, {HelloStatus::failed, ::getpid(), "unknown child role"});
  } catch (...) {
  }
  _exit(kExitBootstrapFailed);
}

namespace {

// Runs before main() in every program that links the process engine.
__attribute__((constructor, used)) void concur_process_bootstrap() {
  const char* marker = std::getenv(kBootstrapEnv);
  if (!marker) return;
  std::string value = marker;
  // Children of this process (a task running a program) must not inherit the marker.
  ::unsetenv(kBootstrapEnv);
  auto colon = value.find(':');
  if (colon == std::string::npos) return;
  std::string role = value.substr(0, colon);
  int fd = std::atoi(value.c_str() + colon + 1);
  if (role == "child") run_child_role(fd);
  if (role == "server") run_fork_server(fd, /*zygote=*/false);
  emit_diagnostic("concur: unknown bootstrap role in CONCUR_PROCESS_BOOTSTRAP\n");
  _exit(kExitBootstrapFailed);
}

}  // namespace

}  // namespace concur::detail
