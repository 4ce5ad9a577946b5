// concur/process_pool.hpp: ProcessPoolExecutor, Python's concurrent.futures.ProcessPoolExecutor.
//
//   int is_prime(long n);                          // any free function, or a lambda without captures
//   concur::ProcessPoolExecutor ex(2);             // or ex({.max_workers = 2, .start_method = ...})
//   auto f = ex.submit(is_prime, 112272535095293L);  // Future<int>
//   for (int p : ex.map(is_prime, nums)) ...
//
// Functions run in separate worker processes, so a crash, a leak or a runaway task cannot
// take the program down. No registration and no change to main(): with `spawn` and
// `forkserver` the library takes over a re-executed copy of the program before main()
// runs, and a worker refuses to work for a different binary (build-id hand-shake).
//
// Guarantees:
//  - The function is a function pointer or a lambda without captures; arguments and the
//    result are serializable (concur/serialize.hpp). Anything else is a compile-time error
//    naming the offending type (through Executor&: a SerializationError at submit).
//    Arguments are stored as the function's parameter types.
//  - Exceptions come back with their type and message for the standard families and
//    concur's errors, and for types given to register_exception<E>(); any other type
//    arrives as RemoteError(type name, what(), the worker's call site).
//  - A worker that dies (signal, abort, _exit, OOM kill, death while arguments or result
//    are in transfer) is detected through its pidfd: never a hang. on_worker_death picks
//    Python's behaviour (break_pool) or replace_worker.
//  - cancel() works on pending tasks; cancel(concur::kill_running) also stops a running
//    task by killing (and replacing) its worker.
//  - No zombie, no process and no descriptor is left behind after shutdown, breakage,
//    terminate_workers()/kill_workers() or destruction (which is shutdown(wait = true)).
//  - Done-callbacks run in the parent process: in the pool's collector thread, or in
//    whichever parent thread collected the result.
//  - Blocks of 1 MiB and more (a large vector or string) go through shared memory: one
//    copy on each side, no pipe, no intermediate buffer; a 1 GiB vector round-trips.
//
// Speed: a submit encodes the call in the caller's thread and appends it to a worker's
// ring in shared memory; workers spin briefly (bounded, yielding) before sleeping on a
// futex, the parent's collector likewise before sleeping in epoll, so back-to-back work
// needs no system call at all while an idle pool uses no CPU. Short tasks are pipelined
// to each worker; a worker's death is noticed through its pidfd within a fraction of a
// millisecond. Start methods: see StartMethod (fork keeps a single-threaded zygote of
// the program, forkserver one shared server per process, spawn re-executes it).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/process_engine.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/detail/remote_map.hpp"
#include "concur/executor.hpp"

namespace concur {

// A function run once in every worker before any task, with its arguments (Python's
// initializer + initargs): `.initializer = setup` or `.initializer = {setup, "db.sqlite", 4}`.
// If it throws, the pool breaks (BrokenProcessPool for pending and later work).
class Initializer {
 public:
  Initializer() = default;
  template <class F, class... A>
    requires(!std::is_same_v<std::remove_cvref_t<F>, Initializer>)
  Initializer(F&& fn, A&&... args) {  // NOLINT(google-explicit-constructor): designated init
    using R = detail::call_result_t<F, A...>;
    static_assert(detail::check_remote_call<R, F, A...>());
    auto task = detail::make_remote_task<R>(std::forward<F>(fn), std::forward<A>(args)...);
    detail::Writer w;
    task->as_remote()->encode_call(w);
    auto b = w.bytes();
    call_.assign(b.begin(), b.end());
  }
  // True when there is an initializer.
  explicit operator bool() const noexcept { return !call_.empty(); }
  // The encoded call.
  const std::vector<std::byte>& encoded() const noexcept { return call_; }

