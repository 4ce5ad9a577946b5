// concur/detail/async_task.hpp: machinery behind concur::Task, gather, wait_for,
// as_completed, to_thread and the co_await of concur futures. Users never name it.
#pragma once

#include "concur/detail/async_config.hpp"  // before any Asio header

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/execution_context.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/system_error.hpp>

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "concur/async_sync.hpp"
#include "concur/detail/async_waiters.hpp"
#include "concur/errors.hpp"
#include "concur/thread_pool.hpp"

namespace concur::detail {

// T, or std::monostate for void (what a tuple or vector of results holds).
template <class T>
using result_slot_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// Whether `e` is a cancellation: concur::CancelledError or Asio's operation_aborted.
bool is_cancellation(const std::exception_ptr& e) noexcept;

// The io_context executor under a strand (tasks get strands of their own; a strand of a
// strand would serialise every descendant of a coroutine with it).
asio::any_io_executor base_executor(const asio::any_io_executor& ex);

// The executor of the loop concur::run is running on this thread, or nullptr.
const asio::any_io_executor* current_loop() noexcept;

// Marks this thread as running `ex`'s loop for the lifetime of the scope.
class CurrentLoopScope {
 public:
  explicit CurrentLoopScope(const asio::any_io_executor& ex) noexcept;
  ~CurrentLoopScope();
  CurrentLoopScope(const CurrentLoopScope&) = delete;
  CurrentLoopScope& operator=(const CurrentLoopScope&) = delete;

 private:
  const asio::any_io_executor* previous_;
  asio::any_io_executor ex_;
};

// The per-loop thread pool behind to_thread (Python's default executor): a
// ThreadPoolExecutor of min(32, cpus + 4) threads, created on first use, shut down
// (waiting) when the loop's io_context is destroyed.
ThreadPoolExecutor& default_thread_pool(const asio::any_io_executor& ex);

class TaskCore;

// Live tasks of one execution context, so concur::run can cancel what main left behind.
class TaskRegistry : public asio::execution_context::service {
 public:
  using key_type = TaskRegistry;
  static inline asio::execution_context::id id;
  explicit TaskRegistry(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}
  void add(const std::shared_ptr<TaskCore>& task);
  void remove(const TaskCore* task);
  std::vector<std::shared_ptr<TaskCore>> snapshot();
  std::size_t size();

 private:
  void shutdown() override {}
  std::mutex mutex_;
  std::unordered_map<const TaskCore*, std::shared_ptr<TaskCore>> live_;
};

TaskRegistry& task_registry(const asio::any_io_executor& ex);

// The type-independent part of a task: strand, cancellation signal, completion.
class TaskCore : public std::enable_shared_from_this<TaskCore> {
 public:
  explicit TaskCore(const asio::any_io_executor& base)
      : strand_(asio::make_strand(base)), registry_(&task_registry(base)), life_(&loop_life(base)) {}
  virtual ~TaskCore() = default;

  // Requests cancellation; false if the task had already finished.
  bool request_cancel() {
    InflightPost inflight(life_);  // cancel() may be called from any thread
    std::lock_guard lock(mutex_);
    if (done_) return false;
    cancel_requested_ = true;
    // Signals are not thread-safe: emit on the task's own strand. (Posting under our
    // mutex is fine: post never calls back into the task.)
    asio::post(*strand_, [self = shared_from_this()] {
      bool done;
      {
        std::lock_guard guard(self->mutex_);
        done = self->done_;
      }
      if (!done) self->signal_.emit(asio::cancellation_type::terminal);
    });
    return true;
  }
  bool done() const {
    std::lock_guard lock(mutex_);
    return done_;
  }
  bool cancel_requested() const {
    std::lock_guard lock(mutex_);
    return cancel_requested_;
  }
  std::exception_ptr error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }
  // Runs `cb` on completion (in the task's strand), or now if already done.
  void add_done_callback(std::function<void()> cb) {
    {
      std::lock_guard lock(mutex_);
      if (!done_) {
        callbacks_.push_back(std::move(cb));
        return;
      }
    }
    cb();
  }
  // Awaits completion; cancelling the waiter does not cancel the task.
  asio::awaitable<void> join(bool cancellable) {
    if (cancellable) co_await done_event_.wait();
    else co_await done_event_.wait_uncancellable();
  }

