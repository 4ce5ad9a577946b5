// The process engine: worker processes, dispatch, result collection and the failure
// model shared by every process-based face (ProcessPoolExecutor, concur::Pool).
//
// A face creates one engine and hands it tasks whose as_remote() is not null (built with
// make_remote_task, make_borrowed_remote_task or make_portable_task; see remote_call.hpp).
// The engine:
//  - encodes each task in the submitting thread (large blocks go straight to shared
//    memory), queues it, and starts workers lazily, one per submit while none is idle, up
//    to max_workers (Python's rule: blocked tasks never create more processes than that);
//  - keeps each worker's pipeline fed without over-committing: it sends ahead about
//    pipeline_budget of work per worker, measured in that worker's recent task times, so
//    no-op tasks stream while a long task is sent only to a free worker and queued work
//    stays cancellable;
//  - collects results in a collector thread started with the engine, which spins briefly
//    after activity and otherwise sleeps in epoll on the workers' doorbell, pidfds and
//    control sockets; a thread that submits also collects what is ready, and a thread
//    blocked on a result collects it itself (help_wait, leader/follower) when the
//    foundation's wait hook calls it. Done-callbacks run in whichever parent thread
//    completed the future, never in a worker;
//  - detects a worker's death through its pidfd and applies the pool's policy
//    (OnWorkerDeath), task_timeout, max_tasks_per_child and max_memory_per_child, and
//    kills a running task's worker on request (Future::cancel(kill_running));
//  - shuts down, terminates or kills with Python's semantics, and leaves no process,
//    zombie or descriptor behind on any path.
//
// For concur::Pool (issue 4): build tasks with make_remote_task<R>(fn, args...), give
// them to submit()/submit_bulk(), and wrap them in Future<R> (add_done_callback for
// apply_async's callbacks, concur::as_completed for imap_unordered). Use
// on_worker_death = replace_worker (a dead worker's task fails with WorkerDiedError),
// max_tasks_per_child for maxtasksperchild, kind = "Pool" for messages, and
// signal_workers(SIGTERM) for terminate(): pending work is cancelled at once, however
// much there is.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "concur/detail/process_launcher.hpp"
#include "concur/detail/process_transport.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/detail/shared_state.hpp"

namespace concur {

// What a process pool does when a worker process dies while it had work.
enum class OnWorkerDeath {
  // Python's behaviour: every pending and running future fails with BrokenProcessPool
  // (saying which worker died and how); later submits raise BrokenProcessPool.
  break_pool,
  // Only the task the dead worker was running fails, with WorkerDiedError (exit code or
  // signal); a new worker replaces the dead one and the rest goes on.
  replace_worker,
};

}  // namespace concur

namespace concur::detail {

struct EngineOptions {
  int max_workers = 1;
  StartMethod start_method = StartMethod::forkserver;
  std::vector<std::byte> initializer{};  // an encoded call returning void; empty: none
  std::size_t max_tasks_per_child = 0;   // 0: unlimited
  std::chrono::nanoseconds task_timeout{0};  // 0: none
  std::size_t max_memory_per_child = 0;  // bytes of anonymous RSS; 0: unlimited
  OnWorkerDeath on_worker_death = OnWorkerDeath::break_pool;
  // How much work is sent ahead to one worker, measured in its recent task durations:
  // 1 + pipeline_budget / (average task time) tasks, at most max_pipeline. Very short
  // tasks pipeline deeply (the worker never waits for the parent); tasks of
  // pipeline_budget or more are sent only when the worker is free (they stay cancellable
  // and none waits behind a long one on a busy worker while another worker idles).
  std::chrono::nanoseconds pipeline_budget{100'000};
  std::size_t max_pipeline = 64;
  std::int64_t worker_spin_ns = 50'000;     // a worker's bounded spin for the next request
  std::int64_t collector_spin_ns = 100'000; // the collector's spin after its last event
  std::string kind = "process pool";        // for messages ("process pool", "Pool")
  // Testing: a pause between deciding to kill a running task's worker and the kill, which
  // lets the worker finish that task and reach the next meanwhile (the race the kill
  // fence closes; see WorkerLink::fence_kill).
  std::chrono::nanoseconds debug_kill_delay{0};
  // Testing: a pause of the collector thread after it has released everything, before it
  // ends (what shutdown(wait) must wait for; see ProcessEngineHygiene).
  std::chrono::nanoseconds debug_collector_exit_delay{0};
  LaunchOptions launch{};
  TransportConfig transport{};
};

// One worker as seen from outside (tests, Pool).
//
struct WorkerInfo {
  pid_t pid = 0;
  std::size_t tasks_sent = 0;
};

class ProcessEngine : public std::enable_shared_from_this<ProcessEngine> {
 public:
  // Validates the options (std::invalid_argument) and prepares the start method: for
  // fork this forks the zygote now, for forkserver it connects to (or starts) the server.
  static std::shared_ptr<ProcessEngine> create(EngineOptions options);
  virtual ~ProcessEngine() = default;

  // Accepts tasks whose as_remote() is not null: encodes them in this thread (an encoding
  // error fails that task's future with SerializationError), then queues them. Throws
  // ShutdownError after shutdown, BrokenProcessPool once broken.
  virtual void submit(TaskPtr task) = 0;
  virtual void submit_bulk(std::span<TaskPtr> tasks) = 0;

  // Python's shutdown(wait, cancel_futures). Safe to call more than once, from any thread
  // (also from a done-callback: it then never waits for itself).
  virtual void shutdown(bool wait, bool cancel_futures) = 0;
  // shutdown(false, true), then sends `sig` to every worker; running tasks fail with
  // BrokenProcessPool. Python's terminate_workers (SIGTERM) / kill_workers (SIGKILL).
  virtual void signal_workers(int sig) = 0;
  // Kills the worker running this task and cancels the task (Future::cancel(kill_running)).
  virtual bool kill_task(RemoteWork& work) noexcept = 0;

  // Collects results while waiting for `state` (a waiting thread helping instead of
  // sleeping): returns when state is done, or false when the deadline passed first or
  // when the bounded help is over (the caller then sleeps on the state).
  virtual bool help_wait(const SharedState& state, const Deadline& deadline) noexcept = 0;

  virtual int max_workers() const noexcept = 0;
  virtual std::vector<WorkerInfo> workers() const = 0;
  // Worker processes started so far (including replaced ones).
  virtual std::size_t processes_started() const noexcept = 0;
  virtual bool broken() const noexcept = 0;
  virtual StartMethod start_method() const noexcept = 0;

  // Testing: the next request sent fails its integrity check in the worker.
  virtual void corrupt_next_request() noexcept = 0;
  // Testing: threads collecting for the collector right now (waiting in help_wait, or
  // submitting right after waking a worker). Workers skip the doorbell while it is not 0.
  virtual int helping_threads() const noexcept = 0;

 protected:
  ProcessEngine() = default;
};

// ---------------------------------------------------------------- child side
// Runs the pool worker role (src/process/worker.cpp).
[[noreturn]] void run_pool_worker(int control, const Hello& hello, std::vector<UniqueFd> fds);
// Runs the call_once role: one encoded call; the outcome goes back on the control socket.
[[noreturn]] void run_call_once(int control, const Hello& hello, std::vector<UniqueFd> fds);

}  // namespace concur::detail
