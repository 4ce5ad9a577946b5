// concur/pool.hpp: Python's multiprocessing.Pool API.
//
//   concur::ThreadPool pool(4);                       // multiprocessing.pool.ThreadPool
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
#pragma once

#include <cstddef>
#include <functional>
#include <optional>

#include "concur/detail/pool_front.hpp"
#include "concur/thread_pool.hpp"

namespace concur {

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
      : PoolFront(resolve(options.processes)),
        exec_(ThreadPoolOptions{.max_workers = static_cast<int>(resolve(options.processes)),
                                .thread_name_prefix = "ThreadPool",
                                .initializer = std::move(options.initializer)}) {}
  ~ThreadPool() { terminate(); }

 private:
  static std::size_t resolve(std::optional<int> n) {
    if (!n) return detail::online_cpus();
    if (*n < 1) throw std::invalid_argument("Number of processes must be at least 1");
    return static_cast<std::size_t>(*n);
  }
  ThreadPoolExecutor& exec() override { return exec_; }
  void terminate_now() override { exec_.shutdown(false, true); }

  ThreadPoolExecutor exec_;
};

}  // namespace concur
