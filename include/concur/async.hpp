// concur/async.hpp: asyncio for C++ on Asio coroutines.
//
// Asio is the event loop (asio::io_context, asio::awaitable, co_spawn); this header adds
// what asyncio programs expect on top of it:
//   run(main)                      asyncio.run: make a loop, run main to the end, return
//                                  its value or rethrow; cancels tasks main left behind.
//   sleep(d)                       asyncio.sleep
//   create_task(aw) -> Task<T>     asyncio.create_task: started at once, awaitable
//                                  (co_await task.wait()) and cancellable (task.cancel())
//   gather(aws...)                 asyncio.gather: results as a tuple (a vector for a
//                                  range); the first exception cancels the others and
//                                  propagates, or return_exceptions collects Outcomes
//   wait_for(aw, timeout)          asyncio.wait_for: concur::TimeoutError on expiry
//   as_completed(aws)              results in completion order
//   to_thread(fn, args...)         asyncio.to_thread: run blocking code on the loop's
//                                  default thread pool
//   wrap_future(fut)               await a concur::Future<T> (asyncio.wrap_future)
//   run_in_executor(ex, fn, ...)   loop.run_in_executor with any concur::Executor
//
// Guarantees:
// - Nothing here blocks the loop thread. Work finished on another thread (a pool worker,
//   a future's completer) resumes the awaiting coroutine by a post to that coroutine's
//   own executor, never inline on the foreign thread.
// - Tasks (and the children of gather, wait_for and as_completed) each run on a strand
//   of the loop, so they may run in parallel on a multi-threaded io_context while each
//   task's own steps, and the cancellation signals sent to it, are serialised.
// - Structured: gather, wait_for and as_completed never return while a child they
//   spawned is still running; children are cancelled and joined first.
// - Cancellation is delivered to the operation the coroutine is suspended on. concur's
//   operations then throw concur::CancelledError; Asio's own (sockets, timers) throw
//   asio::system_error(operation_aborted), which a cancelled Task reports as
//   CancelledError.
//
// Compiler note (g++ 12.2): inside a coroutine, a lambda whose init-capture moves from a
// local, written directly in a co_await expression (`co_await to_thread([s =
// std::move(s)] {...})`), leaves the local owning the moved buffer too: a double free.
// Name the lambda first (`auto job = [s = std::move(s)] {...}; co_await
// to_thread(std::move(job));`). clang is not affected.
#pragma once

#include "concur/detail/async_config.hpp"  // before any Asio header

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "concur/async_sync.hpp"
#include "concur/detail/async_task.hpp"
#include "concur/errors.hpp"
#include "concur/executor.hpp"
#include "concur/future.hpp"

namespace concur {

// ---------------------------------------------------------------- Task
// Handle to a coroutine running concurrently on the loop (asyncio.Task). Copies share
// the task. Destroying the handle does not cancel the task.
template <class T>
class Task {
 public:
  // An empty handle.
  Task() = default;
  explicit Task(std::shared_ptr<detail::TaskState<T>> st) : st_(std::move(st)) {}

  // Whether the task has finished (value, exception or cancellation).
  bool done() const { return st_->done(); }
  // Whether the task finished by being cancelled.
  bool cancelled() const {
    if (!st_->done()) return false;
    auto e = st_->error();
    return e && detail::is_cancellation(e);
  }
  // Requests cancellation: CancelledError is raised at the point where the task is
  // suspended. Returns false if it had already finished.
  bool cancel() { return st_->request_cancel(); }
  // Awaits the task and returns its value or rethrows its exception (Python's
  // `await task`). Cancelling the awaiting coroutine also cancels the task.
  asio::awaitable<T> wait() const {
    auto st = st_;
    try {
      co_await st->join(true);
    } catch (const CancelledError&) {
      st->request_cancel();
      throw;
    }
    if constexpr (std::is_void_v<T>) {
      st->result();
    } else {
      co_return st->result();
    }
  }
  // The result of a finished task; throws InvalidStateError while it runs.
  detail::result_slot_t<T> result() const {
    if (!st_->done()) throw InvalidStateError("task is not done");
    return st_->result();
  }
  // The task's exception (nullptr if it returned normally); InvalidStateError while it runs.
  std::exception_ptr exception() const {
    if (!st_->done()) throw InvalidStateError("task is not done");
    return st_->error();
  }
  // Calls `fn()` when the task finishes (on the task's strand), or now if finished.
  void add_done_callback(std::function<void()> fn) { st_->add_done_callback(std::move(fn)); }
  // Whether this handle refers to a task.
  explicit operator bool() const noexcept { return st_ != nullptr; }

