// The raw IPC ping-pong of this machine between two processes, the floor that bench_mp
// and bench_process_pool set concur's numbers against: 1 byte over two pipes, and a futex
// word in shared memory (sleeping at once, or spinning first), warm or after idling.
// One copy, so both programs measure the same floor.
#pragma once

#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <optional>
#include <thread>
#include <vector>

#include "concur/detail/futex.hpp"

namespace bench_raw {

using Clock = std::chrono::steady_clock;

inline double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Per-iteration samples in µs -> the median_us and p99_us counters the Python drivers read.
inline void report_latency(benchmark::State& state, std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  if (samples.empty()) return;
  state.counters["median_us"] = samples[samples.size() / 2];
  state.counters["p99_us"] = samples[samples.size() * 99 / 100];
}

// Untimed 2 ms pause: long enough for every spinner to give up and the peer to sleep.
inline void pause_2ms(benchmark::State& state) {
  state.PauseTiming();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  state.ResumeTiming();
}

struct PingPong {
  alignas(64) std::atomic<std::uint32_t> a{0};
  alignas(64) std::atomic<std::uint32_t> b{0};
};

// Waits for *w == v: spins (yielding, bounded) for spin_ns, then sleeps on the futex.
inline void await(std::atomic<std::uint32_t>& w, std::uint32_t v, long spin_ns) {
  if (spin_ns > 0)
    concur::detail::spin_until([&] { return w.load(std::memory_order_acquire) == v; },
                               std::chrono::nanoseconds(spin_ns));
  for (;;) {
    std::uint32_t cur = w.load(std::memory_order_acquire);
    if (cur == v) return;
    concur::detail::futex_wait(&w, cur, std::nullopt, /*shared=*/true);
  }
}

// Futex ping-pong through shared memory with a forked child; spin_ns = 0 sleeps at once.
inline void raw_futex(benchmark::State& state, long spin_ns, bool idle) {
  auto* s = static_cast<PingPong*>(::mmap(nullptr, sizeof(PingPong), PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (s) PingPong;
  pid_t child = ::fork();
  if (child == 0) {
    for (std::uint32_t i = 1;; ++i) {  // until the SIGKILL below
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

// 1-byte ping-pong over two pipes with a forked child, blocking read/write.
inline void raw_pipe(benchmark::State& state, bool idle) {
  int p1[2], p2[2];
  if (::pipe(p1) != 0 || ::pipe(p2) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  pid_t child = ::fork();
  if (child == 0) {
    ::close(p1[1]);  // or the child would never see EOF on p1
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

}  // namespace bench_raw
