// Benchmarks of concur/async.hpp and async_sync.hpp, plus the loop-responsiveness check
// of issue 5: lateness of a 1 ms timer while CPU-bound work runs through run_in_executor.
//
// Counters: for the lateness benchmarks, p50_ms / p99_ms / max_ms of how late each 1 ms
// tick fired. The *_idle variant is the same timer with no executor load, measured in
// the same run, for the ratio.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "concur/async.hpp"
#include "concur/async_sync.hpp"
#include "concur/pickle.hpp"
#include "concur/process_pool.hpp"
#include "concur/thread_pool.hpp"

using asio::awaitable;
using namespace std::chrono_literals;

namespace {

void BM_LockAcquireRelease(benchmark::State& state) {
  concur::AsyncLock lock;
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      co_await lock.acquire();
      lock.release();
    }
  });
}
BENCHMARK(BM_LockAcquireRelease);

void BM_LockContended4Tasks(benchmark::State& state) {
  concur::AsyncLock lock;
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      std::vector<awaitable<void>> ws;
      for (int t = 0; t < 4; ++t)
        ws.push_back([](concur::AsyncLock& l) -> awaitable<void> {
          for (int i = 0; i < 100; ++i) {
            auto g = co_await l.scoped();
            co_await concur::yield_now();
          }
        }(lock));
      co_await concur::gather(std::move(ws));
    }
  });
  state.SetItemsProcessed(state.iterations() * 400);
}
BENCHMARK(BM_LockContended4Tasks);

void BM_QueuePutGet(benchmark::State& state) {
  concur::AsyncQueue<int> q(64);
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      co_await q.put(1);
      benchmark::DoNotOptimize(co_await q.get());
    }
  });
}
BENCHMARK(BM_QueuePutGet);

void BM_CreateTaskAndWait(benchmark::State& state) {
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      auto t = concur::create_task([]() -> awaitable<int> { co_return 1; }());
      benchmark::DoNotOptimize(co_await t.wait());
    }
  });
}
BENCHMARK(BM_CreateTaskAndWait);

void BM_ToThreadRoundTrip(benchmark::State& state) {
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) benchmark::DoNotOptimize(co_await concur::to_thread([] { return 1; }));
  });
}
BENCHMARK(BM_ToThreadRoundTrip)->UseRealTime();

void BM_RunInExecutorRoundTrip(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(2);
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) benchmark::DoNotOptimize(co_await concur::run_in_executor(pool, [] { return 1; }));
  });
}
BENCHMARK(BM_RunInExecutorRoundTrip)->UseRealTime();

void BM_RunInExecutorRoundTripDefaultPool(benchmark::State& state) {
  concur::ThreadPoolExecutor pool;
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) benchmark::DoNotOptimize(co_await concur::run_in_executor(pool, [] { return 1; }));
  });
}
BENCHMARK(BM_RunInExecutorRoundTripDefaultPool)->UseRealTime();

void BM_GatherRunInExecutor64(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(2);
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      std::vector<awaitable<int>> v;
      for (int i = 0; i < 64; ++i) v.push_back(concur::run_in_executor(pool, [i] { return i; }));
      benchmark::DoNotOptimize(co_await concur::gather(std::move(v)));
    }
  });
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_GatherRunInExecutor64)->UseRealTime();

// A LogRecord as SocketHandler pickles it (protocol 1), decoded to one JSON line.
std::string log_record_pickle() {
  std::string p("}q\x00(", 4);  // EMPTY_DICT BINPUT 0 MARK
  auto str = [&p](std::string_view k, std::string_view v) {
    for (auto s : {k, v}) {
      p.push_back('X');
      auto n = static_cast<std::uint32_t>(s.size());
      for (int i = 0; i < 4; ++i) p.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
      p.append(s);
    }
  };
  str("name", "app.worker");
  str("msg", "Sorted 7 items in 5040 steps, 3.142 ms");
  str("levelname", "INFO");
  str("pathname", "/srv/app/sorting.py");
  str("filename", "sorting.py");
  str("module", "sorting");
  str("funcName", "sort");
  str("threadName", "MainThread");
  str("processName", "MainProcess");
  auto key = [&p](std::string_view k) {
    p.push_back('X');
    auto n = static_cast<std::uint32_t>(k.size());
    for (int i = 0; i < 4; ++i) p.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
    p.append(k);
  };
  key("created");
  p += "G\x41\xda\xbc\xde\xf0\x12\x34\x56";
  key("levelno");
  p += "K\x14";
  key("args");
  p += "N";
  p += "u.";
  return p;
}