 private:
  std::vector<std::byte> call_;
};

// Options of ProcessPoolExecutor, used with designated initializers.
struct ProcessPoolOptions {
  std::optional<int> max_workers{};  // unset: the CPUs this process may use; < 1: invalid_argument
  StartMethod start_method = StartMethod::forkserver;  // Python 3.14's default on Linux
  Initializer initializer{};         // run once in each worker before any task
  std::size_t max_tasks_per_child = 0;     // a worker is replaced after this many tasks; 0: never
  std::chrono::nanoseconds task_timeout{0};  // a task running longer is killed (TimeoutError)
  std::size_t max_memory_per_child = 0;    // anonymous RSS (bytes) checked after each task
  OnWorkerDeath on_worker_death = OnWorkerDeath::break_pool;  // what a worker's death does
};

// Makes exceptions of type E thrown in a worker arrive as E (rebuilt from what()) instead
// of RemoteError. E must be constructible from std::string, const char* or nothing.
template <class E>
void register_exception() {
  static_assert(std::is_constructible_v<E, std::string> || std::is_constructible_v<E, const char*> ||
                    std::is_default_constructible_v<E>,
                "concur::register_exception<E>: E must be constructible from a std::string, a "
                "const char* or nothing");
  detail::register_exception_factory(typeid(E).name(), [](const std::string& what) {
    if constexpr (std::is_constructible_v<E, std::string>) return std::make_exception_ptr(E(what));
    else if constexpr (std::is_constructible_v<E, const char*>)
      return std::make_exception_ptr(E(what.c_str()));
    else return std::make_exception_ptr(E());
  });
}

// Python's concurrent.futures.ProcessPoolExecutor, on worker processes (see above).
class ProcessPoolExecutor final : public Executor {
 public:
  // A pool of as many workers as CPUs.
  ProcessPoolExecutor();
  // A pool of max_workers workers; std::invalid_argument if max_workers < 1.
  explicit ProcessPoolExecutor(int max_workers);
  // ProcessPoolExecutor({.max_workers = 2, .start_method = StartMethod::spawn, ...}).
  explicit ProcessPoolExecutor(ProcessPoolOptions options);
  // shutdown(wait = true).
  ~ProcessPoolExecutor() override;

  // Schedules fn(args...) in a worker process; see Executor::submit. Checked at compile
  // time: fn must be a function pointer or captureless lambda, arguments and result
  // serializable. Throws ShutdownError after shutdown, BrokenProcessPool once broken.
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    static_assert(detail::check_remote_call<R, F, Args...>());
    // Encoded right here from the caller's arguments: a large argument is copied once,
    // straight into shared memory.
    auto task = detail::make_borrowed_remote_task<R>(std::forward<F>(fn), args...);
    engine_->submit(detail::TaskPtr(task));
    return Future<R>(std::move(task));
  }

  // Lazily yields fn(a, b, ...) over the ranges in input order (see Executor::map).
  // concur::chunksize(n) sends n items per message; input is pulled with a bounded number
  // of chunks in flight (concur::buffersize(items) to change it).
  template <class F, class... Xs>
  auto map(F&& fn, Xs&&... ranges_then_options) {
    return detail::split_map_args(
        [&](const MapOptions& opts, auto&&... ranges) {
          return detail::remote_map<std::decay_t<F>>(
              std::forward<F>(fn), opts,
              [this](std::span<detail::TaskPtr> tasks) { engine_->submit_bulk(tasks); },
              [this](std::size_t chunk) { return map_window(chunk); },
              std::forward<decltype(ranges)>(ranges)...);
        },
        std::forward<Xs>(ranges_then_options)...);
  }

  // Python's shutdown(wait, cancel_futures).
  void shutdown(bool wait = true, bool cancel_futures = false) override;
  // Python 3.14: shutdown(wait=false, cancel_futures=true), then SIGTERM to every worker.
  void terminate_workers();
  // Python 3.14: as terminate_workers(), with SIGKILL.
  void kill_workers();

  // The number of workers the pool runs at most.
  int max_workers() const noexcept;
  // The start method workers are created with.
  StartMethod start_method() const noexcept;
  // Pids of the live workers.
  std::vector<pid_t> worker_pids() const;
  // Worker processes started since creation (replacements included).
  std::size_t processes_started() const noexcept;

  // The engine behind this pool (for internal faces and tests).
  const std::shared_ptr<detail::ProcessEngine>& engine() const noexcept { return engine_; }

 protected:
  void enqueue(detail::TaskPtr task) override;
  void enqueue_bulk(std::span<detail::TaskPtr> tasks) override;
  std::size_t default_map_window() const override;

 private:
  std::size_t map_window(std::size_t chunk) const noexcept;

  std::shared_ptr<detail::ProcessEngine> engine_;
};

}  // namespace concur
