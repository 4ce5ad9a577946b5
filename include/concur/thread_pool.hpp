// concur/thread_pool.hpp: ThreadPoolExecutor, Python's concurrent.futures.ThreadPoolExecutor.
//
//   concur::ThreadPoolExecutor pool(4);
//   auto f = pool.submit(fetch, url);           // Future<Page>
//   for (auto& page : pool.map(fetch, urls)) ...
//
// Behaviour follows CPython: threads start lazily, one per submit while none is idle, up to
// max_workers (default min(32, cpus + 4)); an idle thread is reused before a new one
// starts; thread names are "<prefix>_<n>"; an initializer that throws breaks the pool
// (queued and later work fails with BrokenThreadPool); the destructor is shutdown(true).
//
// Speed: a submit is one allocation and a lock-protected push; an idle worker spins for a
// few microseconds before it sleeps (a wake-up across cores costs ~25 µs on virtual
// machines, a spinning hand-off ~0.1 µs), and at most one worker spins at a time, so an
// idle pool uses no CPU.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "concur/executor.hpp"

namespace concur {

struct ThreadPoolOptions {
  std::optional<int> max_workers{};     // unset: min(32, cpus + 4); < 1: std::invalid_argument
  std::string thread_name_prefix{};     // "": "ThreadPool-<n>"; threads are "<prefix>_<i>"
  std::function<void()> initializer{};  // run once in every worker thread before any task
};

namespace detail {
class ThreadPoolCore;
}

class ThreadPoolExecutor final : public Executor {
 public:
  // A pool of up to min(32, cpus + 4) threads.
  ThreadPoolExecutor();
  // A pool of up to max_workers threads; std::invalid_argument if max_workers < 1.
  explicit ThreadPoolExecutor(int max_workers);
  // ThreadPoolExecutor({.max_workers = 4, .thread_name_prefix = "io", .initializer = fn}).
  explicit ThreadPoolExecutor(ThreadPoolOptions options);
  ~ThreadPoolExecutor() override;

  // Schedules fn(args...); see Executor::submit. Resolved at compile time (no virtual call).
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    auto task = detail::make_local_task<R>(std::forward<F>(fn), std::forward<Args>(args)...);
    push(detail::TaskPtr(task));
    return Future<R>(std::move(task));
  }

  // See Executor::map. chunksize is accepted and ignored, as in Python.
  template <class F, class... Xs>
  auto map(F&& fn, Xs&&... ranges_then_options) {
    return detail::split_map_args(
        [&](MapOptions opts, auto&&... ranges) {
          using Fn = std::decay_t<F>;
          using R = std::invoke_result_t<const Fn&,
                                         std::ranges::range_value_t<decltype(ranges)>...>;
          opts.chunksize = 0;
          return map_tasks<R>(
              [](auto&& f, auto&&... args) {
                using R2 = std::invoke_result_t<std::decay_t<decltype(f)>,
                                                std::decay_t<decltype(args)>...>;
                return detail::make_local_task<R2>(std::forward<decltype(f)>(f),
                                                   std::forward<decltype(args)>(args)...);
              },
              Fn(std::forward<F>(fn)), opts, std::forward<decltype(ranges)>(ranges)...);
        },
        std::forward<Xs>(ranges_then_options)...);
  }

  void shutdown(bool wait = true, bool cancel_futures = false) override;

  // The most threads this pool will start.
  int max_workers() const noexcept;
  // Threads started so far (they stay until shutdown).
  std::size_t thread_count() const noexcept;

 protected:
  void enqueue(detail::TaskPtr task) override { push(std::move(task)); }
  void enqueue_bulk(std::span<detail::TaskPtr> tasks) override;
  std::size_t default_map_window() const override;
  bool uses_chunks() const noexcept override { return false; }

 private:
  void push(detail::TaskPtr task);
  std::shared_ptr<detail::ThreadPoolCore> core_;
};

}  // namespace concur
