// concur/pool.hpp: Python's multiprocessing.Pool, on worker processes or on threads.
//
//   concur::Pool pool(4);                             // multiprocessing.Pool: processes
//   concur::ThreadPool tpool(4);                      // multiprocessing.pool.ThreadPool
//   auto squares = pool.map(square, numbers);         // std::vector, input order
//   for (auto r : pool.imap_unordered(work, items)) ...   // completion order, lazy
//   auto r = pool.apply_async(work, 7, concur::callback(on_done));
//   r.get(5s);
//   pool.close(); pool.join();
//
// apply / apply_async / map / map_async / imap / imap_unordered / starmap / starmap_async /
// close / terminate / join behave as in Python, with these differences: nothing hangs
// (terminate() cancels pending work, whose results raise CancelledError), imap and
// imap_unordered pull their input lazily with a bounded number of chunks in flight, and
// the first exception ends an imap iteration. The destructor is terminate(), as Python's
// `with Pool(...)`. Pool (worker processes) and ThreadPool (threads) share this front end.
//
// Pool runs on the process engine of ProcessPoolExecutor (concur/process_pool.hpp), so the
// same rules hold: fn is a function pointer or a lambda without captures, arguments and
// results are serializable (checked at compile time), exceptions keep their type. Unlike
// Python's Pool, a worker that dies never leaves a get() hanging: the task it was running
// fails with WorkerDiedError (exit code or signal in the message), a new worker replaces
// it and the rest of the work goes on. terminate() kills the workers at once: queued work
// raises CancelledError, work that was running raises BrokenProcessPool.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>

#include "concur/detail/pool_front.hpp"
#include "concur/process_pool.hpp"
#include "concur/thread_pool.hpp"

namespace concur {

// Options of Pool, used with designated initializers (fields in Python's order):
// Pool({.processes = 2, .initializer = {setup, "db.sqlite"}, .maxtasksperchild = 10}).
struct PoolOptions {
  std::optional<int>
      processes{};  // worker processes; unset: the number of CPUs; < 1: invalid_argument
  Initializer
      initializer{};  // function + arguments run once in each worker (initializer, initargs)
  std::size_t maxtasksperchild = 0;  // a worker is replaced after this many tasks; 0: never
  StartMethod start_method = StartMethod::forkserver;  // how workers are started
};

// multiprocessing.Pool: the Pool API on worker processes.
class Pool final : public detail::PoolFront<ProcessPoolExecutor> {
 public:
  // As many worker processes as CPUs.
  Pool() : Pool(PoolOptions{}) {}
  // `processes` workers; std::invalid_argument if < 1.
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  // Pool({.processes = 4, .initializer = fn, .maxtasksperchild = 10, .start_method = ...}).
  explicit Pool(PoolOptions options)
      : PoolFront(detail::resolve_processes(options.processes)),
        exec_(ProcessPoolOptions{
            .max_workers = static_cast<int>(detail::resolve_processes(options.processes)),
            .start_method = options.start_method,
            .initializer = std::move(options.initializer),
            .max_tasks_per_child = options.maxtasksperchild,
            .on_worker_death = OnWorkerDeath::replace_worker}) {}
  // terminate(), as Python's `with Pool(...)`.
  ~Pool() { terminate(); }

  // Pids of the live worker processes (workers start as work arrives).
  std::vector<pid_t> worker_pids() const { return exec_.worker_pids(); }

 private:
  ProcessPoolExecutor& exec() override { return exec_; }
  void terminate_now() override { exec_.terminate_workers(); }

  ProcessPoolExecutor exec_;
};

// Options of ThreadPool: ThreadPool({.processes = 4, .initializer = fn}).
struct ThreadPoolPoolOptions {
  std::optional<int> processes{};       // threads; unset: the number of CPUs
  std::function<void()> initializer{};  // run once in each worker thread
};

// multiprocessing.pool.ThreadPool: the Pool API on threads.
class ThreadPool final : public detail::PoolFront<ThreadPoolExecutor> {
 public:
  // As many threads as CPUs.
  ThreadPool() : ThreadPool(ThreadPoolPoolOptions{}) {}
  // `processes` threads; std::invalid_argument if < 1.
  explicit ThreadPool(int processes) : ThreadPool(ThreadPoolPoolOptions{.processes = processes}) {}
  // ThreadPool({.processes = 4, .initializer = fn}).
  explicit ThreadPool(ThreadPoolPoolOptions options)
      : PoolFront(detail::resolve_processes(options.processes)),
        exec_(ThreadPoolOptions{
            .max_workers = static_cast<int>(detail::resolve_processes(options.processes)),
            .thread_name_prefix = "ThreadPool",
            .initializer = std::move(options.initializer)}) {}
  ~ThreadPool() { terminate(); }

 private:
  ThreadPoolExecutor& exec() override { return exec_; }
  void terminate_now() override { exec_.shutdown(false, true); }

  ThreadPoolExecutor exec_;
};

}  // namespace concur
