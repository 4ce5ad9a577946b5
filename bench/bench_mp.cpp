// Queue and Pipe between two processes, beside the raw IPC ping-pong of this machine
// measured by this same program (a pipe; shared memory + futex, blocking and
// spin-then-block). Python's multiprocessing.Queue and Pipe run the same workloads in
// bench/mp.py, which runs this program and prints one table with the ratios:
//     /usr/bin/python3 bench/mp.py build/release/bench/bench_mp
//
// Workloads:
//   queue_round_trip / _idle   put on one Queue<int>, a child echoes it on another, get
//                              (idle: a 2 ms pause before each, so the child is asleep)
//   queue_throughput_int       a child puts N ints, the parent gets them (items/s)
//   queue_throughput_1KiB      the same with 1 KiB strings
//   pipe_round_trip / _idle    send an int on a Pipe, the child sends it back, recv
//   raw_pipe / _idle           1 byte over two pipes, blocking read/write
//   raw_futex_block / _idle    a futex word in shared memory, sleeping at once
//   raw_futex_spin             the same, spinning 20 µs (concur's default) before sleeping
// The raw_* ones live in bench/raw_ipc.hpp, shared with bench_process_pool.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/process.hpp"
#include "raw_ipc.hpp"

namespace {

using bench_raw::Clock;
using bench_raw::pause_2ms;
using bench_raw::report_latency;
using bench_raw::us;

// ---------------------------------------------------------------- Queue
void queue_echo(concur::Queue<int> in, concur::Queue<int> out) {
  for (;;) {
    int v = in.get();
    if (v < 0) return;
    out.put(v);
  }
}

void queue_round_trip(benchmark::State& state, bool idle) {
  concur::Queue<int> to, back;
  concur::Process child(queue_echo, to, back);
  child.start();
  for (int i = 0; i < 1000; ++i) {
    to.put(i);
    back.get();
  }
  std::vector<double> samples;
  int i = 0;
  for (auto _ : state) {
    if (idle) pause_2ms(state);
    auto t0 = Clock::now();
    to.put(++i);
    benchmark::DoNotOptimize(back.get());
    samples.push_back(us(Clock::now() - t0));
  }
  to.put(-1);
  child.join();
  report_latency(state, samples);
}
void BM_queue_round_trip(benchmark::State& s) { queue_round_trip(s, false); }
void BM_queue_round_trip_idle(benchmark::State& s) { queue_round_trip(s, true); }
BENCHMARK(BM_queue_round_trip)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_queue_round_trip_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

template <class T>
void produce_on_request(concur::Queue<long> requests, concur::Queue<T> out, T item) {
  for (;;) {
    long n = requests.get();
    if (n < 0) return;
    for (long k = 0; k < n; ++k) out.put(item);
  }
}

template <class T>
void queue_throughput(benchmark::State& state, T item) {
  const long n = state.range(0);
  concur::Queue<long> requests;
  concur::Queue<T> data(10000);  // bounded, as a real pipeline would be
  concur::Process child(produce_on_request<T>, requests, data, item);
  child.start();
  requests.put(1000);
  for (int k = 0; k < 1000; ++k) data.get();
  for (auto _ : state) {
    requests.put(n);
    for (long k = 0; k < n; ++k) benchmark::DoNotOptimize(data.get());
  }
  requests.put(-1);
  child.join();
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_queue_throughput_int(benchmark::State& s) { queue_throughput<int>(s, 7); }
void BM_queue_throughput_1KiB(benchmark::State& s) {
  queue_throughput<std::string>(s, std::string(1024, 'x'));
}
BENCHMARK(BM_queue_throughput_int)->Arg(1'000'000)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_queue_throughput_1KiB)->Arg(200'000)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------- Pipe
void pipe_echo(concur::Connection conn) {
  for (;;) {
    int v = conn.recv<int>();
    if (v < 0) return;
    conn.send(v);
  }
}

void pipe_round_trip(benchmark::State& state, bool idle) {
  auto [mine, theirs] = concur::Pipe();
  concur::Process child(pipe_echo, std::move(theirs));
  child.start();
  for (int i = 0; i < 1000; ++i) {
    mine.send(i);
    mine.recv<int>();
  }
  std::vector<double> samples;
  int i = 0;
  for (auto _ : state) {
    if (idle) pause_2ms(state);
    auto t0 = Clock::now();
    mine.send(++i);
    benchmark::DoNotOptimize(mine.recv<int>());
    samples.push_back(us(Clock::now() - t0));
  }
  mine.send(-1);
  child.join();
  report_latency(state, samples);
}
void BM_pipe_round_trip(benchmark::State& s) { pipe_round_trip(s, false); }
void BM_pipe_round_trip_idle(benchmark::State& s) { pipe_round_trip(s, true); }
BENCHMARK(BM_pipe_round_trip)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pipe_round_trip_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------- raw IPC
void BM_raw_futex_block(benchmark::State& s) { bench_raw::raw_futex(s, 0, false); }
void BM_raw_futex_spin(benchmark::State& s) {
  bench_raw::raw_futex(s, concur::detail::kSpinFor.count(), false);
}
void BM_raw_futex_block_idle(benchmark::State& s) { bench_raw::raw_futex(s, 0, true); }
BENCHMARK(BM_raw_futex_block)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_spin)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_block_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

void BM_raw_pipe(benchmark::State& s) { bench_raw::raw_pipe(s, false); }
void BM_raw_pipe_idle(benchmark::State& s) { bench_raw::raw_pipe(s, true); }
BENCHMARK(BM_raw_pipe)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_pipe_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