  // Machinery access for gather & co.
  const std::shared_ptr<detail::TaskState<T>>& state() const noexcept { return st_; }

 private:
  std::shared_ptr<detail::TaskState<T>> st_;
};

// Starts `aw` as a task on `ex`'s loop (its own strand).
template <class T>
Task<T> create_task(const asio::any_io_executor& ex, asio::awaitable<T> aw) {
  return Task<T>(detail::spawn_task(ex, std::move(aw)));
}

// Starts `aw` as a task on the loop concur::run is running on this thread; throws
// InvalidStateError when called outside concur::run (pass an executor then).
template <class T>
Task<T> create_task(asio::awaitable<T> aw) {
  const auto* loop = detail::current_loop();
  if (!loop) throw InvalidStateError("create_task: no running loop on this thread");
  return create_task(*loop, std::move(aw));
}

// ---------------------------------------------------------------- run
// Options for concur::run.
struct RunOptions {
  // Threads calling io_context::run() (the caller's thread is one of them).
  unsigned threads = 1;
};

namespace detail {
template <class T>
T run_impl(asio::awaitable<T> main, RunOptions opts) {
  unsigned threads = opts.threads ? opts.threads : 1;
  std::optional<asio::io_context> ctx_storage;
  ctx_storage.emplace(static_cast<int>(threads));
  asio::io_context& ctx = *ctx_storage;
  asio::any_io_executor ex = ctx.get_executor();
  auto main_task = spawn_task(ex, std::move(main));
  TaskRegistry& registry = task_registry(ex);
  asio::co_spawn(
      asio::make_strand(ex),
      [&ctx, &registry, main_task]() -> asio::awaitable<void> {
        co_await main_task->join(false);
        // Like asyncio.run: cancel whatever main left running, and wait for it.
        for (auto rest = registry.snapshot(); !rest.empty(); rest = registry.snapshot()) {
          for (auto& t : rest) t->request_cancel();
          for (auto& t : rest) co_await t->join(false);
        }
        ctx.stop();
      },
      asio::detached);
  auto body = [&ctx, &ex] {
    CurrentLoopScope scope(ex);
    ctx.run();
  };
  std::vector<std::thread> extra;
  extra.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i) extra.emplace_back(body);
  body();
  for (auto& t : extra) t.join();
  // Foreign threads (pool workers, future completers) may still be inside a post to us.
  for (auto& life = loop_life(ex); life.inflight.load(std::memory_order_acquire) != 0;) std::this_thread::yield();
  // Take the outcome out before the io_context goes (which joins the default thread pool
  // and destroys leftover handlers).
  std::exception_ptr error = main_task->error();
  std::optional<result_slot_t<T>> value;
  if (!error) value.emplace(main_task->result(true));
  main_task.reset();
  ctx_storage.reset();
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*value);
}
}  // namespace detail

// Runs `main` on a new event loop until it finishes (asyncio.run) and returns its value
// or rethrows its exception. Tasks still running when main ends are cancelled and
// awaited, then the loop and its default thread pool are torn down.
template <class T>
T run(asio::awaitable<T> main, RunOptions opts = {}) {
  return detail::run_impl(std::move(main), opts);
}

// Same, taking a callable that returns the awaitable (e.g. a coroutine lambda). The
// callable is kept alive until the loop ends, so its captures stay valid.
template <class F>
  requires std::is_invocable_v<F&>
auto run(F main, RunOptions opts = {}) {
  return detail::run_impl(main(), opts);
}

// ---------------------------------------------------------------- sleep
// Suspends the coroutine for `d` without blocking the loop (asyncio.sleep).
template <class Rep, class Period>
asio::awaitable<void> sleep(std::chrono::duration<Rep, Period> d) {
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           std::chrono::duration_cast<asio::steady_timer::duration>(d));
  asio::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::operation_aborted) throw CancelledError("sleep was cancelled");
  if (ec) throw asio::system_error(ec);
}

