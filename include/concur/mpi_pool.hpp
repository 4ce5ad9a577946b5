// concur/mpi_pool.hpp: MPIPoolExecutor, the Executor whose workers are MPI processes
// (mpi4py.futures' MPIPoolExecutor): for work that outgrows one machine.
//
//   concur::MPIPoolExecutor ex(4);                       // or ex({.max_workers = 4, ...})
//   auto f = ex.submit(is_prime, 112272535095293L);      // Future<bool>
//   for (bool p : ex.map(is_prime, nums, concur::chunksize(64))) ...
//
// Link concur::mpi (built when CMake finds MPI) and run the program as usual, or under
// `mpirun -n 1`. The pool starts its workers with MPI_Comm_spawn as copies of this
// program, on the hosts that MPI's own placement gives them (`.spawn_info` passes
// MPI_Info keys such as "host", "hostfile" or "map_by"). The library takes each copy over
// before main() runs, as with StartMethod::spawn, and a worker refuses to work for a
// different binary (build-id hand-shake).
//
// Guarantees shared with ProcessPoolExecutor (the same task encoding and the same worker
// code run the calls): the function and its arguments and result are checked at compile
// time; exceptions keep their type and message (register_exception<E>() for your own);
// map() yields in input order, chunksize items per message, with bounded input in flight;
// cancel() stops pending work; shutdown(wait, cancel_futures) follows Python; done-
// callbacks run in this process (in the library's MPI thread: they must not block on
// this pool's other futures).
//
// What MPI decides differently (Open MPI 4.1, no fault tolerance):
//  - When one worker dies, Open MPI ends every worker of the pool, so a death breaks the
//    pool (Python's break_pool): running and pending futures fail with BrokenProcessPool
//    naming the worker, later submits throw it. A worker on this host is watched through
//    its pidfd, so its death is noticed at once; one on another host sends heartbeats
//    from a thread of its own (tasks running or not), and one silent for
//    heartbeat_timeout is taken for dead.
//  - A running task cannot be stopped: cancel(kill_running) returns false. There is no
//    task_timeout, max_tasks_per_child or replace_worker.
//  - One task at a time per worker; an idle pool polls MPI with a back-off up to 1 ms,
//    so the first result after a pause can take that much longer.
// When every worker is on this host, payload blocks of 1 MiB or more (a large vector or
// string) travel through shared memory as in a process pool; otherwise, or when a worker
// cannot map it, through MPI, whose transport between a program and the workers it
// spawned is TCP (about 250 MiB/s here).
// MPI is initialised by the first pool in a thread of the library's own, which makes all
// of concur's MPI calls, and finalised when the program exits. A program that initialised
// MPI itself must have asked for MPI_THREAD_MULTIPLE.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "concur/detail/mpi_pool.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/detail/remote_map.hpp"
#include "concur/executor.hpp"
#include "concur/process_pool.hpp"  // Initializer, register_exception

namespace concur {

// Options of MPIPoolExecutor, used with designated initializers.
struct MPIPoolOptions {
  std::optional<int> max_workers{};  // unset: the CPUs of this host; < 1: invalid_argument
  Initializer initializer{};         // run once in each worker before any task
  // MPI_Info keys for MPI_Comm_spawn ("host", "hostfile", "map_by", "wdir", ...). Unless
  // "map_by" is given, workers may outnumber the slots ("map_by" = "core:OVERSUBSCRIBE").
  std::vector<std::pair<std::string, std::string>> spawn_info{};
  // A worker on another host that sends no heartbeat for this long is taken for dead and
  // breaks the pool (workers beat ten times per timeout, also while running a task).
  // 0: no heartbeats (then only deaths on this host are noticed).
  std::chrono::milliseconds heartbeat_timeout{std::chrono::seconds(10)};
  // The workers must be spawned, have shaken hands and have run the initializer within
  // this long, or the constructor throws OSError. Debian 12's Open MPI 4.1 with PMIx 4.2
  // hangs now and then inside MPI_Comm_spawn (about once in a few hundred spawns on a
  // loaded machine); the library's MPI thread then stays stuck inside MPI, so this and
  // every later pool of the program fail with OSError instead of hanging, and pools made
  // before stop making progress. 0: wait for ever.
  std::chrono::milliseconds spawn_timeout{std::chrono::seconds(60)};
};

class MPIPoolExecutor final : public Executor {
 public:
  // A pool of as many workers as this host has CPUs.
  MPIPoolExecutor();
  // A pool of max_workers workers; std::invalid_argument if max_workers < 1.
  explicit MPIPoolExecutor(int max_workers);
  explicit MPIPoolExecutor(MPIPoolOptions options);
  // shutdown(wait = true).
  ~MPIPoolExecutor() override;

  // Schedules fn(args...) in a worker; checked at compile time like ProcessPoolExecutor.
  // Throws ShutdownError after shutdown, BrokenProcessPool once broken.
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    static_assert(detail::check_remote_call<R, F, Args...>());
    auto task = detail::make_borrowed_remote_task<R>(std::forward<F>(fn), args...);
    detail::TaskPtr one[1] = {detail::TaskPtr(task)};
    pool_->submit_bulk(one);
    return Future<R>(std::move(task));
  }
  // Lazily yields fn(a, b, ...) over the ranges in input order (see Executor::map);
  // concur::chunksize(n) sends n items per message.
  template <class F, class... Xs>
  auto map(F&& fn, Xs&&... ranges_then_options) {
    return detail::split_map_args(
        [&](const MapOptions& opts, auto&&... ranges) {
          return detail::remote_map<std::decay_t<F>>(
              std::forward<F>(fn), opts,
              [this](std::span<detail::TaskPtr> tasks) { pool_->submit_bulk(tasks); },
              [this](std::size_t chunk) { return map_window(chunk); },
              std::forward<decltype(ranges)>(ranges)...);
        },
        std::forward<Xs>(ranges_then_options)...);
  }
  // Python's shutdown(wait, cancel_futures).
  void shutdown(bool wait = true, bool cancel_futures = false) override;
  // The number of workers.
  int max_workers() const noexcept;
  // Rank, pid and host of each worker.
  std::vector<MPIWorkerInfo> workers() const;
  // True when large payload blocks go through shared memory (every worker on this host).
  bool shares_memory() const noexcept;

 protected:
  void enqueue(detail::TaskPtr task) override;
  void enqueue_bulk(std::span<detail::TaskPtr> tasks) override;
  std::size_t default_map_window() const override;

 private:
  std::size_t map_window(std::size_t chunk) const noexcept;
  friend std::size_t detail::mpi_debug_queued_tasks(const MPIPoolExecutor& ex);
  std::shared_ptr<detail::MpiPool> pool_;
};

}  // namespace concur
