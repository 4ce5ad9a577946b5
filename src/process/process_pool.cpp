// ProcessPoolExecutor: a thin face over the process engine.
#include "concur/process_pool.hpp"

#include <signal.h>

#include <algorithm>
#include <stdexcept>

#include "process/internal.hpp"

namespace concur {

namespace {

detail::EngineOptions engine_options(ProcessPoolOptions o) {
  detail::EngineOptions e;
  e.max_workers = o.max_workers ? *o.max_workers : static_cast<int>(detail::online_cpus());
  if (e.max_workers < 1) throw std::invalid_argument("max_workers must be greater than 0");
  e.start_method = o.start_method;
  e.initializer = o.initializer.encoded();
  e.max_tasks_per_child = o.max_tasks_per_child;
  e.task_timeout = o.task_timeout;
  e.max_memory_per_child = o.max_memory_per_child;
  e.on_worker_death = o.on_worker_death;
  e.kind = "process pool";
  return e;
}

}  // namespace

ProcessPoolExecutor::ProcessPoolExecutor() : ProcessPoolExecutor(ProcessPoolOptions{}) {}

ProcessPoolExecutor::ProcessPoolExecutor(int max_workers)
    : ProcessPoolExecutor(ProcessPoolOptions{.max_workers = max_workers}) {}

ProcessPoolExecutor::ProcessPoolExecutor(ProcessPoolOptions options)
    : engine_(detail::ProcessEngine::create(engine_options(std::move(options)))) {}

ProcessPoolExecutor::~ProcessPoolExecutor() { engine_->shutdown(true, false); }

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  engine_->shutdown(wait, cancel_futures);
}

void ProcessPoolExecutor::terminate_workers() { engine_->signal_workers(SIGTERM); }
void ProcessPoolExecutor::kill_workers() { engine_->signal_workers(SIGKILL); }

int ProcessPoolExecutor::max_workers() const noexcept { return engine_->max_workers(); }
StartMethod ProcessPoolExecutor::start_method() const noexcept { return engine_->start_method(); }
std::size_t ProcessPoolExecutor::processes_started() const noexcept {
  return engine_->processes_started();
}
std::vector<pid_t> ProcessPoolExecutor::worker_pids() const {
  std::vector<pid_t> out;
  for (auto& w : engine_->workers()) out.push_back(w.pid);
  return out;
}

void ProcessPoolExecutor::enqueue(detail::TaskPtr task) {
  if (!task->as_remote()) {
    const detail::SharedState& state = *task;
    throw SerializationError(
        "concur: this task cannot run in a process pool (" + detail::demangle(typeid(state).name()) +
        "): its function must be a function pointer or a lambda without captures, and its "
        "arguments and result serializable; submit it to the ProcessPoolExecutor directly to "
        "have the offending type named at compile time");
  }
  engine_->submit(std::move(task));
}

void ProcessPoolExecutor::enqueue_bulk(std::span<detail::TaskPtr> tasks) {
  for (auto& t : tasks)
    if (!t->as_remote()) {
      enqueue(std::move(t));  // throws the explanation
    }
  engine_->submit_bulk(tasks);
}

std::size_t ProcessPoolExecutor::default_map_window() const {
  return std::max<std::size_t>(64, 4 * static_cast<std::size_t>(engine_->max_workers()));
}

std::size_t ProcessPoolExecutor::map_window(std::size_t chunk) const noexcept {
  // Enough chunks in flight to keep every worker's pipeline fed while the consumer reads.
  std::size_t units = std::max<std::size_t>(8, 4 * static_cast<std::size_t>(engine_->max_workers()));
  if (chunk <= 1) return std::max<std::size_t>(64, units);
  return units * chunk;
}

}  // namespace concur
