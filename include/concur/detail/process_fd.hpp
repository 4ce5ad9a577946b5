// File descriptors of the process engine: an owning handle, socket helpers that pass
// descriptors (SCM_RIGHTS), and the registry of descriptors the library owns.
//
// The registry exists for fork: a process forked from a user's program (the `fork` start
// method's zygote) inherits every descriptor, including the sockets and shared memory of
// other pools. Keeping those open in a child would hide a worker's death from its pool
// (the peer of a socket never sees EOF) and leak memory, so the zygote closes every
// registered descriptor it does not need. The registry is a lock-free bitmap so that it
// can be read right after fork(), when a lock another thread held is lost for good.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace concur::detail {

// Marks/unmarks fd as owned by the library (see above). Descriptors >= 65536 are not
// tracked (they are simply not closed in a zygote).
void register_library_fd(int fd) noexcept;
void unregister_library_fd(int fd) noexcept;
bool is_library_fd(int fd) noexcept;
// Closes every registered descriptor except those in `keep` (used right after fork).
void close_library_fds_except(std::span<const int> keep) noexcept;

// Long-lived library resources that outlive any single pool on purpose (the shared fork
// server and its socket). Test harnesses exclude them from resource censuses.
bool is_library_persistent_fd(int fd) noexcept;
bool is_library_persistent_pid(pid_t pid) noexcept;

// An owned descriptor, registered with the library registry while owned.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {
    if (fd_ >= 0) register_library_fd(fd_);
  }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives up ownership (and the registration) without closing.
  int release() noexcept {
    if (fd_ >= 0) unregister_library_fd(fd_);
    return std::exchange(fd_, -1);
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

// A connected pair of SOCK_SEQPACKET unix sockets (close-on-exec). Throws OSError.
std::pair<UniqueFd, UniqueFd> make_socket_pair();

// Sends one datagram with up to 16 descriptors attached. Throws OSError (EPIPE when the
// peer has gone); never raises SIGPIPE.
void send_message(int sock, std::span<const std::byte> bytes, std::span<const int> fds = {});

// Receives one datagram and its descriptors (close-on-exec). Returns false on EOF. With
// nonblocking = true, returns false with `would_block` set when nothing is there.
struct ReceivedMessage {
  std::vector<std::byte> bytes;
  std::vector<UniqueFd> fds;
};
bool receive_message(int sock, ReceivedMessage& out, bool nonblocking = false,
                     bool* would_block = nullptr);

// Waits until fd is readable (or hung up) or the timeout passes; true when readable.
// timeout_ms < 0: no timeout.
bool wait_readable(int fd, int timeout_ms) noexcept;

// Throws concur::OSError for errno with "what: strerror".
[[noreturn]] void throw_os_error(const std::string& what, int err);

}  // namespace concur::detail
