// Seed 000: concurrent.futures.ProcessPoolExecutor - submit() and Future, map() over one
// and two ranges, as_completed(), wait() with FIRST_COMPLETED then ALL_COMPLETED,
// exceptions, done-callbacks, and the thread pool against the process pool for I/O-bound
// and CPU-bound work. (The asyncio part of the seed is examples/async_process_pool.cpp.)
//
//   executor_tour [scale=1]
//
// Every time.sleep() of the seed is multiplied by `scale` (0.05 runs the tour in about a
// second); scale also sizes the CPU-bound work. The workers learn the scale through the
// executor's initializer, Python's initializer/initargs.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <concur/concur.hpp>

using namespace std::chrono_literals;

namespace {

double g_scale = 1.0;

void set_scale(double scale) { g_scale = scale; }

// time.sleep(seconds), scaled.
void sleep_s(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds * g_scale)); }

// ProcessPoolExecutor(max_workers), its workers sleeping at the parent's scale.
concur::ProcessPoolExecutor make_executor(std::optional<int> max_workers = std::nullopt) {
  return concur::ProcessPoolExecutor({.max_workers = max_workers, .initializer = {set_scale, g_scale}});
}

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void heading(const char* title) { std::printf("\n=== %s ===\n", title); }

const char* py(bool b) { return b ? "True" : "False"; }

