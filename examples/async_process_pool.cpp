// The run_in_executor example of the seed (000): CPU-bound tasks run in a pool of
// workers and are awaited with gather, while the event loop keeps serving (here, a
// ticker that reports how late its 10 ms timer fires).
//
//   async_process_pool [tasks=4] [n=5000000]
//
// The work goes through the common concur::Executor interface, so any pool fits; here it
// is a ProcessPoolExecutor, as in the seed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "concur/async.hpp"
#include "concur/process_pool.hpp"

using asio::awaitable;
using namespace std::chrono_literals;

namespace {

// Σ i² for i < n (wraps around on overflow, like any fixed-width sum).
unsigned long long cpu_bound_task(long n) {
  unsigned long long result = 0;
  for (long i = 0; i < n; ++i) result += static_cast<unsigned long long>(i) * static_cast<unsigned long long>(i);
  return result;
}

awaitable<void> ticker(bool& stop, double& worst_ms, int& ticks) {
  while (!stop) {
    auto before = std::chrono::steady_clock::now();
    co_await concur::sleep(10ms);
    double late = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - before - 10ms).count();
    worst_ms = std::max(worst_ms, late);
    ++ticks;
  }
}

awaitable<void> main_coro(concur::Executor& executor, int tasks, long n) {
  bool stop = false;
  double worst_ms = 0;
  int ticks = 0;
  auto tick = concur::create_task(ticker(stop, worst_ms, ticks));
  auto start = std::chrono::steady_clock::now();
  std::vector<awaitable<unsigned long long>> work;
  for (int i = 0; i < tasks; ++i) work.push_back(concur::run_in_executor(executor, cpu_bound_task, n));
  auto results = co_await concur::gather(std::move(work));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  co_await tick.wait();
  std::printf("Results: [");
  for (std::size_t i = 0; i < results.size(); ++i) std::printf("%s%llu", i ? ", " : "", results[i]);
  std::printf("]\n");
  std::printf("%d tasks in %.3f s; meanwhile the loop ticked %d times, worst timer lateness %.2f ms\n", tasks, secs,
              ticks, worst_ms);
}

}  // namespace

int main(int argc, char** argv) {
  int tasks = argc > 1 ? std::atoi(argv[1]) : 4;
  long n = argc > 2 ? std::atol(argv[2]) : 5'000'000;
  concur::ProcessPoolExecutor pool(4);
  concur::run(main_coro(pool, tasks, n));
}