 protected:
  void finish(std::exception_ptr err) {
    if (err && is_cancellation(err)) {
      std::lock_guard lock(mutex_);
      if (cancel_requested_) err = std::make_exception_ptr(CancelledError("task was cancelled"));
    }
    std::vector<std::function<void()>> cbs;
    // A finished task lets go of its strand at once: the strand must not outlive the
    // io_context, while Task handles may. (We are running on it; the strand's own
    // machinery keeps it alive until this step returns.)
    std::optional<asio::strand<asio::any_io_executor>> strand;
    {
      std::lock_guard lock(mutex_);
      error_ = err;
      done_ = true;
      cbs.swap(callbacks_);
      strand.swap(strand_);
    }
    done_event_.set();
    for (auto& cb : cbs) cb();
    registry_->remove(this);
  }

  std::optional<asio::strand<asio::any_io_executor>> strand_;  // reset once done
  asio::cancellation_signal signal_;
  TaskRegistry* registry_;
  LoopLife* life_;
  mutable std::mutex mutex_;
  bool done_ = false;
  bool cancel_requested_ = false;
  std::exception_ptr error_;
  std::vector<std::function<void()>> callbacks_;
  AsyncEvent done_event_;
};

template <class T>
class TaskState final : public TaskCore {
 public:
  using TaskCore::TaskCore;

  // Starts `aw` on the task's strand. Called once, right after construction.
  void start(asio::awaitable<T> aw) {
    registry_->add(shared_from_this());
    auto self = std::static_pointer_cast<TaskState>(shared_from_this());
    asio::co_spawn(
        *strand_,
        [self, aw = std::move(aw)]() mutable -> asio::awaitable<void> {
          std::exception_ptr err;
          try {
            // Like asyncio, a new task first runs when its creator next yields (co_spawn
            // would otherwise start it inline in create_task).
            co_await asio::post(asio::use_awaitable);
            if (self->cancel_requested()) throw CancelledError("task was cancelled before it started");
            if constexpr (std::is_void_v<T>) {
              co_await std::move(aw);
            } else {
              self->value_.emplace(co_await std::move(aw));
            }
          } catch (...) {
            err = std::current_exception();
          }
          self->finish(err);
        },
        asio::bind_cancellation_slot(signal_.slot(), asio::detached));
  }

  // The result once done(): the value, or the task's exception rethrown. `take` moves
  // the value out (for move-only results; the task then holds a moved-from value).
  result_slot_t<T> result(bool take = false) {
    if (auto e = error()) std::rethrow_exception(e);
    if constexpr (std::is_void_v<T>) {
      return {};
    } else if constexpr (std::is_copy_constructible_v<T>) {
      if (!take) return *value_;
      return std::move(*value_);
    } else {
      return std::move(*value_);
    }
  }

 private:
  std::optional<result_slot_t<T>> value_;
};

template <class T>
std::shared_ptr<TaskState<T>> spawn_task(const asio::any_io_executor& ex, asio::awaitable<T> aw) {
  auto st = std::make_shared<TaskState<T>>(base_executor(ex));
  st->start(std::move(aw));
  return st;
}

// Completion of a gather / wait_for group: the event fires when all members are done,
// or (stop_on_error) at the first failure, or (stop_on_first) at the first completion.
struct GroupState {
  std::mutex mutex;
  std::size_t remaining = 0;
  bool stop_on_error = false;
  bool stop_on_first = false;
  std::optional<std::size_t> first_error;
  std::optional<std::size_t> first_done;
  AsyncEvent event;

  void member_done(std::size_t index, bool failed) {
    bool fire = false;
    {
      std::lock_guard lock(mutex);
      --remaining;
      if (!first_done) first_done = index;
      if (failed && !first_error) {
        first_error = index;
        if (stop_on_error) fire = true;
      }
      if (remaining == 0 || stop_on_first) fire = true;
    }
    if (fire) event.set();
  }
};

// Waits for `tasks` under the group's rule. On our own cancellation, or when a member
// failed and stop_on_error is set, cancels every member and joins them all before
// rethrowing, so no child outlives the call.
asio::awaitable<void> await_group(const std::vector<std::shared_ptr<TaskCore>>& tasks,
                                  bool stop_on_error);

// ---------------------------------------------------------------- external completions
// One value crossing from a foreign thread (a pool worker, a future's completer) back
// into a coroutine. The first of complete / cancel claims it; the coroutine is resumed by
// a post to its own executor.
struct Resumer {
  virtual void post(std::exception_ptr e) = 0;
  virtual ~Resumer() = default;
};