// Yields to the loop once (asyncio.sleep(0)).
inline asio::awaitable<void> yield_now() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

// ---------------------------------------------------------------- futures & executors
// Awaits a concur::Future<T> without blocking the loop (asyncio.wrap_future). The
// coroutine is resumed on its own executor. Cancelling the awaiting coroutine stops the
// wait and calls fut.cancel() (which only succeeds if the work has not started).
template <class T>
asio::awaitable<T> wrap_future(Future<T> fut) {
  auto r = std::make_shared<detail::Rendezvous<T>>();
  r->on_cancel_ = [fut]() mutable { fut.cancel(); };
  co_return co_await detail::await_rendezvous<T>(
      r, [&fut](const std::shared_ptr<detail::Rendezvous<T>>& rv) {
        fut.add_done_callback([rv](const Future<T>& done) {
          if (!rv->try_claim()) return;
          try {
            if constexpr (std::is_void_v<T>) {
              done.result();
            } else {
              rv->set_value(done.result());
            }
          } catch (...) {
            rv->set_exception(std::current_exception());
          }
          rv->finish();
        });
      });
}

// Submits fn(args...) to `executor` now (like loop.run_in_executor) and returns an
// awaitable of its result. Works with every concur::Executor: thread pool, process pool.
template <class F, class... Args>
auto run_in_executor(Executor& executor, F&& fn, Args&&... args) {
  return wrap_future(executor.submit(std::forward<F>(fn), std::forward<Args>(args)...));
}

// Overload for a concrete executor type, so executor-specific submit() overloads (e.g.
// a process pool's registered functions) are used.
template <class E, class F, class... Args>
  requires(std::is_base_of_v<Executor, E> && !std::is_same_v<E, Executor>)
auto run_in_executor(E& executor, F&& fn, Args&&... args) {
  return wrap_future(executor.submit(std::forward<F>(fn), std::forward<Args>(args)...));
}

// Runs fn(args...) on the loop's default thread pool and awaits the result
// (asyncio.to_thread). fn and args are copied/moved into the call. If the awaiting
// coroutine is cancelled before a pool thread picks the call up, it never runs.
template <class F, class... Args>
auto to_thread(F&& fn, Args&&... args) {
  using R = std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>;
  auto call = [f = std::forward<F>(fn), ... a = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(f, a...);
  };
  return detail::to_thread_impl<R>(std::move(call));
}