void BM_PickleToJsonLogRecord(benchmark::State& state) {
  std::string p = log_record_pickle();
  std::string out;
  for (auto _ : state) {
    out.clear();
    concur::pickle::pickle_to_json(p, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<long>(p.size()));
}
BENCHMARK(BM_PickleToJsonLogRecord);

// Lateness of a 1 ms periodic timer on the loop; with `load`, CPU-bound tasks keep every
// executor worker busy meanwhile.
void timer_lateness(benchmark::State& state, bool load) {
  concur::ThreadPoolExecutor pool(2);
  std::vector<double> late_ms;
  concur::run([&]() -> awaitable<void> {
    for (auto _ : state) {
      std::atomic<bool> stop{false};
      std::vector<concur::Task<long>> work;
      if (load)
        for (int i = 0; i < 2; ++i)
          work.push_back(concur::create_task(concur::run_in_executor(pool, [&stop] {
            long x = 0;
            while (!stop.load(std::memory_order_relaxed))
              for (int k = 0; k < 10000; ++k) x += k * k;
            return x;
          })));
      for (int tick = 0; tick < 200; ++tick) {
        auto t0 = std::chrono::steady_clock::now();
        co_await concur::sleep(1ms);
        late_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0 - 1ms).count());
      }
      stop = true;
      for (auto& w : work) benchmark::DoNotOptimize(co_await w.wait());
    }
  });
  std::sort(late_ms.begin(), late_ms.end());
  auto pct = [&](double q) { return late_ms[std::min(late_ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(late_ms.size())))]; };
  state.counters["p50_ms"] = pct(0.5);
  state.counters["p99_ms"] = pct(0.99);
  state.counters["max_ms"] = late_ms.back();
}
// CPU-bound work for a worker process: spins for `ms` milliseconds.
long spin_for_ms(int ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  long x = 0;
  while (std::chrono::steady_clock::now() < end)
    for (int k = 0; k < 1000; ++k) x += k * k;
  return x;
}

// The target: a 1 ms timer while CPU-bound tasks run in a process pool through
// run_in_executor (one busy worker per core).
void BM_TimerLateness_ProcessPoolBusy(benchmark::State& state) {
  concur::ProcessPoolExecutor pool(2);
  std::vector<double> late_ms;
  concur::run([&]() -> awaitable<void> {
    co_await concur::run_in_executor(pool, spin_for_ms, 1);  // workers up before we measure
    for (auto _ : state) {
      std::vector<concur::Task<long>> work;
      for (int i = 0; i < 2; ++i) work.push_back(concur::create_task(concur::run_in_executor(pool, spin_for_ms, 250)));
      for (int tick = 0; tick < 200; ++tick) {
        auto t0 = std::chrono::steady_clock::now();
        co_await concur::sleep(1ms);
        late_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0 - 1ms).count());
      }
      for (auto& w : work) benchmark::DoNotOptimize(co_await w.wait());
    }
  });
  std::sort(late_ms.begin(), late_ms.end());
  auto pct = [&](double q) { return late_ms[std::min(late_ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(late_ms.size())))]; };
  state.counters["p50_ms"] = pct(0.5);
  state.counters["p99_ms"] = pct(0.99);
  state.counters["max_ms"] = late_ms.back();
}
BENCHMARK(BM_TimerLateness_ProcessPoolBusy)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TimerLateness_Idle(benchmark::State& state) { timer_lateness(state, false); }
void BM_TimerLateness_ExecutorBusy(benchmark::State& state) { timer_lateness(state, true); }
BENCHMARK(BM_TimerLateness_Idle)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TimerLateness_ExecutorBusy)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
