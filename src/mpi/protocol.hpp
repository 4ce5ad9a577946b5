// What the parent and the workers of an MPI pool say to each other over the pool's
// intercommunicator. One task at a time per worker, so an outcome needs no sequence
// number: it belongs to the task its worker was given last.
#pragma once

namespace concur::detail::mpi {

// The argument MPI_Comm_spawn gives a worker; the pre-main hook looks for it.
inline constexpr const char* kWorkerFlag = "--concur-mpi-worker";

enum Tag : int {
  // parent -> worker
  kTagCall = 1,  // an encoded call
  kTagExit = 2,  // leave the loop, disconnect, finalise and exit
  kTagInit = 3,  // (encoded initializer or empty, heartbeat interval in ms or 0)
  // worker -> parent
  kTagOutcome = 16,  // the outcome of the call it was given last
  kTagHello = 17,    // (build id, pid, host), first thing after MPI_Init
  kTagReady = 18,    // (why the initializer failed or empty, whether it sends heartbeats)
  kTagBeat = 19,     // empty: "alive", from a thread of its own, while tasks run too
};

}  // namespace concur::detail::mpi