// ---------------------------------------------------------------- gather & co.
// Outcome of one awaitable under gather(return_exceptions, ...): a value or an exception.
template <class T>
class Outcome {
 public:
  // Outcome holding a value.
  explicit Outcome(detail::result_slot_t<T> v) : v_(std::move(v)) {}
  // Outcome holding an exception.
  explicit Outcome(std::exception_ptr e) : v_(std::move(e)) {}
  // Whether it holds a value.
  bool has_value() const noexcept { return v_.index() == 0; }
  // The value; rethrows the exception if there is one.
  const detail::result_slot_t<T>& value() const {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  // The value, moved out; rethrows the exception if there is one.
  detail::result_slot_t<T> take() {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::move(std::get<0>(v_));
  }
  // The exception, or nullptr.
  std::exception_ptr error() const noexcept {
    return has_value() ? nullptr : std::get<1>(v_);
  }

 private:
  std::variant<detail::result_slot_t<T>, std::exception_ptr> v_;
};

// Tag asking gather to collect exceptions instead of propagating the first one.
struct ReturnExceptions {};
// gather(return_exceptions, ...): every result comes back as an Outcome.
inline constexpr ReturnExceptions return_exceptions{};

namespace detail {
template <class A>
struct awaited;
template <class T>
struct awaited<asio::awaitable<T>> {
  using type = T;
  static asio::awaitable<T> make(asio::awaitable<T> a) { return a; }
};
template <class T>
struct awaited<Task<T>> {
  using type = T;
  static asio::awaitable<T> make(const Task<T>& t) { return t.wait(); }
};
template <class T>
struct awaited<Future<T>> {
  using type = T;
  static asio::awaitable<T> make(Future<T> f) { return wrap_future(std::move(f)); }
};
template <class A>
using awaited_t = typename awaited<std::remove_cvref_t<A>>::type;
template <class A>
asio::awaitable<awaited_t<A>> to_awaitable(A&& a) {
  return awaited<std::remove_cvref_t<A>>::make(std::forward<A>(a));
}

template <class... T>
asio::awaitable<std::vector<std::shared_ptr<TaskCore>>> spawn_all(
    std::tuple<std::shared_ptr<TaskState<T>>...>& states, std::tuple<asio::awaitable<T>...>& aws) {
  auto ex = co_await asio::this_coro::executor;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((std::get<I>(states) = spawn_task(ex, std::move(std::get<I>(aws)))), ...);
  }(std::index_sequence_for<T...>{});
  std::vector<std::shared_ptr<TaskCore>> cores;
  std::apply([&](auto&... s) { (cores.push_back(s), ...); }, states);
  co_return cores;
}

template <class... T>
asio::awaitable<std::tuple<result_slot_t<T>...>> gather_tuple(asio::awaitable<T>... aws) {
  std::tuple<std::shared_ptr<TaskState<T>>...> states;
  std::tuple<asio::awaitable<T>...> pending(std::move(aws)...);
  auto cores = co_await spawn_all<T...>(states, pending);
  co_await await_group(cores, true);
  co_return std::apply([](auto&... s) { return std::tuple<result_slot_t<T>...>(s->result(true)...); },
                       states);
}

template <class T>
Outcome<T> outcome_of(TaskState<T>& s) {
  if (auto e = s.error()) return Outcome<T>(e);
  return Outcome<T>(s.result(true));
}

template <class... T>
asio::awaitable<std::tuple<Outcome<T>...>> gather_outcomes(asio::awaitable<T>... aws) {
  std::tuple<std::shared_ptr<TaskState<T>>...> states;
  std::tuple<asio::awaitable<T>...> pending(std::move(aws)...);
  auto cores = co_await spawn_all<T...>(states, pending);
  co_await await_group(cores, false);
  co_return std::apply([](auto&... s) { return std::tuple<Outcome<T>...>(outcome_of(*s)...); }, states);
}

template <class T>
asio::awaitable<std::vector<std::shared_ptr<TaskState<T>>>> gather_range(
    std::vector<asio::awaitable<T>> aws, bool stop_on_error) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::shared_ptr<TaskState<T>>> states;
  std::vector<std::shared_ptr<TaskCore>> cores;
  states.reserve(aws.size());
  for (auto& a : aws) {
    states.push_back(spawn_task(ex, std::move(a)));
    cores.push_back(states.back());
  }
  co_await await_group(cores, stop_on_error);
  co_return states;
}
}  // namespace detail

// Runs every awaitable (asio::awaitable<T>, Task<T> or Future<T>) concurrently and
// returns their results as a tuple, void results as std::monostate. The first exception
// cancels the rest, waits for them to finish, and propagates. Cancelling the gather
// cancels every child.
template <class... A>
  requires(sizeof...(A) > 0)
auto gather(A&&... aws) {
  return detail::gather_tuple<detail::awaited_t<A>...>(detail::to_awaitable(std::forward<A>(aws))...);
}

// Like gather(aws...), but every child runs to the end and each result comes back as an
// Outcome<T> holding its value or its exception.
template <class... A>
  requires(sizeof...(A) > 0)
auto gather(ReturnExceptions, A&&... aws) {
  return detail::gather_outcomes<detail::awaited_t<A>...>(detail::to_awaitable(std::forward<A>(aws))...);
}

// Range form: results in input order (std::monostate for void).
template <class T>
asio::awaitable<std::vector<detail::result_slot_t<T>>> gather(std::vector<asio::awaitable<T>> aws) {
  auto states = co_await detail::gather_range<T>(std::move(aws), true);
  std::vector<detail::result_slot_t<T>> out;
  out.reserve(states.size());
  for (auto& s : states) out.push_back(s->result(true));
  co_return out;
}

// Range form collecting outcomes.
template <class T>
asio::awaitable<std::vector<Outcome<T>>> gather(ReturnExceptions, std::vector<asio::awaitable<T>> aws) {
  auto states = co_await detail::gather_range<T>(std::move(aws), false);
  std::vector<Outcome<T>> out;
  out.reserve(states.size());
  for (auto& s : states) out.push_back(detail::outcome_of(*s));
  co_return out;
}

