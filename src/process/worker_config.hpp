// What a pool worker learns at hand-shake (the payload of its Hello).
#pragma once

#include <cstdint>
#include <span>
#include <tuple>
#include <vector>

#include "concur/serialize.hpp"

namespace concur::detail {

struct WorkerConfig {
  std::uint32_t index = 0;
  std::uint64_t max_tasks = 0;
  std::uint64_t max_memory = 0;
  std::int64_t spin_ns = 0;
  bool timed = false;                  // task_timeout is set: publish start times
  std::vector<std::byte> transport;    // PoolTransport::describe()
  std::vector<std::byte> initializer;  // encoded call, empty: none

  std::vector<std::byte> encode() const {
    return dumps(std::tuple(index, max_tasks, max_memory, spin_ns, timed, transport, initializer));
  }
  static WorkerConfig decode(std::span<const std::byte> bytes) {
    auto t = loads<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t, std::int64_t, bool,
                              std::vector<std::byte>, std::vector<std::byte>>>(bytes);
    WorkerConfig c;
    std::tie(c.index, c.max_tasks, c.max_memory, c.spin_ns, c.timed, c.transport,
             c.initializer) = std::move(t);
    return c;
  }
};

}  // namespace concur::detail
