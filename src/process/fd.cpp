// Descriptor ownership, descriptor passing and the library-fd registry.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "concur/detail/process_fd.hpp"
#include "concur/errors.hpp"
#include "process/internal.hpp"

namespace concur::detail {

namespace {

constexpr int kTrackedFds = 65536;
constexpr int kBitsPerWord = 64;
// Zero-initialised static storage: usable before any constructor runs and after fork.
std::array<std::atomic<std::uint64_t>, kTrackedFds / kBitsPerWord> g_library_fds{};

}  // namespace

void register_library_fd(int fd) noexcept {
  if (fd < 0 || fd >= kTrackedFds) return;
  g_library_fds[static_cast<std::size_t>(fd / kBitsPerWord)].fetch_or(
      std::uint64_t{1} << (fd % kBitsPerWord), std::memory_order_relaxed);
}

void unregister_library_fd(int fd) noexcept {
  if (fd < 0 || fd >= kTrackedFds) return;
  g_library_fds[static_cast<std::size_t>(fd / kBitsPerWord)].fetch_and(
      ~(std::uint64_t{1} << (fd % kBitsPerWord)), std::memory_order_relaxed);
}

bool is_library_fd(int fd) noexcept {
  if (fd < 0 || fd >= kTrackedFds) return false;
  return (g_library_fds[static_cast<std::size_t>(fd / kBitsPerWord)].load(
              std::memory_order_relaxed) >>
          (fd % kBitsPerWord)) &
         1u;
}

void close_library_fds_except(std::span<const int> keep) noexcept {
  for (std::size_t w = 0; w < g_library_fds.size(); ++w) {
    std::uint64_t bits = g_library_fds[w].load(std::memory_order_relaxed);
    while (bits) {
      int bit = __builtin_ctzll(bits);
      bits &= bits - 1;
      int fd = static_cast<int>(w) * kBitsPerWord + bit;
      bool kept = false;
      for (int k : keep) kept |= (k == fd);
      if (!kept) {
        ::close(fd);
        unregister_library_fd(fd);
      }
    }
  }
}

void UniqueFd::reset() noexcept {
  if (fd_ >= 0) {
    unregister_library_fd(fd_);
    ::close(fd_);
    fd_ = -1;
  }
}

void throw_os_error(const std::string& what, int err) {
  throw OSError("concur: " + what + ": " + std::strerror(err), err);
}

std::pair<UniqueFd, UniqueFd> make_socket_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw_os_error("socketpair", errno);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

void send_message(int sock, std::span<const std::byte> bytes, std::span<const int> fds) {
  constexpr std::size_t kMaxFds = 16;
  if (fds.size() > kMaxFds) throw_os_error("send_message: too many descriptors", EINVAL);
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return;
    if (errno == EINTR) continue;
    throw_os_error("sendmsg", errno);
  }
}

bool receive_message(int sock, ReceivedMessage& out, bool nonblocking, bool* would_block) {
  out.bytes.clear();
  out.fds.clear();
  if (would_block) *would_block = false;
  // SEQPACKET preserves boundaries: peek at the size first so any length fits.
  std::byte probe[1];
  iovec piov{probe, 0};
  msghdr pmsg{};
  pmsg.msg_iov = &piov;
  pmsg.msg_iovlen = 1;
  ssize_t size;
  for (;;) {
    size = ::recvmsg(sock, &pmsg, MSG_PEEK | MSG_TRUNC | (nonblocking ? MSG_DONTWAIT : 0));
    if (size >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (would_block) *would_block = true;
      return false;
    }
    if (errno == ECONNRESET) return false;
    throw_os_error("recvmsg", errno);
  }
  out.bytes.resize(static_cast<std::size_t>(size));
  iovec iov{out.bytes.data(), out.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  for (;;) {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return false;
    throw_os_error("recvmsg", errno);
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
      }
    }
  }
  // A zero-length datagram with no descriptors is how SEQPACKET reports EOF.
  if (n == 0 && size == 0 && out.fds.empty()) return false;
  return true;
}

bool wait_readable(int fd, int timeout_ms) noexcept {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let the caller find the error on read
  }
}

}  // namespace concur::detail
