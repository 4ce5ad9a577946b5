// What the parent and the workers of an MPI pool say to each other over the pool's
// intercommunicator. One task at a time per worker, so an outcome needs no sequence
// number: it belongs to the task its worker was given last.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace concur::detail::mpi {

// The argument MPI_Comm_spawn gives a worker; the pre-main hook looks for it.
inline constexpr const char* kWorkerFlag = "--concur-mpi-worker";

enum Tag : int {
  // parent -> worker
  kTagCall = 1,  // an encoded call
  kTagExit = 2,  // leave the loop, disconnect, finalise and exit
  kTagInit = 3,  // InitMessage
  // worker -> parent
  kTagOutcome = 16,  // the outcome of the call it was given last
  kTagHello = 17,    // (build id, pid, host), first thing after MPI_Init
  kTagReady = 18,    // ReadyMessage
  kTagBeat = 19,     // empty: "alive", from a thread of its own, while tasks run too
};

// The parent's second message: (encoded initializer or empty, heartbeat interval in ms or
// 0, parent pid, descriptor of the request area and of this worker's response area in the
// parent (-1: no shared memory), the areas' token; see shared_blocks.hpp).
using InitMessage = std::tuple<std::vector<std::byte>, std::int64_t, std::int32_t, std::int32_t,
                               std::int32_t, std::uint64_t>;
// The worker's answer: (why the initializer failed or empty, whether it sends heartbeats,
// whether it mapped the shared areas).
using ReadyMessage = std::tuple<std::string, bool, bool>;

}  // namespace concur::detail::mpi