// The message of a task's exception.
std::string message(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

// --- worker functions ---

// The seed multiplies n! out in Python's big integers only to count its digits. Without
// big integers the same loop sums log10(i) instead: n! has floor(log10(n!)) + 1 digits.
long compute_factorial_digits(long n) {
  double log10_factorial = 0;
  for (long i = 2; i <= n; ++i) log10_factorial += std::log10(static_cast<double>(i));
  return static_cast<long>(std::floor(log10_factorial)) + 1;
}

int slow_compute(int x) {
  sleep_s(1);
  return x * x;
}

int task_2s(int x) {
  sleep_s(2);
  return x * 2;
}

int process(int x) {
  sleep_s(0.5);
  return x * x;
}

int add(int a, int b) { return a + b; }

// Sleeps a random 0.1 to 2 seconds (scaled); returns x and the unscaled duration.
std::pair<int, double> variable_task(int x) {
  thread_local std::mt19937 gen(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  double sleep_time = std::uniform_real_distribution<double>(0.1, 2.0)(gen);
  sleep_s(sleep_time);
  return {x, sleep_time};
}

int sleep_then_double(int x) {
  sleep_s(x);
  return x * 2;
}

// Python's ValueError is std::invalid_argument; it reaches the parent with its type.
int might_fail(int x) {
  if (x % 3 == 0) throw std::invalid_argument("Error for " + std::to_string(x));
  return x * x;
}

void failing_task() { throw std::runtime_error("Something went wrong"); }

// Stands for a network call: waits without using the CPU.
int io_bound_task(int x) {
  sleep_s(0.5);
  return x;
}

// --- the sections ---

void factorial_section() {
  heading("submit(): compute_factorial");
  auto executor = make_executor(4);
  auto future = executor.submit(compute_factorial_digits, 1000L);
  std::printf("1000! has %ld digits\n", future.result());

  // The seed lists these numbers without using them; here they go through map().
  std::vector<long> numbers{100000, 110000, 120000, 130000};
  std::size_t i = 0;
  for (long digits : executor.map(compute_factorial_digits, numbers))
    std::printf("%ld! has %ld digits\n", numbers[i++], digits);
}

void submit_section() {
  heading("submit() and Future");
  auto executor = make_executor(4);
  std::vector<concur::Future<int>> futures;
  for (int i = 0; i < 8; ++i) futures.push_back(executor.submit(slow_compute, i));
  for (auto& f : futures) {
    std::printf("Done: %s\n", py(f.done()));            // never blocks
    std::printf("Result: %d\n", f.result(10s));         // blocks until there is one
  }
}

void future_methods_section() {
  heading("Future methods");
  auto executor = make_executor(2);
  auto future = executor.submit(task_2s, 10);
  std::printf("Running: %s\n", py(future.running()));
  std::printf("Done: %s\n", py(future.done()));
  std::printf("Cancelled: %s\n", py(future.cancelled()));
  // Succeeds only while the task still waits for a worker.
  bool cancelled = future.cancel();
  std::printf("Cancel succeeded: %s\n", py(cancelled));
  try {
    std::printf("Result: %d\n", future.result(5s));
  } catch (const concur::TimeoutError&) {
    std::printf("Timeout!\n");
  } catch (const concur::CancelledError&) {
    std::printf("No result: the task was cancelled\n");
  }
}

void map_section() {
  heading("map()");
  auto executor = make_executor(4);
  std::vector<int> items;
  for (int i = 0; i < 12; ++i) items.push_back(i);
  std::size_t i = 0;
  for (int result : executor.map(process, items)) {  // input order
    std::printf("%d^2 = %d\n", items[i++], result);
  }

  heading("map() over two ranges");
  std::vector<int> list_a{1, 2, 3, 4, 5};
  std::vector<int> list_b{10, 20, 30, 40, 50};
  std::printf("[");
  const char* sep = "";
  for (int r : executor.map(add, list_a, list_b)) {
    std::printf("%s%d", sep, r);
    sep = ", ";
  }
  std::printf("]\n");
}

void as_completed_section() {
  heading("as_completed()");
  auto executor = make_executor(4);
  std::vector<concur::Future<std::pair<int, double>>> futures;
  std::map<concur::Future<std::pair<int, double>>, int> future_to_input;
  for (int i = 0; i < 10; ++i) {
    futures.push_back(executor.submit(variable_task, i));
    future_to_input.emplace(futures.back(), i);
  }
  for (auto& future : concur::as_completed(futures)) {
    int input_value = future_to_input.at(future);
    try {
      auto [result, duration] = future.result();
      std::printf("Task %d: result=%d, time=%.2fs\n", input_value, result, duration);
    } catch (const std::exception& e) {
      std::printf("Task %d failed: %s\n", input_value, e.what());
    }
  }
}

void wait_section() {
  heading("wait(): FIRST_COMPLETED, then ALL_COMPLETED");
  auto executor = make_executor(4);
  std::vector<concur::Future<int>> futures;
  for (int i : {3, 1, 2, 4}) futures.push_back(executor.submit(sleep_then_double, i));

  auto [done, not_done] = concur::wait(futures, concur::FIRST_COMPLETED);
  std::printf("First completed: %d\n", done.front().result());
  std::printf("Not done yet: %zu\n", not_done.size());

  auto [all_done, none_left] = concur::wait(futures, concur::ALL_COMPLETED);
  std::printf("All done: %zu (not done: %zu)\n", all_done.size(), none_left.size());
}

void exceptions_section() {
  heading("exceptions");
  {
    auto executor = make_executor();
    std::vector<concur::Future<int>> futures;
    std::map<concur::Future<int>, int> input_of;
    for (int i = 0; i < 10; ++i) {
      futures.push_back(executor.submit(might_fail, i));
      input_of.emplace(futures.back(), i);
    }
    for (auto& future : concur::as_completed(futures)) {
      int input_val = input_of.at(future);
      try {
        std::printf("%d: %d\n", input_val, future.result());
      } catch (const std::invalid_argument& e) {
        std::printf("%d: ERROR - %s\n", input_val, e.what());
      }
    }
  }

  heading("exception() without raising it");
  auto executor = make_executor();
  auto future = executor.submit(failing_task);
  if (auto exception = future.exception(5s))
    std::printf("The task ended with an exception: %s\n", message(exception).c_str());
}

void callback_section() {
  heading("add_done_callback()");
  auto executor = make_executor();
  auto future = executor.submit(slow_compute, 5);
  // Runs in this (the parent) process, not in the worker.
  future.add_done_callback([](const concur::Future<int>& f) {
    std::printf("Task done! Result: %d\n", f.result());
    std::fflush(stdout);
  });
  std::printf("Waiting for completion...\n");
  std::fflush(stdout);
  sleep_s(2);
}

// Runs fn over args twice on the executor: the first run includes starting the workers
// (pools start them as work arrives), the second finds them running.
template <class Executor, class F>
void time_it(const char* what, Executor& executor, const std::vector<long>& args, F fn) {
  double took[2];
  for (double& t : took) {
    auto start = std::chrono::steady_clock::now();
    for ([[maybe_unused]] long r : executor.map(fn, args)) {
    }
    t = since(start);
  }
  std::printf("  %-36s %zu tasks in %.3f s (%.3f s with worker start-up)\n", what, args.size(), took[1], took[0]);
}

void thread_vs_process_section() {
  heading("ThreadPoolExecutor for I/O, ProcessPoolExecutor for CPU");
  std::vector<long> io_args(8, 0);
  std::printf("I/O-bound (each task sleeps %.3f s):\n", 0.5 * g_scale);
  {
    auto io = [](long x) -> long { return io_bound_task(static_cast<int>(x)); };
    concur::ThreadPoolExecutor threads(8);
    time_it("ThreadPoolExecutor(max_workers=8)", threads, io_args, io);
    auto processes = make_executor(2);
    time_it("ProcessPoolExecutor(max_workers=2)", processes, io_args, io);
  }
  // CPU work: compute_factorial_digits's loop (a log10 per step).
  long n = std::max(2L, static_cast<long>(20'000'000 * g_scale));
  std::vector<long> cpu_args(4, n);
  std::printf("CPU-bound (compute_factorial_digits(%ld)):\n", n);
  {
    auto processes = make_executor(4);
    time_it("ProcessPoolExecutor(max_workers=4)", processes, cpu_args, compute_factorial_digits);
    // C++ has no GIL: threads compute in parallel too. What processes add is isolation
    // (a crash or a leak stays in the worker), at the price of start-up and copying.
    concur::ThreadPoolExecutor threads(4);
    time_it("ThreadPoolExecutor(max_workers=4)", threads, cpu_args, compute_factorial_digits);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order with the workers' output, even into a pipe
  g_scale = argc > 1 ? std::atof(argv[1]) : 1.0;
  if (!(g_scale > 0)) {
    std::fprintf(stderr, "usage: %s [scale > 0]\n", argv[0]);
    return 2;
  }
  factorial_section();
  submit_section();
  future_methods_section();
  map_section();
  as_completed_section();
  wait_section();
  exceptions_section();
  callback_section();
  thread_vs_process_section();
}