// Awaits `aw` for at most `timeout` (asyncio.wait_for). On expiry the awaitable is
// cancelled and awaited, then concur::TimeoutError is thrown (unless it managed to
// produce its value while being cancelled, which is then returned).
template <class A, class Rep, class Period>
asio::awaitable<detail::awaited_t<A>> wait_for(A&& aw, std::chrono::duration<Rep, Period> timeout) {
  using T = detail::awaited_t<A>;
  auto ex = co_await asio::this_coro::executor;
  auto child = detail::spawn_task(ex, detail::to_awaitable(std::forward<A>(aw)));
  auto timed_out = std::make_shared<std::atomic<bool>>(false);
  auto group = std::make_shared<detail::GroupState>();
  group->remaining = 1;
  group->stop_on_first = true;
  child->add_done_callback([group] { group->member_done(0, false); });
  asio::steady_timer timer(ex, std::chrono::duration_cast<asio::steady_timer::duration>(timeout));
  timer.async_wait([group, timed_out](asio::error_code ec) {
    if (ec) return;
    timed_out->store(true);
    group->event.set();
  });
  std::exception_ptr cancelled;
  try {
    co_await group->event.wait();
  } catch (...) {
    cancelled = std::current_exception();
  }
  timer.cancel();
  if (cancelled) {
    child->request_cancel();
    co_await child->join(false);
    std::rethrow_exception(cancelled);
  }
  if (!child->done()) {
    child->request_cancel();
    co_await child->join(false);
    if (child->error()) throw TimeoutError("wait_for timed out");
  }
  if constexpr (std::is_void_v<T>) {
    child->result();
  } else {
    co_return child->result(true);
  }
}

// Results of a set of awaitables in the order they finish (asyncio.as_completed).
// Obtain with as_completed(); call `co_await next()` size() times. Destroying it cancels
// children that have not finished.
template <class T>
class AsyncAsCompleted {
 public:
  AsyncAsCompleted(const asio::any_io_executor& ex, std::vector<asio::awaitable<T>> aws)
      : ready_(std::make_shared<AsyncQueue<std::size_t>>()) {
    tasks_.reserve(aws.size());
    for (std::size_t i = 0; i < aws.size(); ++i) {
      tasks_.push_back(detail::spawn_task(ex, std::move(aws[i])));
      tasks_.back()->add_done_callback([q = ready_, i] { q->try_put(i); });
    }
  }
  AsyncAsCompleted(AsyncAsCompleted&&) noexcept = default;
  AsyncAsCompleted& operator=(AsyncAsCompleted&&) noexcept = default;
  ~AsyncAsCompleted() {
    for (auto& t : tasks_)
      if (t) t->request_cancel();
  }

  // Number of awaitables.
  std::size_t size() const noexcept { return tasks_.size(); }
  // Results not yet returned by next().
  std::size_t remaining() const noexcept { return tasks_.size() - yielded_; }
  // Awaits the next awaitable to finish and returns its value (or rethrows its
  // exception). Throws InvalidStateError when all have been returned.
  asio::awaitable<detail::result_slot_t<T>> next() {
    if (remaining() == 0) throw InvalidStateError("as_completed: no awaitables left");
    last_ = co_await ready_->get();
    ++yielded_;
    co_return tasks_[last_]->result(true);
  }
  // Input position of the awaitable the last next() returned.
  std::size_t last_index() const noexcept { return last_; }

 private:
  std::vector<std::shared_ptr<detail::TaskState<T>>> tasks_;
  std::shared_ptr<AsyncQueue<std::size_t>> ready_;
  std::size_t yielded_ = 0;
  std::size_t last_ = 0;
};

// Starts every awaitable on `ex`'s loop; results come back in completion order.
template <class T>
AsyncAsCompleted<T> as_completed(const asio::any_io_executor& ex, std::vector<asio::awaitable<T>> aws) {
  return AsyncAsCompleted<T>(ex, std::move(aws));
}

// Same, on the loop concur::run is running on this thread.
template <class T>
AsyncAsCompleted<T> as_completed(std::vector<asio::awaitable<T>> aws) {
  const auto* loop = detail::current_loop();
  if (!loop) throw InvalidStateError("as_completed: no running loop on this thread");
  return AsyncAsCompleted<T>(*loop, std::move(aws));
}

}  // namespace concur