template <class Handler>
class ResumerOp final : public Resumer {
 public:
  explicit ResumerOp(Handler&& h)
      : handler_(std::move(h)),
        work_(asio::prefer(asio::get_associated_executor(handler_, asio::any_io_executor()),
                           asio::execution::outstanding_work.tracked)),
        slot_(asio::get_associated_cancellation_slot(handler_)),
        life_(&loop_life(asio::get_associated_executor(handler_, asio::any_io_executor()))) {}
  asio::cancellation_slot& slot() noexcept { return slot_; }
  void post(std::exception_ptr e) override {
    InflightPost guard(life_);  // we may be on a foreign thread
    auto ex = work_;
    asio::post(ex, [self = std::unique_ptr<ResumerOp>(this), e]() mutable {
      if (self->slot_.is_connected()) self->slot_.clear();
      Handler h = std::move(self->handler_);
      self.reset();
      std::move(h)(e);
    });
  }

 private:
  Handler handler_;
  decltype(asio::prefer(std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
                        asio::execution::outstanding_work.tracked)) work_;
  asio::cancellation_slot slot_;
  LoopLife* life_;
};

template <class T>
class Rendezvous {
 public:
  // Claims the right to complete; exactly one caller ever gets true.
  bool try_claim() noexcept { return !claimed_.exchange(true, std::memory_order_acq_rel); }
  bool claimed() const noexcept { return claimed_.load(std::memory_order_acquire); }

  // After a successful try_claim(): store the outcome, then finish().
  template <class... A>
  void set_value(A&&... a) {
    if constexpr (!std::is_void_v<T>) value_.emplace(std::forward<A>(a)...);
  }
  void set_exception(std::exception_ptr e) noexcept { error_ = std::move(e); }
  void finish() {
    on_cancel_ = nullptr;  // breaks the future -> callback -> rendezvous -> future cycle
    std::exchange(resumer_, nullptr)->post(error_);
  }

  // Called, on the waiting coroutine's executor, when cancellation wins the race.
  std::function<void()> on_cancel_;
  Resumer* resumer_ = nullptr;
  std::optional<result_slot_t<T>> value_;
  std::exception_ptr error_;

 private:
  std::atomic<bool> claimed_{false};
};

template <class T>
struct RendezvousCancelHook {
  explicit RendezvousCancelHook(Rendezvous<T>* rv) noexcept : r(rv) {}
  Rendezvous<T>* r;
  void operator()(asio::cancellation_type type) {
    if (type == asio::cancellation_type::none || !r->try_claim()) return;
    r->set_exception(std::make_exception_ptr(CancelledError("wait was cancelled")));
    if (r->on_cancel_) r->on_cancel_();
    r->finish();
  }
};

// Suspends until `r` completes; `start(r)` launches the foreign work once the coroutine
// is parked and cancellable.
template <class T, class Start>
asio::awaitable<T> await_rendezvous(std::shared_ptr<Rendezvous<T>> r, Start start) {
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(
      [&r, &start](auto handler) {
        using H = decltype(handler);
        auto* op = new ResumerOp<H>(std::move(handler));
        r->resumer_ = op;
        if (op->slot().is_connected()) op->slot().template emplace<RendezvousCancelHook<T>>(r.get());
        start(r);
      },
      asio::use_awaitable);
  if constexpr (!std::is_void_v<T>) co_return std::move(*r->value_);
}

template <class T, class Fn>
asio::awaitable<T> to_thread_impl(Fn fn) {
  auto ex = co_await asio::this_coro::executor;
  auto& pool = default_thread_pool(ex);
  auto r = std::make_shared<Rendezvous<T>>();
  co_return co_await await_rendezvous<T>(r, [&pool, &fn](const std::shared_ptr<Rendezvous<T>>& rv) {
    // The result travels through the rendezvous (so move-only results work); the
    // executor's own Future<void> is not needed.
    pool.submit([rv, fn = std::move(fn)]() mutable {
      if (rv->claimed()) return;  // the awaiting coroutine was cancelled before we started
      std::exception_ptr err;
      std::optional<result_slot_t<T>> value;
      try {
        if constexpr (std::is_void_v<T>) fn();
        else value.emplace(fn());
      } catch (...) {
        err = std::current_exception();
      }
      if (!rv->try_claim()) return;
      if (err) rv->set_exception(err);
      else if constexpr (!std::is_void_v<T>) rv->set_value(std::move(*value));
      rv->finish();
    });
  });
}

}  // namespace concur::detail
