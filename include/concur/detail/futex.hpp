// Thin wrappers over the Linux futex: the one blocking primitive every concur wait uses,
// both inside a process (private futexes) and across processes (shared futexes on words
// that live in shared memory).
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

namespace concur::detail {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC in libstdc++ and libc++
using Deadline = std::optional<Clock::time_point>;

// The deadline `d` from now; saturates instead of overflowing for huge durations and
// treats negative ones as "already expired" (Python treats timeout <= 0 as a poll).
template <class Rep, class Period>
Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  auto now = Clock::now();
  if (d <= d.zero()) return now;
  if (std::chrono::duration<double>(d).count() > 1e8) return Clock::time_point::max();
  return now + std::chrono::ceil<Clock::duration>(d);
}

inline bool expired(const Deadline& deadline) {
  return deadline && Clock::now() >= *deadline;
}

// Blocks while *word == expected, until woken, the deadline passes, or a spurious wake-up.
// Returns false only when the deadline has passed.
inline bool futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       const Deadline& deadline = std::nullopt, bool shared = false) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  timespec ts{};
  timespec* tsp = nullptr;
  if (deadline) {
    if (*deadline == Clock::time_point::max()) {
      tsp = nullptr;
    } else {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    deadline->time_since_epoch())
                    .count();
      if (ns < 0) ns = 0;
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      tsp = &ts;
    }
  }
  long rc = syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), op, expected, tsp,
                    nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return false;
  return true;
}

inline void futex_wake(const std::atomic<std::uint32_t>* word, int count = INT_MAX,
                       bool shared = false) noexcept {
  int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), op, count, nullptr, nullptr,
          0);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How long a waiter spins before it sleeps. A blocking wake-up across cores costs tens of
// microseconds on virtual machines while a spinning hand-off costs ~0.1 µs, so a short
// bounded spin wins whenever the answer is about to arrive, and costs little when not.
inline constexpr std::chrono::nanoseconds kSpinFor{20'000};

// Spins until pred() holds or the spin budget is spent; returns pred()'s last value.
//
// Between rounds of pause instructions it yields the CPU: when the thread it waits for
// shares its CPU (the scheduler likes to put threads that wake each other together) a
// pure spin would only delay that thread, and a yield turns the hand-off into a cheap
// context switch. With the other CPU idle, the yield returns at once.
template <class Pred>
bool spin_until(Pred&& pred, std::chrono::nanoseconds budget = kSpinFor) {
  if (pred()) return true;
  auto until = Clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      cpu_relax();
      if (pred()) return true;
    }
    if (Clock::now() >= until) return pred();
    sched_yield();
    if (pred()) return true;
  }
}

// Number of CPUs this process may run on.
unsigned online_cpus() noexcept;

}  // namespace concur::detail
