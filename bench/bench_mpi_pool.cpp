// MPIPoolExecutor's latency and throughput on this machine (2 workers spawned on this
// host). bench/mpi_pool.py runs this program and the same workloads through mpi4py.futures'
// MPIPoolExecutor in the same run, and prints the ratios:
//     /usr/bin/python3 bench/mpi_pool.py build/release/bench/bench_mpi_pool
//
//   mpi_round_trip_warm   one submit -> result at a time (no-op task)
//   mpi_submit_result     N submits, then the N results
//   mpi_map_chunk256      map over 200 000 ints, chunksize 256
//   mpi_roundtrip_64MiB   echo of a 64 MiB std::vector<std::byte>
#include <benchmark/benchmark.h>

#include <numeric>
#include <vector>

#include "concur/mpi_pool.hpp"
#include "raw_ipc.hpp"

namespace {

using bench_raw::Clock;
using bench_raw::report_latency;
using bench_raw::us;

int noop() { return 1; }
long ident(long x) { return x; }
std::vector<std::byte> echo(std::vector<std::byte> v) { return v; }

void BM_mpi_round_trip_warm(benchmark::State& state) {
  concur::MPIPoolExecutor ex(2);
  for (int i = 0; i < 200; ++i) ex.submit(noop).result();
  std::vector<double> samples;
  for (auto _ : state) {
    auto t0 = Clock::now();
    ex.submit(noop).result();
    samples.push_back(us(Clock::now() - t0));
  }
  report_latency(state, samples);
}
BENCHMARK(BM_mpi_round_trip_warm)->Iterations(3000)->Unit(benchmark::kMicrosecond);

void BM_mpi_submit_result(benchmark::State& state) {
  concur::MPIPoolExecutor ex(2);
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<concur::Future<int>> fs;
    fs.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) fs.push_back(ex.submit(noop));
    for (auto& f : fs) benchmark::DoNotOptimize(f.result());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_mpi_submit_result)->Arg(5000)->Iterations(3)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_mpi_map_chunk256(benchmark::State& state) {
  concur::MPIPoolExecutor ex(2);
  std::vector<long> xs(static_cast<std::size_t>(state.range(0)));
  std::iota(xs.begin(), xs.end(), 0L);
  for (auto _ : state) {
    long sum = 0;
    for (long v : ex.map(ident, xs, concur::chunksize(256))) sum += v;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_mpi_map_chunk256)->Arg(200'000)->Iterations(3)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_mpi_roundtrip_64MiB(benchmark::State& state) {
  concur::MPIPoolExecutor ex(1);
  std::vector<std::byte> data(64u << 20, std::byte{1});
  ex.submit(echo, data).result();
  for (auto _ : state) benchmark::DoNotOptimize(ex.submit(echo, data).result().data());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_mpi_roundtrip_64MiB)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
