// Messages between a launcher and a fork server (shared server or zygote).
#pragma once

#include <cstdint>
#include <span>

namespace concur::detail {

struct ServerMsg {
  static constexpr std::uint32_t kConnect = 1;  // (master) here is a new connection (fd)
  static constexpr std::uint32_t kFork = 2;     // fork a child with this control socket (fd)
  static constexpr std::uint32_t kForked = 3;   // the child's pid (and its pidfd), or err
  static constexpr std::uint32_t kExited = 4;   // a child of this connection has exited
  std::uint32_t kind;
  std::int32_t err;
  std::uint64_t req_id;
  std::int32_t pid;
  std::int32_t status;  // wait status (kExited)
};

template <class T>
std::span<const std::byte> as_bytes(const T& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}

inline constexpr std::uint64_t kHelloMagic = 0x434f4e4355524831ull;  // "CONCURH1"

}  // namespace concur::detail
