// Non-template machinery of concur/async.hpp: the loop registry of live tasks, the
// per-loop default thread pool, the "current loop" of concur::run, and group waits.
#include "concur/detail/async_config.hpp"

#include <asio/execution/context.hpp>
#include <asio/query.hpp>

#include <algorithm>
#include <thread>

#include "concur/async.hpp"

namespace concur::detail {

bool is_cancellation(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError&) {
    return true;
  } catch (const asio::system_error& se) {
    return se.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

asio::any_io_executor base_executor(const asio::any_io_executor& ex) {
  if (const auto* s = ex.target<asio::strand<asio::any_io_executor>>()) return s->get_inner_executor();
  if (const auto* s = ex.target<asio::strand<asio::io_context::executor_type>>())
    return s->get_inner_executor();
  return ex;
}

namespace {
thread_local const asio::any_io_executor* t_current_loop = nullptr;

// Python's default executor: min(32, cpus + 4) threads, started with the first call.
class DefaultPoolService : public asio::execution_context::service {
 public:
  using key_type = DefaultPoolService;
  static inline asio::execution_context::id id;
  explicit DefaultPoolService(asio::execution_context& ctx) : service(ctx) {}
  ~DefaultPoolService() override { shutdown(); }

  ThreadPoolExecutor& pool() {
    std::lock_guard lock(mutex_);
    if (!pool_) pool_.emplace(ThreadPoolOptions{.thread_name_prefix = "asyncio_to_thread"});
    return *pool_;
  }

 private:
  // Services shut down in reverse order of creation, so the io_context's scheduler is
  // still there while queued calls finish and post their results back.
  void shutdown() override {
    std::lock_guard lock(mutex_);
    if (pool_) {
      pool_->shutdown(true);
      pool_.reset();
    }
  }
  std::mutex mutex_;
  std::optional<ThreadPoolExecutor> pool_;
};

asio::execution_context& context_of(const asio::any_io_executor& ex) {
  return asio::query(ex, asio::execution::context);
}
}  // namespace

const asio::any_io_executor* current_loop() noexcept { return t_current_loop; }

CurrentLoopScope::CurrentLoopScope(const asio::any_io_executor& ex) noexcept
    : previous_(t_current_loop), ex_(ex) {
  t_current_loop = &ex_;
}
CurrentLoopScope::~CurrentLoopScope() { t_current_loop = previous_; }

ThreadPoolExecutor& default_thread_pool(const asio::any_io_executor& ex) {
  return asio::use_service<DefaultPoolService>(context_of(ex)).pool();
}

void TaskRegistry::add(const std::shared_ptr<TaskCore>& task) {
  std::lock_guard lock(mutex_);
  live_.emplace(task.get(), task);
}
void TaskRegistry::remove(const TaskCore* task) {
  std::shared_ptr<TaskCore> last;  // released outside the lock
  std::lock_guard lock(mutex_);
  auto it = live_.find(task);
  if (it != live_.end()) {
    last = std::move(it->second);
    live_.erase(it);
  }
}
std::vector<std::shared_ptr<TaskCore>> TaskRegistry::snapshot() {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<TaskCore>> out;
  out.reserve(live_.size());
  for (auto& [k, v] : live_) out.push_back(v);
  return out;
}
std::size_t TaskRegistry::size() {
  std::lock_guard lock(mutex_);
  return live_.size();
}

LoopLife& loop_life(const asio::any_io_executor& ex) { return asio::use_service<LoopLife>(context_of(ex)); }

TaskRegistry& task_registry(const asio::any_io_executor& ex) {
  return asio::use_service<TaskRegistry>(context_of(ex));
}

asio::awaitable<void> await_group(const std::vector<std::shared_ptr<TaskCore>>& tasks,
                                  bool stop_on_error) {
  if (tasks.empty()) co_return;
  auto group = std::make_shared<GroupState>();
  group->remaining = tasks.size();
  group->stop_on_error = stop_on_error;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    std::weak_ptr<TaskCore> weak = tasks[i];
    tasks[i]->add_done_callback([group, i, weak] {
      auto t = weak.lock();
      group->member_done(i, t && t->error() != nullptr);
    });
  }
  std::exception_ptr stop;
  try {
    co_await group->event.wait();
  } catch (...) {
    stop = std::current_exception();  // we were cancelled
  }
  if (!stop) {
    std::lock_guard lock(group->mutex);
    if (group->first_error && stop_on_error) stop = tasks[*group->first_error]->error();
  }
  if (stop) {
    for (auto& t : tasks) t->request_cancel();
    for (auto& t : tasks) co_await t->join(false);
    std::rethrow_exception(stop);
  }
}

}  // namespace concur::detail
