// Process pool latency, throughput and transfer speed, beside the raw IPC limits of this
// machine measured here too (pipe and shared-memory futex ping-pong between two
// processes, blocking and spin-then-block; memcpy bandwidth). Python's
// ProcessPoolExecutor and multiprocessing.Pool run the same workloads in
// bench/process_pool.py, which runs this program and prints one table with ratios:
//     /usr/bin/python3 bench/process_pool.py build/release/bench/bench_process_pool
//
// Workloads (tasks are no-ops unless said otherwise, so the numbers measure the pool):
//   round_trip_warm / _idle   one submit -> result at a time (idle: 2 ms pause before each)
//   submit_result             N submits, then the N results
//   map_chunk256 / map_10M    map over ints with chunksize 256 / 10 M ints in big chunks
//   roundtrip_64MiB           echo of a 64 MiB std::vector<std::byte>
//   startup_<method>          pool creation to first result, 2 workers
//   death_to_error            SIGKILL of a busy worker to the error on its future
//   raw_*                     the IPC limits (bench/raw_ipc.hpp, shared with bench_mp)
#include <benchmark/benchmark.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "concur/pool.hpp"
#include "concur/process_pool.hpp"
#include "raw_ipc.hpp"

namespace {

using bench_raw::Clock;
using bench_raw::report_latency;
using bench_raw::us;
constexpr int kWorkers = 2;

int noop() { return 1; }
long ident(long x) { return x; }
std::vector<std::byte> echo(std::vector<std::byte> v) { return v; }
void spin_forever() {
  for (;;) benchmark::DoNotOptimize(::getpid());
}

// ---------------------------------------------------------------- pool workloads
void BM_round_trip_warm(benchmark::State& state) {
  concur::ProcessPoolExecutor ex(kWorkers);
  for (int i = 0; i < 1000; ++i) ex.submit(noop).result();
  std::vector<double> samples;
  for (auto _ : state) {
    auto t0 = Clock::now();
    ex.submit(noop).result();
    samples.push_back(us(Clock::now() - t0));
  }
  report_latency(state, samples);
}
BENCHMARK(BM_round_trip_warm)->Iterations(20000)->Unit(benchmark::kMicrosecond);

void BM_round_trip_idle(benchmark::State& state) {
  concur::ProcessPoolExecutor ex(kWorkers);
  ex.submit(noop).result();
  std::vector<double> samples, submit_part;
  for (auto _ : state) {
    bench_raw::pause_2ms(state);  // every spinner gives up
    auto t0 = Clock::now();
    auto f = ex.submit(noop);
    auto t1 = Clock::now();
    f.result();
    samples.push_back(us(Clock::now() - t0));
    submit_part.push_back(us(t1 - t0));
  }
  report_latency(state, samples);
  std::sort(submit_part.begin(), submit_part.end());
  if (!submit_part.empty()) state.counters["submit_median_us"] = submit_part[submit_part.size() / 2];
}
BENCHMARK(BM_round_trip_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

void BM_submit_result(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  concur::ProcessPoolExecutor ex(kWorkers);
  ex.submit(noop).result();
  std::vector<concur::Future<int>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  for (auto _ : state) {
    fs.clear();
    for (int i = 0; i < n; ++i) fs.push_back(ex.submit(noop));
    for (auto& f : fs) benchmark::DoNotOptimize(f.result());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_submit_result)->Arg(20000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_map(benchmark::State& state) {
  const long n = state.range(0);
  const std::size_t chunk = static_cast<std::size_t>(state.range(1));
  concur::ProcessPoolExecutor ex(kWorkers);
  ex.submit(noop).result();
  std::vector<long> in(static_cast<std::size_t>(n));
  std::iota(in.begin(), in.end(), 0L);
  // One untimed pass first, as Python's side keeps its best of two: the first touch of the
  // transfer areas and of malloc's arenas is not what this measures.
  for (long v : ex.map(ident, in, concur::chunksize(chunk))) benchmark::DoNotOptimize(v);
  for (auto _ : state) {
    long sum = 0;
    for (long v : ex.map(ident, in, concur::chunksize(chunk))) sum += v;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
// Python's ProcessPoolExecutor.map(chunksize=256) workload, and Pool.map's default
// chunking of 10 M items over 2 workers (ceil(n / (4 * workers)) = 1.25 M per chunk).
BENCHMARK(BM_map)->Name("BM_map_chunk256")->Args({1'000'000, 256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_map)->Name("BM_map_10M")->Args({10'000'000, 1'250'000})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_map)->Name("BM_map_10M_chunk64k")->Args({10'000'000, 65536})->Unit(benchmark::kMillisecond)->UseRealTime();

// concur::Pool.map with its default chunking, the like-for-like peer of Python's Pool.map.
void BM_pool_map(benchmark::State& state) {
  const auto n = static_cast<long>(state.range(0));
  concur::Pool pool(kWorkers);
  std::vector<long> in(static_cast<std::size_t>(n));
  std::iota(in.begin(), in.end(), 0L);
  pool.map(ident, in);  // untimed pass: workers up, areas and pages touched
  for (auto _ : state) {
    auto out = pool.map(ident, in);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_pool_map)->Name("BM_pool_map_10M")->Arg(10'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_roundtrip_64MiB(benchmark::State& state) {
  concur::ProcessPoolExecutor ex(1);
  std::vector<std::byte> data(64u << 20, std::byte{1});
  for (int i = 0; i < 3; ++i) ex.submit(echo, data).result();  // first touch of areas and pages
  for (auto _ : state) {
    auto f = ex.submit(echo, data);  // the result stays in the future: no copy of it here
    benchmark::DoNotOptimize(f.result().data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_roundtrip_64MiB)->Iterations(60)->Unit(benchmark::kMillisecond)->UseRealTime();

void startup(benchmark::State& state, concur::StartMethod m) {
  if (m == concur::StartMethod::forkserver) {
    concur::ProcessPoolExecutor warm({.max_workers = 1, .start_method = m});
    warm.submit(noop).result();  // the server runs from now on
  }
  std::vector<double> samples;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto* ex = new concur::ProcessPoolExecutor({.max_workers = kWorkers, .start_method = m});
    ex->submit(noop).result();
    auto d = Clock::now() - t0;
    state.SetIterationTime(std::chrono::duration<double>(d).count());
    samples.push_back(us(d));
    delete ex;  // not timed
  }
  report_latency(state, samples);
}
void BM_startup_fork(benchmark::State& s) { startup(s, concur::StartMethod::fork); }
void BM_startup_forkserver(benchmark::State& s) { startup(s, concur::StartMethod::forkserver); }
void BM_startup_spawn(benchmark::State& s) { startup(s, concur::StartMethod::spawn); }
BENCHMARK(BM_startup_fork)->Iterations(50)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_startup_forkserver)->Iterations(50)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_startup_spawn)->Iterations(50)->UseManualTime()->Unit(benchmark::kMillisecond);

void death_to_error(benchmark::State& state, concur::OnWorkerDeath policy) {
  std::vector<double> samples;
  auto ex = std::make_unique<concur::ProcessPoolExecutor>(
      concur::ProcessPoolOptions{.max_workers = 1, .on_worker_death = policy});
  for (auto _ : state) {
    if (policy == concur::OnWorkerDeath::break_pool)
      ex = std::make_unique<concur::ProcessPoolExecutor>(
          concur::ProcessPoolOptions{.max_workers = 1, .on_worker_death = policy});
    ex->submit(noop).result();
    auto f = ex->submit(spin_forever);
    while (!f.running()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // busy for real, everyone asleep
    pid_t pid = ex->worker_pids().at(0);
    auto t0 = Clock::now();
    ::kill(pid, SIGKILL);
    f.wait();
    auto d = Clock::now() - t0;
    state.SetIterationTime(std::chrono::duration<double>(d).count());
    samples.push_back(us(d));
  }
  report_latency(state, samples);
}
void BM_death_to_error_break(benchmark::State& s) { death_to_error(s, concur::OnWorkerDeath::break_pool); }
void BM_death_to_error_replace(benchmark::State& s) {
  death_to_error(s, concur::OnWorkerDeath::replace_worker);
}
BENCHMARK(BM_death_to_error_break)->Iterations(30)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_death_to_error_replace)->Iterations(30)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------- raw IPC limits
void BM_raw_futex_block(benchmark::State& s) { bench_raw::raw_futex(s, 0, false); }
void BM_raw_futex_spin(benchmark::State& s) { bench_raw::raw_futex(s, 50'000, false); }
// Blocking ping-pong after the peer has slept a while: the "after idling" reference.
void BM_raw_futex_block_idle(benchmark::State& s) { bench_raw::raw_futex(s, 0, true); }
BENCHMARK(BM_raw_futex_block)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_spin)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_block_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

void BM_raw_pipe(benchmark::State& s) { bench_raw::raw_pipe(s, false); }
BENCHMARK(BM_raw_pipe)->Iterations(20000)->Unit(benchmark::kMicrosecond);

void BM_memcpy_64MiB(benchmark::State& state) {
  std::vector<std::byte> a(64u << 20, std::byte{1}), b(64u << 20, std::byte{2});
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), a.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(a.size()));
}
BENCHMARK(BM_memcpy_64MiB)->Iterations(50)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
