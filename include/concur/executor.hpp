// concur/executor.hpp: the Executor interface shared by every pool.
//
// Python's concurrent.futures.Executor: submit(fn, args...) schedules fn(args...) and
// returns a Future; map(fn, ranges...) runs fn over the ranges and yields the results in
// input order; shutdown(wait, cancel_futures) stops taking work; the destructor is
// shutdown(wait = true), like leaving a `with` block.
//
// Two ways to use it:
//  - through a concrete pool (ThreadPoolExecutor, ProcessPoolExecutor, ...): submit/map are
//    templates resolved at compile time, no virtual call on the hot path, and a process pool
//    rejects a function or argument that cannot cross a process boundary at compile time;
//  - through `Executor&`, for code that accepts "some executor": the same calls, dispatched
//    at run time (a process pool then rejects a non-portable task with an exception).
//
// map() differs from Python's in one way users of large inputs will welcome: input is
// pulled lazily with a bounded number of tasks in flight (`concur::buffersize`), so mapping
// over a generator of a hundred million items runs in bounded memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/map.hpp"
#include "concur/detail/portable_task.hpp"
#include "concur/detail/task.hpp"
#include "concur/errors.hpp"
#include "concur/future.hpp"

namespace concur {

class Executor {
 public:
  Executor() = default;
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  virtual ~Executor() { alive_->store(false, std::memory_order_release); }

  // Schedules fn(args...) and returns a Future for its result. Arguments are copied (or
  // moved) into the task. Throws ShutdownError after shutdown(), a BrokenExecutor when
  // the pool is broken.
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    auto task = detail::make_portable_task<R>(std::forward<F>(fn), std::forward<Args>(args)...);
    enqueue(detail::TaskPtr(task));
    return Future<R>(std::move(task));
  }

  // Lazily yields fn(a, b, ...) for the elements of the ranges taken in step (stopping at
  // the shortest), in input order. Options after the ranges: concur::timeout(d) (counted
  // from this call), concur::chunksize(n) (used by process pools), concur::buffersize(n).
  // The first failing element rethrows its exception when iteration reaches it.
  template <class F, class... Xs>
  auto map(F&& fn, Xs&&... ranges_then_options) {
    return detail::split_map_args(
        [&](const MapOptions& opts, auto&&... ranges) {
          return map_with(std::forward<F>(fn), opts, std::forward<decltype(ranges)>(ranges)...);
        },
        std::forward<Xs>(ranges_then_options)...);
  }

  // Stops accepting work. wait: block until running and queued work is done.
  // cancel_futures: cancel the work not yet started. Safe to call more than once.
  virtual void shutdown(bool wait = true, bool cancel_futures = false) = 0;

 protected:
  // Hands one task to the workers; throws ShutdownError or a BrokenExecutor instead.
  virtual void enqueue(detail::TaskPtr task) = 0;
  // Hands several tasks over at once (one wake-up for the lot where possible).
  virtual void enqueue_bulk(std::span<detail::TaskPtr> tasks) {
    for (auto& t : tasks) enqueue(std::move(t));
  }
  // How many items map() keeps in flight by default.
  virtual std::size_t default_map_window() const { return 64; }
  // Whether map() sends chunksize items per task (process pools); thread pools ignore
  // chunksize, as in Python, so one failing item never takes its neighbours down.
  virtual bool uses_chunks() const noexcept { return true; }

  // map() over tasks made by make_task(fn, args...) -> StatePtr<FutureState<R>>.
  template <class R, class MakeTask, class Fn, class... Rs>
  auto map_tasks(MakeTask make_task, Fn fn, const MapOptions& opts, Rs&&... ranges) {
    using V = detail::map_value_t<R>;
    // The results of a map may outlive the executor (a temporary pool, or one destroyed
    // before the loop ends); past that point the lazy part cannot be submitted any more.
    auto submit_items = [this, alive = alive_, make_task, fn](auto&& tuples) {
      check_alive(*alive);
      std::vector<detail::TaskPtr> tasks;
      std::vector<Future<R>> futures;
      tasks.reserve(tuples.size());
      futures.reserve(tuples.size());
      for (auto& t : tuples) {
        auto task = std::apply(
            [&](auto&... args) { return make_task(fn, std::move(args)...); }, t);
        tasks.emplace_back(task);
        futures.emplace_back(std::move(task));
      }
      enqueue_bulk(tasks);
      return futures;
    };
    auto submit_chunks = [this, alive = alive_, make_task, fn](auto&& chunks) {
      check_alive(*alive);
      std::vector<detail::TaskPtr> tasks;
      std::vector<Future<std::vector<V>>> futures;
      for (auto& chunk : chunks) {
        auto task = make_task(
            [](const Fn& f, auto items) {
              std::vector<V> out;
              out.reserve(items.size());
              for (auto& t : items) {
                if constexpr (std::is_void_v<R>) {
                  std::apply(f, std::move(t));
                  out.emplace_back();
                } else {
                  out.push_back(std::apply(f, std::move(t)));
                }
              }
              return out;
            },
            fn, std::move(chunk));
        tasks.emplace_back(task);
        futures.emplace_back(std::move(task));
      }
      enqueue_bulk(tasks);
      return futures;
    };
    return detail::make_map_results<R>(opts, default_map_window(), std::move(submit_items),
                                       std::move(submit_chunks), std::forward<Rs>(ranges)...);
  }

 private:
  static void check_alive(const std::atomic<bool>& alive) {
    if (!alive.load(std::memory_order_acquire))
      throw ShutdownError("cannot schedule new futures after the executor was destroyed");
  }

  // Cleared by the destructor; map() results hold it to know whether `this` still exists.
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);

  template <class F, class... Rs>
  auto map_with(F&& fn, MapOptions opts, Rs&&... ranges) {
    if (!uses_chunks()) opts.chunksize = 0;
    using Fn = std::decay_t<F>;
    using R = std::invoke_result_t<const Fn&, std::ranges::range_value_t<Rs>...>;
    return map_tasks<R>(
        [](auto&& f, auto&&... args) {
          using R2 = std::invoke_result_t<std::decay_t<decltype(f)>, std::decay_t<decltype(args)>...>;
          return detail::make_portable_task<R2>(std::forward<decltype(f)>(f),
                                                std::forward<decltype(args)>(args)...);
        },
        Fn(std::forward<F>(fn)), opts, std::forward<Rs>(ranges)...);
  }
};

}  // namespace concur
