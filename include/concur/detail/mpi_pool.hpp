// The machinery behind MPIPoolExecutor (src/mpi/): one pool of MPI worker processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "concur/detail/shared_state.hpp"

namespace concur {

// One worker of an MPIPoolExecutor.
struct MPIWorkerInfo {
  int rank = 0;      // in the pool's intercommunicator
  pid_t pid = 0;     // on its host
  std::string host;  // MPI_Get_processor_name
};

class MPIPoolExecutor;

}  // namespace concur

namespace concur::detail {

struct MpiPoolConfig {
  int max_workers = 1;
  std::vector<std::byte> initializer;  // an encoded call returning void; empty: none
  std::vector<std::pair<std::string, std::string>> spawn_info;
  std::chrono::milliseconds heartbeat_timeout{10'000};  // 0: no heartbeats
  std::chrono::milliseconds spawn_timeout{60'000};      // 0: none
};

class MpiPool {
 public:
  // Starts MPI (once per program) and the workers; throws OSError when MPI cannot start
  // them. A worker that refuses (different binary, failing initializer) breaks the pool.
  static std::shared_ptr<MpiPool> create(MpiPoolConfig config);
  virtual ~MpiPool() = default;

  // Tasks whose as_remote() is not null; encoded in this thread. Throws ShutdownError
  // after shutdown, BrokenProcessPool once broken.
  virtual void submit_bulk(std::span<TaskPtr> tasks) = 0;
  virtual void shutdown(bool wait, bool cancel_futures) = 0;
  virtual int max_workers() const noexcept = 0;
  virtual std::vector<MPIWorkerInfo> workers() const = 0;
  virtual bool broken() const noexcept = 0;
  // Large blocks travel through shared memory (every worker is on this host).
  virtual bool shares_memory() const noexcept = 0;
  // Tasks waiting for a worker (testing).
  virtual std::size_t queued() const = 0;

 protected:
  MpiPool() = default;
};

// Testing: starts the library's MPI thread (and MPI) without a pool.
void mpi_start_runtime();
// Testing: whether pools created from now on watch the workers on this host through
// pidfds (true, the default); false makes them rely on heartbeats as for other hosts.
void mpi_watch_local_workers(bool watch) noexcept;
// Testing: whether pools created from now on pass large blocks to workers on this host
// through shared memory (true, the default); false sends everything as MPI messages.
void mpi_share_memory(bool share) noexcept;
// Testing: pools created from now on give their workers a wrong token for the shared
// areas (as a worker on another machine under the same host name would find).
void mpi_debug_wrong_token(bool wrong) noexcept;
// Testing: pools created from now on pause this long before spawning (as if MPI_Comm_spawn
// hung for that long).
void mpi_debug_spawn_delay(std::chrono::milliseconds delay) noexcept;
// Testing: the tasks of `ex` waiting for a worker.
std::size_t mpi_debug_queued_tasks(const MPIPoolExecutor& ex);

}  // namespace concur::detail
