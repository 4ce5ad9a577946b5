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
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/process.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void report_latency(benchmark::State& state, std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  if (samples.empty()) return;
  state.counters["median_us"] = samples[samples.size() / 2];
  state.counters["p99_us"] = samples[samples.size() * 99 / 100];
}

void pause_2ms(benchmark::State& state) {
  state.PauseTiming();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  state.ResumeTiming();
}

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
struct PingPong {
  alignas(64) std::atomic<std::uint32_t> a{0};
  alignas(64) std::atomic<std::uint32_t> b{0};
};

// Waits for *w == v: spins (yielding, bounded) for spin_ns, then sleeps on the futex.
void await(std::atomic<std::uint32_t>& w, std::uint32_t v, long spin_ns) {
  if (spin_ns > 0)
    concur::detail::spin_until([&] { return w.load(std::memory_order_acquire) == v; },
                               std::chrono::nanoseconds(spin_ns));
  for (;;) {
    std::uint32_t cur = w.load(std::memory_order_acquire);
    if (cur == v) return;
    concur::detail::futex_wait(&w, cur, std::nullopt, /*shared=*/true);
  }
}

void raw_futex(benchmark::State& state, long spin_ns, bool idle) {
  auto* s = static_cast<PingPong*>(::mmap(nullptr, sizeof(PingPong), PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (s) PingPong;
  pid_t child = ::fork();
  if (child == 0) {
    for (std::uint32_t i = 1;; ++i) {
      await(s->a, i, spin_ns);
      s->b.store(i, std::memory_order_release);
      concur::detail::futex_wake(&s->b, 1, true);
    }
  }
  std::vector<double> samples;
  std::uint32_t i = 0;
  for (auto _ : state) {
    if (idle) pause_2ms(state);
    ++i;
    auto t0 = Clock::now();
    s->a.store(i, std::memory_order_release);
    concur::detail::futex_wake(&s->a, 1, true);
    await(s->b, i, spin_ns);
    samples.push_back(us(Clock::now() - t0));
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::munmap(s, sizeof(PingPong));
  report_latency(state, samples);
}
void BM_raw_futex_block(benchmark::State& s) { raw_futex(s, 0, false); }
void BM_raw_futex_spin(benchmark::State& s) { raw_futex(s, concur::detail::kSpinFor.count(), false); }
void BM_raw_futex_block_idle(benchmark::State& s) { raw_futex(s, 0, true); }
BENCHMARK(BM_raw_futex_block)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_spin)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_futex_block_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

void raw_pipe(benchmark::State& state, bool idle) {
  int p1[2], p2[2];
  if (::pipe(p1) != 0 || ::pipe(p2) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  pid_t child = ::fork();
  if (child == 0) {
    ::close(p1[1]);
    ::close(p2[0]);
    char c;
    while (::read(p1[0], &c, 1) == 1)
      if (::write(p2[1], &c, 1) != 1) break;
    _exit(0);
  }
  ::close(p1[0]);
  ::close(p2[1]);
  std::vector<double> samples;
  char c = 'x';
  for (auto _ : state) {
    if (idle) pause_2ms(state);
    auto t0 = Clock::now();
    if (::write(p1[1], &c, 1) != 1 || ::read(p2[0], &c, 1) != 1) break;
    samples.push_back(us(Clock::now() - t0));
  }
  ::close(p1[1]);
  ::waitpid(child, nullptr, 0);
  ::close(p2[0]);
  report_latency(state, samples);
}
void BM_raw_pipe(benchmark::State& s) { raw_pipe(s, false); }
void BM_raw_pipe_idle(benchmark::State& s) { raw_pipe(s, true); }
BENCHMARK(BM_raw_pipe)->Iterations(20000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_pipe_idle)->Iterations(500)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
