// Thread pool throughput and latency, side by side with the alternatives a C++ user has:
// a plain mutex + condition-variable pool with one std::promise per task, and oneTBB's
// task_group. Python's ThreadPoolExecutor runs the same workloads in bench/thread_pool.py;
// scripts/bench.sh puts both in one table with ratios.
//
// Workloads (all tasks are no-ops, so the numbers measure the pool itself):
//   submit_result:  submit N tasks one at a time, then wait for all N results
//   batched:        N tasks handed over 256 at a time (map for concur, a bulk push for the
//                   naive pool, task_group for TBB), then all results
//   round_trip:     one submit -> result at a time (median and p99 reported as counters)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <numeric>
#include <ranges>
#include <thread>
#include <vector>

#include "concur/thread_pool.hpp"

#ifdef CONCUR_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif

namespace {

constexpr int kWorkers = 2;  // the machine's cores; every pool gets the same number
constexpr int kBatch = 256;

int noop() { return 1; }

// The baseline a C++ programmer writes in an afternoon.
class NaivePool {
 public:
  explicit NaivePool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~NaivePool() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  std::future<int> submit(int (*fn)()) {
    std::packaged_task<int()> task(fn);
    auto f = task.get_future();
    {
      std::lock_guard l(mu_);
      q_.push_back(std::move(task));
    }
    cv_.notify_one();
    return f;
  }
  std::vector<std::future<int>> submit_many(int (*fn)(), int n) {
    std::vector<std::future<int>> out;
    out.reserve(static_cast<std::size_t>(n));
    {
      std::lock_guard l(mu_);
      for (int i = 0; i < n; ++i) {
        std::packaged_task<int()> task(fn);
        out.push_back(task.get_future());
        q_.push_back(std::move(task));
      }
    }
    cv_.notify_all();
    return out;
  }

 private:
  void loop() {
    for (;;) {
      std::packaged_task<int()> task;
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        task = std::move(q_.front());
        q_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<int()>> q_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

void report_latency(benchmark::State& state, std::vector<double>& ns) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  state.counters["median_us"] = ns[ns.size() / 2] / 1e3;
  state.counters["p99_us"] = ns[ns.size() * 99 / 100] / 1e3;
}

template <class Fn>
void round_trip(benchmark::State& state, Fn&& one) {
  std::vector<double> ns;
  ns.reserve(1 << 16);
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    one();
    auto t1 = std::chrono::steady_clock::now();
    ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  }
  report_latency(state, ns);
}

// ---------------------------------------------------------------- concur
void BM_concur_submit_result(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(kWorkers);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<concur::Future<int>> fs;
  fs.reserve(n);
  for (auto _ : state) {
    fs.clear();
    for (std::size_t i = 0; i < n; ++i) fs.push_back(pool.submit(noop));
    long sum = 0;
    for (auto& f : fs) sum += f.result();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_concur_batched(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(kWorkers);
  const auto n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    long sum = 0;
    for (int v : pool.map([](int) { return 1; }, std::views::iota(0, n), concur::buffersize(2 * kBatch)))
      sum += v;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_concur_round_trip(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(kWorkers);
  pool.submit(noop).result();  // warm: the worker thread exists
  round_trip(state, [&] { benchmark::DoNotOptimize(pool.submit(noop).result()); });
}

// Round trip after the pool has gone idle (workers asleep): the blocking path.
void BM_concur_round_trip_idle(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(kWorkers);
  pool.submit(noop).result();
  std::vector<double> ns;
  for (auto _ : state) {
    state.PauseTiming();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    state.ResumeTiming();
    auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(pool.submit(noop).result());
    ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count()));
  }
  report_latency(state, ns);
}

// ---------------------------------------------------------------- naive pool
void BM_naive_submit_result(benchmark::State& state) {
  NaivePool pool(kWorkers);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::future<int>> fs;
  fs.reserve(n);
  for (auto _ : state) {
    fs.clear();
    for (std::size_t i = 0; i < n; ++i) fs.push_back(pool.submit(noop));
    long sum = 0;
    for (auto& f : fs) sum += f.get();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_naive_batched(benchmark::State& state) {
  NaivePool pool(kWorkers);
  const auto n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    long sum = 0;
    for (int done = 0; done < n; done += kBatch)
      for (auto& f : pool.submit_many(noop, std::min(kBatch, n - done))) sum += f.get();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_naive_round_trip(benchmark::State& state) {
  NaivePool pool(kWorkers);
  round_trip(state, [&] { benchmark::DoNotOptimize(pool.submit(noop).get()); });
}

#ifdef CONCUR_HAVE_TBB
// ---------------------------------------------------------------- oneTBB
// task_group has no per-task futures; the caller also works while it waits.
void BM_tbb_submit_result(benchmark::State& state) {
  tbb::task_arena arena(kWorkers);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<int> results(n);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::task_group tg;
      for (std::size_t i = 0; i < n; ++i) tg.run([&results, i] { results[i] = noop(); });
      tg.wait();
    });
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_tbb_round_trip(benchmark::State& state) {
  tbb::task_arena arena(kWorkers);
  int r = 0;
  round_trip(state, [&] {
    arena.execute([&] {
      tbb::task_group tg;
      tg.run([&] { r = noop(); });
      tg.wait();
    });
    benchmark::DoNotOptimize(r);
  });
}
#endif

}  // namespace

BENCHMARK(BM_concur_submit_result)->Arg(10000)->UseRealTime();
BENCHMARK(BM_concur_batched)->Arg(100000)->UseRealTime();
BENCHMARK(BM_concur_round_trip)->UseRealTime()->Iterations(20000);
BENCHMARK(BM_concur_round_trip_idle)->UseRealTime()->Iterations(300);
BENCHMARK(BM_naive_submit_result)->Arg(10000)->UseRealTime();
BENCHMARK(BM_naive_batched)->Arg(100000)->UseRealTime();
BENCHMARK(BM_naive_round_trip)->UseRealTime()->Iterations(20000);
#ifdef CONCUR_HAVE_TBB
BENCHMARK(BM_tbb_submit_result)->Arg(10000)->UseRealTime();
BENCHMARK(BM_tbb_round_trip)->UseRealTime()->Iterations(20000);
#endif

BENCHMARK_MAIN();
