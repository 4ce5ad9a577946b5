// Chaos and soak tests of the process side (ProcessPoolExecutor, Pool): work flows while
// the environment misbehaves (workers are killed from outside, tasks crash themselves,
// futures are cancelled, the pool is shut down, terminated or destroyed at random
// moments). Outcomes are random, so each test checks invariants, never exact results.
//
// Knobs (environment):
//   CONCUR_CHAOS_SEED=<n>    replay a run's workload choices (every test logs its seed;
//                            thread timing is not replayable, the workload is)
//   CONCUR_SOAK_ROUNDS=<n>   rounds of the soak test (default: a few)
//
// Deadlines only turn a hang into a failure: nothing here asserts a timing. All tests run
// under the resource census (support/census.cpp); the soak test also checks it per round.
// CTest label: test_chaos (`ctest -L chaos`).
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "concur/detail/process_fd.hpp"
#include "concur/pool.hpp"
#include "concur/process_pool.hpp"
#include "support/census.hpp"
#include "support/hang_report.hpp"
#include "support/sanitizers.hpp"

namespace {

using namespace std::chrono_literals;
using concur::OnWorkerDeath;
using concur::ProcessPoolExecutor;
using concur::StartMethod;
using Clock = std::chrono::steady_clock;

// Sanitized builds run everything several times slower and keep more memory (ASan's
// quarantine, TSan's shadow): smaller workloads and wider memory margins there.
using test_support::kSanitized;

constexpr auto kBound = 60s;     // "this is a hang", never an expectation
constexpr auto kWatchdog = 150s;  // under CTest's 180 s: our message, not a bare timeout

std::size_t scaled(std::size_t n) { return kSanitized ? std::max<std::size_t>(1, n / 2) : n; }

// ---------------------------------------------------------------- seeds and knobs
std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 0);
}

// The run's seed: CONCUR_CHAOS_SEED, else the clock. Logged by every test that uses it.
std::uint64_t chaos_seed() {
  static const std::uint64_t seed = env_u64(
      "CONCUR_CHAOS_SEED",
      static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
          (static_cast<std::uint64_t>(::getpid()) << 32));
  return seed;
}

std::string seed_text() {
  return "seed " + std::to_string(chaos_seed()) + " (replay: CONCUR_CHAOS_SEED=" +
         std::to_string(chaos_seed()) + ")";
}

// Logs the seed and puts it in every failure message of the calling test.
#define CHAOS_SEED_TRACE()                                                             \
  std::printf("[chaos] %s: %s\n",                                                      \
              testing::UnitTest::GetInstance()->current_test_info()->name(),           \
              seed_text().c_str());                                                    \
  std::fflush(stdout);                                                                 \
  ::testing::Test::RecordProperty("chaos_seed", std::to_string(chaos_seed()));         \
  SCOPED_TRACE(seed_text())

// A test-local generator: the seed mixed with a per-test salt.
std::mt19937_64 make_rng(std::uint64_t salt) { return std::mt19937_64(chaos_seed() ^ (salt * 0x9e3779b97f4a7c15ull)); }

int uniform(std::mt19937_64& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// Ends the test with the seed and a report of where each of its processes is stuck if it
// has not finished in time: a hang must fail loudly, and a library that hangs would also
// hang the test's own cleanup.
class Watchdog {
 public:
  // Returns once the thread runs: a `fork` pool made next must not fork the program while
  // this thread is still being set up (clang 14's ASan allocator does not lock around
  // fork(); a zygote forked then inherited one of its locks held, and its workers hung).
  Watchdog() : thread_([this] { run(); }) {
    std::unique_lock l(mu_);
    cv_.wait(l, [this] { return started_; });
  }
  ~Watchdog() {
    {
      std::lock_guard l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    std::unique_lock l(mu_);
    started_ = true;
    cv_.notify_all();
    if (cv_.wait_for(l, kWatchdog, [this] { return done_; })) return;
    test_support::report_hang_and_exit(
        std::string("[chaos] HANG: ") +
        testing::UnitTest::GetInstance()->current_test_info()->name() + " did not finish within " +
        std::to_string(kWatchdog.count()) + " s; " + seed_text());
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool done_ = false;
  std::thread thread_;
};

// A future that is not done by the deadline is a hang: report it with the seed and end the
// test (the pool's destructor would wait for it forever).
template <class F>
void await_or_abort(const F& f, Clock::time_point until, const std::string& what) {
  auto left = until - Clock::now();
  if (left < 0ms) left = 0ms;
  if (f.wait(left)) return;
  test_support::report_hang_and_exit("[chaos] HANG: " + what + " not done within the bound; " +
                                     seed_text());
}

// ---------------------------------------------------------------- the workload
enum Kind : int { kNoop, kNap, kThrow, kBlob, kSegv, kAbort, kLong };

// A task's result: the worker's pid and a payload tied to the task's index.
using Out = std::pair<int, std::vector<std::uint8_t>>;

std::uint8_t pattern(int i, std::size_t k) { return static_cast<std::uint8_t>(static_cast<std::size_t>(i) * 31u + k); }

Out chaos_work(int i, int kind, int param) {
  switch (kind) {
    case kNap:
    case kLong: ::usleep(static_cast<useconds_t>(param)); break;
    case kThrow: throw std::runtime_error("chaos task " + std::to_string(i));
    case kBlob: {
      std::vector<std::uint8_t> v(static_cast<std::size_t>(param));
      for (std::size_t k = 0; k < v.size(); ++k) v[k] = pattern(i, k);
      return {static_cast<int>(::getpid()), std::move(v)};
    }
    case kSegv:
      std::signal(SIGSEGV, SIG_DFL);
      ::raise(SIGSEGV);
      break;
    case kAbort:
      std::signal(SIGABRT, SIG_DFL);
      ::raise(SIGABRT);
      break;
    default: break;
  }
  std::vector<std::uint8_t> v(4);
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = pattern(i, k);
  return {static_cast<int>(::getpid()), std::move(v)};
}

struct Spec {
  int i = 0;
  int kind = kNoop;
  int param = 0;
};

bool crashes(const Spec& s) { return s.kind == kSegv || s.kind == kAbort; }

// A random task; crash_per_mille of them crash their worker.
Spec random_spec(std::mt19937_64& rng, int i, int crash_per_mille) {
  Spec s{i, kNoop, 0};
  int r = uniform(rng, 0, 999);
  if (r < crash_per_mille) {
    s.kind = uniform(rng, 0, 1) ? kSegv : kAbort;
  } else if (r < 300) {
    s.kind = kNoop;
  } else if (r < 700) {
    s.kind = kNap;
    s.param = uniform(rng, 0, 2000);  // 0-2 ms
  } else if (r < 850) {
    s.kind = kThrow;
  } else if (r < 900) {
    s.kind = kBlob;
    s.param = uniform(rng, 64 << 10, 2 << 20);  // 64 KiB - 2 MiB
  } else {
    s.kind = kNoop;
  }
  return s;
}

// How a future ended.
enum class Got { value, own_error, died, cancelled, broken, shutdown, other };

const char* name(Got g) {
  switch (g) {
    case Got::value: return "value";
    case Got::own_error: return "its own exception";
    case Got::died: return "WorkerDiedError";
    case Got::cancelled: return "CancelledError";
    case Got::broken: return "BrokenProcessPool";
    case Got::shutdown: return "ShutdownError";
    default: return "something else";
  }
}

bool right_value(const Out& o, const Spec& s) {
  if (o.first <= 0 || o.first == ::getpid()) return false;
  std::size_t n = s.kind == kBlob ? static_cast<std::size_t>(s.param) : 4u;
  if (o.second.size() != n) return false;
  for (std::size_t k = 0; k < n; ++k)
    if (o.second[k] != pattern(s.i, k)) return false;
  return true;
}

// Classifies a done future against its spec; `detail` says what was wrong for Got::other;
// `pid` is the worker that produced a value.
Got classify(const concur::Future<Out>& f, const Spec& s, std::string& detail, int* pid = nullptr) {
  try {
    const Out& o = f.result();
    if (s.kind == kThrow || crashes(s)) {
      detail = "task " + std::to_string(s.i) + " of kind " + std::to_string(s.kind) + " returned a value";
      return Got::other;
    }
    if (!right_value(o, s)) {
      detail = "task " + std::to_string(s.i) + " returned a wrong value";
      return Got::other;
    }
    if (pid) *pid = o.first;
    return Got::value;
  } catch (const concur::CancelledError&) {
    return Got::cancelled;
  } catch (const concur::WorkerDiedError&) {
    return Got::died;
  } catch (const concur::BrokenProcessPool&) {
    return Got::broken;
  } catch (const concur::ShutdownError&) {
    return Got::shutdown;
  } catch (const concur::Error& e) {
    detail = "task " + std::to_string(s.i) + ": " + typeid(e).name() + ": " + e.what();
    return Got::other;
  } catch (const std::runtime_error& e) {
    if (s.kind == kThrow && typeid(e) == typeid(std::runtime_error) &&
        std::string(e.what()) == "chaos task " + std::to_string(s.i))
      return Got::own_error;
    detail = "task " + std::to_string(s.i) + ": " + typeid(e).name() + ": " + e.what();
    return Got::other;
  } catch (const std::exception& e) {
    detail = "task " + std::to_string(s.i) + ": " + typeid(e).name() + ": " + e.what();
    return Got::other;
  } catch (...) {
    detail = "task " + std::to_string(s.i) + ": a non-standard exception";
    return Got::other;
  }
}

struct Tally {
  std::size_t n[7] = {};
  std::size_t& operator[](Got g) { return n[static_cast<int>(g)]; }
  std::string text() const {
    std::string out;
    for (int g = 0; g < 7; ++g)
      if (n[g]) out += std::string(out.empty() ? "" : ", ") + name(static_cast<Got>(g)) + " " + std::to_string(n[g]);
    return out;
  }
};

// ---------------------------------------------------------------- the killer
// Pids known to have run a task: past the start-up hand-shake (see KillerVsReplaceWorker
// for why the killer spares workers that are still starting).
class ReadySet {
 public:
  void add(int pid) {
    std::lock_guard l(mu_);
    pids_.insert(pid);
  }
  bool contains(pid_t pid) const {
    std::lock_guard l(mu_);
    return pids_.count(pid) != 0;
  }

 private:
  mutable std::mutex mu_;
  std::set<pid_t> pids_;
};

// A thread that sends SIGKILL to a random current worker every few ms, up to max_kills.
class Killer {
 public:
  Killer(std::function<std::vector<pid_t>()> pids, const ReadySet* ready, std::uint64_t seed,
         std::size_t max_kills, int min_ms = 1, int max_ms = 6)
      : pids_(std::move(pids)), ready_(ready), rng_(seed), max_(max_kills), min_ms_(min_ms),
        max_ms_(max_ms), thread_([this] { run(); }) {}
  ~Killer() { stop(); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::size_t kills() const { return kills_.load(); }

 private:
  void run() {
    while (!stop_.load() && kills_.load() < max_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(uniform(rng_, min_ms_, max_ms_)));
      std::vector<pid_t> candidates;
      for (pid_t p : pids_())
        if (p > 0 && p != ::getpid() && (!ready_ || ready_->contains(p))) candidates.push_back(p);
      if (candidates.empty()) continue;
      pid_t victim = candidates[static_cast<std::size_t>(uniform(rng_, 0, static_cast<int>(candidates.size()) - 1))];
      if (::kill(victim, SIGKILL) == 0) kills_.fetch_add(1);
    }
  }
  std::function<std::vector<pid_t>()> pids_;
  const ReadySet* ready_;
  std::mt19937_64 rng_;
  std::size_t max_;
  int min_ms_, max_ms_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> kills_{0};
  std::thread thread_;
};

}  // namespace
namespace concur {
inline void PrintTo(StartMethod m, std::ostream* os) { *os << to_string(m); }
}  // namespace concur
namespace {

// ================================================================ 1. killer vs replace_worker
// The killer spares workers that have not run a task yet: under replace_worker a worker
// that dies before its start-up hand-shake is replaced, but kStartupDeathLimit such deaths
// in a row break the pool on purpose (a crashing initializer must not respawn forever),
// and a killer this fast could produce them (see
// WorkerKilledWhileStartingDoesNotBreakAReplaceWorkerPool below for a single one).
class KillerVsReplaceWorker : public testing::TestWithParam<StartMethod> {};

TEST_P(KillerVsReplaceWorker, EveryFutureEndsWithItsOutcomeOrWorkerDiedError) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  auto rng = make_rng(1 + static_cast<std::uint64_t>(GetParam()));
  const int workers = uniform(rng, 2, 3);
  const int total = static_cast<int>(scaled(3000));
  const std::size_t window = 48;  // outstanding futures: bounds the memory of big results
  ProcessPoolExecutor ex({.max_workers = workers, .start_method = GetParam(),
                          .on_worker_death = OnWorkerDeath::replace_worker});
  ReadySet ready;
  Tally tally;
  std::size_t crash_tasks = 0;
  std::vector<std::string> problems;
  auto until = Clock::now() + kBound;
  std::deque<std::pair<Spec, concur::Future<Out>>> open;
  auto settle = [&](std::pair<Spec, concur::Future<Out>>& e) {
    await_or_abort(e.second, until, "task " + std::to_string(e.first.i));
    std::string detail;
    int pid = 0;
    Got g = classify(e.second, e.first, detail, &pid);
    ++tally[g];
    if (g == Got::value) ready.add(pid);
    bool ok = g == Got::died || (crashes(e.first) ? false : g == Got::value || g == Got::own_error);
    if (crashes(e.first) && g != Got::died) detail = "crashing task " + std::to_string(e.first.i) + " ended with " + name(g);
    if (!ok && problems.size() < 10) problems.push_back(detail.empty() ? std::string(name(g)) : detail);
  };
  {
    Killer killer([&] { return ex.worker_pids(); }, &ready, rng(), scaled(60));
    for (int i = 0; i < total; ++i) {
      Spec s = random_spec(rng, i, 10);
      crash_tasks += crashes(s);
      open.emplace_back(s, ex.submit(chaos_work, s.i, s.kind, s.param));
      while (open.size() > window) {
        settle(open.front());
        open.pop_front();
      }
    }
    while (!open.empty()) {
      settle(open.front());
      open.pop_front();
    }
    killer.stop();
    std::size_t deaths = killer.kills() + crash_tasks;
    EXPECT_LE(tally[Got::died], deaths) << tally.text();
    EXPECT_GE(tally[Got::died], crash_tasks) << tally.text();  // a crashing task never completes
    // Every WorkerDiedError is a process that died; no respawn storm either.
    EXPECT_GE(ex.processes_started(), tally[Got::died] + 1) << tally.text();
    EXPECT_LE(ex.processes_started(), static_cast<std::size_t>(workers) + deaths) << tally.text();
    std::printf("[chaos] %d workers, %s, %zu kills, %zu crash tasks, %zu processes started\n",
                workers, tally.text().c_str(), killer.kills(), crash_tasks, ex.processes_started());
  }
  for (auto& p : problems) ADD_FAILURE() << p;
  EXPECT_EQ(tally[Got::value] + tally[Got::own_error] + tally[Got::died], static_cast<std::size_t>(total));
  // Still a working pool.
  Spec last{total, kNoop, 0};
  std::string detail;
  EXPECT_EQ(classify(ex.submit(chaos_work, last.i, last.kind, last.param), last, detail), Got::value) << detail;
  ex.shutdown();
  EXPECT_THROW(ex.submit(chaos_work, 0, kNoop, 0), concur::ShutdownError);
}

INSTANTIATE_TEST_SUITE_P(Chaos, KillerVsReplaceWorker,
                         testing::Values(StartMethod::forkserver, StartMethod::fork),
                         [](const auto& param_info) { return std::string(concur::to_string(param_info.param)); });

// A worker that is killed before it finished starting (here: inside a slow initializer) is
// replaced under replace_worker, as any dead worker is: the pool goes on. (Found by the
// chaos tests: such a death used to break the pool whatever the policy.)
void slow_init(std::string started, std::string release) {
  std::ofstream(started) << "x";
  for (int i = 0; i < 60'000 && ::access(release.c_str(), F_OK) != 0; ++i) ::usleep(1000);
}

TEST(ChaosFindings, WorkerKilledWhileStartingDoesNotBreakAReplaceWorkerPool) {
  char tmpl[] = "/tmp/concur-chaos-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string started = dir + "/started", release = dir + "/release";
  {
    ProcessPoolExecutor ex({.max_workers = 1, .initializer = {slow_init, started, release},
                            .on_worker_death = OnWorkerDeath::replace_worker});
    auto f = ex.submit(chaos_work, 1, kNoop, 0);
    for (int i = 0; i < 60'000 && ::access(started.c_str(), F_OK) != 0; ++i) ::usleep(1000);
    auto pids = ex.worker_pids();
    ASSERT_EQ(pids.size(), 1u);
    std::ofstream(release) << "x";  // later workers start at once
    ::kill(pids[0], SIGKILL);        // the first dies inside its initializer
    std::string detail;
    EXPECT_EQ(classify(f, Spec{1, kNoop, 0}, detail), Got::value) << detail;
    try {
      auto g = ex.submit(chaos_work, 2, kNoop, 0);
      EXPECT_EQ(classify(g, Spec{2, kNoop, 0}, detail), Got::value) << detail;
    } catch (const concur::BrokenProcessPool& e) {
      ADD_FAILURE() << "a submit after the death: " << e.what();
    }
  }
  std::remove(started.c_str());
  std::remove(release.c_str());
  ::rmdir(dir.c_str());
}

// ================================================================ 2. break_pool under chaos
TEST(Chaos, BreakPoolUnderChaosFailsEverythingPendingWithBrokenProcessPool) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  auto rng = make_rng(2);
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    const int workers = uniform(rng, 2, 3);
    const bool external = round % 2 == 0;  // SIGKILL from outside, or a task that crashes
    ProcessPoolExecutor ex({.max_workers = workers,
                            .start_method = round == 3 ? StartMethod::fork : StartMethod::forkserver,
                            .on_worker_death = OnWorkerDeath::break_pool});
    std::vector<std::pair<Spec, concur::Future<Out>>> fs;
    std::size_t rejected = 0;
    bool first_rejection_seen = false;
    std::vector<std::string> problems;
    {
      std::unique_ptr<Killer> killer;
      if (external)
        killer = std::make_unique<Killer>([&] { return ex.worker_pids(); }, nullptr, rng(), 1,
                                          uniform(rng, 1, 5), 20);
      const int total = static_cast<int>(scaled(1500));
      const int crash_at = external ? -1 : uniform(rng, 50, total / 2);
      for (int i = 0; i < total; ++i) {
        Spec s = random_spec(rng, i, 0);
        if (i == crash_at) s.kind = uniform(rng, 0, 1) ? kSegv : kAbort;
        if (s.kind == kBlob) s.param = std::min(s.param, 256 << 10);  // all are kept: stay small
        if (i % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(uniform(rng, 100, 500)));
        try {
          fs.emplace_back(s, ex.submit(chaos_work, s.i, s.kind, s.param));
          if (first_rejection_seen && problems.size() < 10)
            problems.push_back("submit " + std::to_string(i) + " accepted after a rejection");
        } catch (const concur::BrokenProcessPool&) {
          ++rejected;
          first_rejection_seen = true;
        } catch (const std::exception& e) {
          if (problems.size() < 10) problems.push_back(std::string("submit threw ") + e.what());
        }
      }
      if (killer) killer->stop();
      // If nothing died yet (a slow killer), make sure something does: the test is about
      // what a death does.
      if (!ex.engine()->broken()) {
        Spec s{-1, kSegv, 0};
        auto f = ex.submit(chaos_work, s.i, s.kind, s.param);
        auto until = Clock::now() + kBound;
        await_or_abort(f, until, "the crashing task");
        fs.emplace_back(s, f);
      }
    }
    auto until = Clock::now() + kBound;
    Tally tally;
    for (auto& [s, f] : fs) {
      await_or_abort(f, until, "task " + std::to_string(s.i));
      std::string detail;
      Got g = classify(f, s, detail);
      ++tally[g];
      bool ok = g == Got::broken || (!crashes(s) && (g == Got::value || g == Got::own_error));
      if (!ok && problems.size() < 10) problems.push_back(detail.empty() ? name(g) : detail);
    }
    for (auto& p : problems) ADD_FAILURE() << p;
    EXPECT_GE(tally[Got::broken], 1u) << tally.text();
    EXPECT_TRUE(ex.engine()->broken());
    EXPECT_THROW(ex.submit(chaos_work, 0, kNoop, 0), concur::BrokenProcessPool);
    std::printf("[chaos] round %d: %d workers, %s, %zu submits rejected\n", round, workers,
                tally.text().c_str(), rejected);
  }
}

// ================================================================ 3. cancellation races
TEST(Chaos, CancellationRacesKeepEveryFutureConsistent) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  auto rng = make_rng(3);
  const int workers = 2;
  const int total = static_cast<int>(scaled(800));
  // break_pool: killing a running task on request must not count as a worker's death.
  ProcessPoolExecutor ex({.max_workers = workers, .on_worker_death = OnWorkerDeath::break_pool});
  std::vector<Spec> specs(static_cast<std::size_t>(total));
  std::vector<concur::Future<Out>> fs(static_cast<std::size_t>(total));
  std::vector<std::atomic<int>> cancel_said(static_cast<std::size_t>(total));  // 1 cancel, 2 kill_running
  std::atomic<int> published{0};
  std::atomic<bool> submitting{true};
  std::atomic<std::size_t> kill_true{0};
  std::mutex problems_mu;
  std::vector<std::string> problems;
  auto problem = [&](std::string p) {
    std::lock_guard l(problems_mu);
    if (problems.size() < 10) problems.push_back(std::move(p));
  };
  for (int i = 0; i < total; ++i) {
    Spec s = random_spec(rng, i, 0);
    if (uniform(rng, 0, 9) == 0) s = Spec{i, kLong, uniform(rng, 3000, 15000)};  // 3-15 ms: often running
    if (s.kind == kBlob) s.param = std::min(s.param, 256 << 10);
    specs[static_cast<std::size_t>(i)] = s;
  }
  std::thread canceller([&, seed = rng()] {
    std::mt19937_64 r(seed);
    for (int after = 0; submitting.load() || (after++ < 3000 && !fs.back().done());) {
      int have = published.load(std::memory_order_acquire);
      if (have == 0) {
        std::this_thread::yield();
        continue;
      }
      int idx = uniform(r, 0, have - 1);
      bool kill = uniform(r, 0, 3) == 0;
      if (kill) {
        // kill_running is about running tasks (on a pending one it is a plain cancel).
        for (int k = 0; k < 64 && idx < have && !fs[static_cast<std::size_t>(idx)].running(); ++k) ++idx;
        if (idx >= have) idx = have - 1;
      }
      const auto& f = fs[static_cast<std::size_t>(idx)];
      bool yes = kill ? f.cancel(concur::kill_running) : f.cancel();
      if (yes) {
        cancel_said[static_cast<std::size_t>(idx)].store(kill ? 2 : 1);
        if (kill) kill_true.fetch_add(1);
        if (!f.cancelled()) problem("cancel() returned true for task " + std::to_string(idx) + " but cancelled() is false");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(uniform(r, 50, 1500)));
    }
  });
  for (int i = 0; i < total; ++i) {
    const Spec& s = specs[static_cast<std::size_t>(i)];
    fs[static_cast<std::size_t>(i)] = ex.submit(chaos_work, s.i, s.kind, s.param);
    published.store(i + 1, std::memory_order_release);
    if (uniform(rng, 0, 3) == 0) std::this_thread::sleep_for(std::chrono::microseconds(uniform(rng, 0, 2000)));
  }
  submitting.store(false);
  canceller.join();
  auto until = Clock::now() + kBound;
  Tally tally;
  for (int i = 0; i < total; ++i) {
    const auto& f = fs[static_cast<std::size_t>(i)];
    const Spec& s = specs[static_cast<std::size_t>(i)];
    await_or_abort(f, until, "task " + std::to_string(i));
    std::string detail;
    Got g = classify(f, s, detail);
    ++tally[g];
    int said = cancel_said[static_cast<std::size_t>(i)].load();
    if (said && g != Got::cancelled)
      problem("task " + std::to_string(i) + ": cancel" + (said == 2 ? "(kill_running)" : "()") +
              " returned true, yet it ended with " + name(g) + " " + detail);
    if (f.cancelled() && g != Got::cancelled) problem("task " + std::to_string(i) + " is cancelled and holds an outcome");
    if (g == Got::value && f.cancelled()) problem("task " + std::to_string(i) + " is cancelled and holds a value");
    if (!(g == Got::value || g == Got::own_error || g == Got::cancelled))
      problem("task " + std::to_string(i) + " ended with " + name(g) + " " + detail);
  }
  for (auto& p : problems) ADD_FAILURE() << p;
  EXPECT_FALSE(ex.engine()->broken());
  // Killed workers were replaced, no more than one process per successful kill_running.
  EXPECT_LE(ex.processes_started(), static_cast<std::size_t>(workers) + kill_true.load());
  for (int i = 0; i < 20; ++i) {
    Spec s{total + i, kNoop, 0};
    std::string detail;
    EXPECT_EQ(classify(ex.submit(chaos_work, s.i, s.kind, s.param), s, detail), Got::value) << detail;
  }
  std::printf("[chaos] %s, %zu kill_running cancellations, %zu processes started\n",
              tally.text().c_str(), kill_true.load(), ex.processes_started());
}

// ================================================================ 4. shutdown races
enum class Stop { shutdown_cancel, terminate, kill, destroy, callback_shutdown, callback_kill };

std::string stop_name(Stop s) {
  switch (s) {
    case Stop::shutdown_cancel: return "shutdown_nowait_cancel";
    case Stop::terminate: return "terminate_workers";
    case Stop::kill: return "kill_workers";
    case Stop::destroy: return "destruction";
    case Stop::callback_shutdown: return "shutdown_from_callback";
    default: return "kill_from_callback";
  }
}

void PrintTo(Stop s, std::ostream* os) { *os << stop_name(s); }

// What each way of stopping promises for the futures it leaves (headers' docs):
//  - shutdown(wait=false, cancel_futures=true) and the destructor's shutdown(wait=true):
//    queued work is cancelled (CancelledError) or, without cancel_futures, runs; running
//    work completes normally;
//  - terminate_workers()/kill_workers(): as shutdown(false, true), and running tasks fail
//    with BrokenProcessPool.
// Submits after any of them throw ShutdownError.
bool allowed(Stop how, Got g) {
  switch (g) {
    case Got::value:
    case Got::own_error: return true;
    case Got::cancelled: return how != Stop::destroy;
    case Got::broken: return how == Stop::terminate || how == Stop::kill || how == Stop::callback_kill;
    default: return false;
  }
}

class ShutdownRaces : public testing::TestWithParam<Stop> {};

TEST_P(ShutdownRaces, NoHangAndEveryFutureEndsAsDocumented) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  const Stop how = GetParam();
  auto rng = make_rng(40 + static_cast<std::uint64_t>(how));
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(testing::Message() << stop_name(how) << ", round " << round);
    const int workers = uniform(rng, 1, 3);
    auto policy = uniform(rng, 0, 1) ? OnWorkerDeath::replace_worker : OnWorkerDeath::break_pool;
    auto ex = std::make_unique<ProcessPoolExecutor>(concur::ProcessPoolOptions{
        .max_workers = workers,
        .start_method = round == 2 ? StartMethod::fork : StartMethod::forkserver,
        .on_worker_death = policy});
    const int total = static_cast<int>(scaled(600));
    const int trigger = uniform(rng, 0, total);  // the stop comes after this many submits
    const int delay_us = uniform(rng, 0, 3000);
    std::vector<std::pair<Spec, concur::Future<Out>>> fs;
    fs.reserve(static_cast<std::size_t>(total));
    std::atomic<int> submitted{0};
    std::atomic<bool> stopped{false};
    std::vector<std::string> problems;
    ProcessPoolExecutor* raw = ex.get();
    std::thread actor;
    const bool actor_started = how == Stop::shutdown_cancel || how == Stop::terminate || how == Stop::kill;
    if (how == Stop::shutdown_cancel || how == Stop::terminate || how == Stop::kill) {
      actor = std::thread([&] {
        while (submitted.load() < trigger) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        if (how == Stop::shutdown_cancel) raw->shutdown(false, true);
        else if (how == Stop::terminate) raw->terminate_workers();
        else raw->kill_workers();
        stopped.store(true);
      });
    }
    // The consumer waits on results while the stop happens (also for destruction).
    std::mutex mu;
    std::vector<concur::Future<Out>> to_consume;
    std::atomic<bool> consuming{true};
    std::thread consumer([&] {
      std::size_t next = 0;
      while (consuming.load()) {
        std::optional<concur::Future<Out>> f;
        {
          std::lock_guard l(mu);
          if (next < to_consume.size()) f = to_consume[next++];
        }
        if (!f) {
          std::this_thread::sleep_for(100us);
          continue;
        }
        while (consuming.load() && !f->wait(5ms)) {
        }
      }
    });
    bool rejected = false;
    bool callback_set = false;
    for (int i = 0; i < total; ++i) {
      if (how == Stop::destroy && i == trigger) break;  // destruction happens below
      Spec s = random_spec(rng, i, 0);
      if (s.kind == kBlob) s.param = std::min(s.param, 256 << 10);
      // Paced, so that the stop lands among submits and running work, not after them.
      if (uniform(rng, 0, 3) == 0) std::this_thread::sleep_for(std::chrono::microseconds(uniform(rng, 0, 300)));
      try {
        auto f = ex->submit(chaos_work, s.i, s.kind, s.param);
        if (i == trigger && (how == Stop::callback_shutdown || how == Stop::callback_kill)) {
          f.add_done_callback([raw, how, &stopped](const concur::Future<Out>&) {
            if (how == Stop::callback_shutdown) raw->shutdown(false, true);
            else raw->kill_workers();
            stopped.store(true);
          });
          callback_set = true;
        }
        if (rejected && problems.size() < 10) problems.push_back("a submit was accepted after a rejection");
        fs.emplace_back(s, f);
        std::lock_guard l(mu);
        to_consume.push_back(f);
      } catch (const concur::ShutdownError&) {
        rejected = true;
      } catch (const std::exception& e) {
        if (problems.size() < 10) problems.push_back(std::string("submit threw ") + typeid(e).name() + ": " + e.what());
      }
      submitted.store(i + 1);
    }
    submitted.store(total);
    if (actor.joinable()) actor.join();
    if (how == Stop::destroy) {
      ex.reset();  // shutdown(wait = true): everything is done when it returns
      for (auto& [s, f] : fs)
        if (!f.done() && problems.size() < 10)
          problems.push_back("task " + std::to_string(s.i) + " not done after the pool's destructor");
    } else {
      // The callback's future may not have run before the loop ended: wait for it.
      auto until = Clock::now() + kBound;
      for (auto& [s, f] : fs) await_or_abort(f, until, "task " + std::to_string(s.i));
      // A done-callback runs just after its future is done: give it a moment.
      while (callback_set && !stopped.load() && Clock::now() < until) std::this_thread::sleep_for(1ms);
      EXPECT_EQ(stopped.load(), callback_set || actor_started);
      if (stopped.load()) {
        EXPECT_THROW(ex->submit(chaos_work, 0, kNoop, 0), concur::ShutdownError);
      }
      ex->shutdown();
      for (auto& [s, f] : fs)
        if (!f.done() && problems.size() < 10)
          problems.push_back("task " + std::to_string(s.i) + " not done after shutdown(wait=true)");
      ex.reset();
    }
    consuming.store(false);
    consumer.join();
    Tally tally;
    auto until = Clock::now() + kBound;
    for (auto& [s, f] : fs) {
      await_or_abort(f, until, "task " + std::to_string(s.i));
      std::string detail;
      Got g = classify(f, s, detail);
      ++tally[g];
      if (!allowed(how, g) && problems.size() < 10)
        problems.push_back("task " + std::to_string(s.i) + " ended with " + name(g) + " " + detail);
    }
    for (auto& p : problems) ADD_FAILURE() << p;
    std::printf("[chaos] %s round %d: %d workers, stop after %d submits, %s, %s\n",
                stop_name(how).c_str(), round, workers, trigger, tally.text().c_str(),
                rejected ? "later submits rejected" : "no submit rejected");
  }
}

INSTANTIATE_TEST_SUITE_P(Chaos, ShutdownRaces,
                         testing::Values(Stop::shutdown_cancel, Stop::terminate, Stop::kill,
                                         Stop::destroy, Stop::callback_shutdown, Stop::callback_kill),
                         [](const auto& param_info) { return stop_name(param_info.param); });

// ================================================================ 5. Pool chaos
std::tuple<long, long, int> pool_square(long x) {
  if (x % 4 == 0) ::usleep(static_cast<useconds_t>(x % 500));
  return {x, x * x, static_cast<int>(::getpid())};
}

TEST(Chaos, PoolUnderAKillerLosesAndDuplicatesNothing) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  auto rng = make_rng(5);
  const long items = static_cast<long>(scaled(3000));
  const std::size_t chunk = static_cast<std::size_t>(uniform(rng, 1, 4));
  concur::Pool pool({.processes = 3});
  ReadySet ready;
  std::vector<std::string> problems;
  std::size_t died = 0;
  std::set<long> remaining;
  for (long x = 0; x < items; ++x) remaining.insert(x);
  std::vector<int> yielded(static_cast<std::size_t>(items), 0);
  std::size_t rounds = 0;
  std::size_t died_b = 0, values_b = 0;
  std::size_t kills = 0;
  {
    Killer killer([&] { return pool.worker_pids(); }, &ready, rng(), scaled(40), 2, 10);
    // imap_unordered: the first exception ends an iteration (documented); what it did not
    // yield is fed to the next one, so every item must come out exactly once in the end.
    auto until = Clock::now() + kBound;
    while (!remaining.empty() && Clock::now() < until) {
      ++rounds;
      std::vector<long> in(remaining.begin(), remaining.end());
      try {
        for (auto [x, sq, pid] : pool.imap_unordered(pool_square, in, chunk)) {
          if (x < 0 || x >= items || sq != x * x || pid == ::getpid()) {
            if (problems.size() < 10) problems.push_back("wrong item " + std::to_string(x));
            continue;
          }
          ready.add(pid);
          if (++yielded[static_cast<std::size_t>(x)] > 1 && problems.size() < 10)
            problems.push_back("item " + std::to_string(x) + " yielded twice");
          remaining.erase(x);
        }
      } catch (const concur::WorkerDiedError&) {
        ++died;
      } catch (const std::exception& e) {
        if (problems.size() < 10) problems.push_back(std::string("imap_unordered threw ") + typeid(e).name() + ": " + e.what());
        break;
      }
    }
    // apply_async: each result is its value or WorkerDiedError.
    std::vector<concur::AsyncResult<std::tuple<long, long, int>>> rs;
    for (long x = 0; x < static_cast<long>(scaled(500)); ++x) rs.push_back(pool.apply_async(pool_square, x));
    auto until_b = Clock::now() + kBound;
    for (long x = 0; x < static_cast<long>(rs.size()); ++x) {
      const auto& r = rs[static_cast<std::size_t>(x)];
      await_or_abort(r.future(), until_b, "apply_async " + std::to_string(x));
      try {
        auto [y, sq, pid] = r.get();
        if (y != x || sq != x * x) problems.push_back("apply_async " + std::to_string(x) + ": wrong value");
        ready.add(pid);
        ++values_b;
      } catch (const concur::WorkerDiedError&) {
        ++died_b;
      } catch (const std::exception& e) {
        if (problems.size() < 10) problems.push_back("apply_async " + std::to_string(x) + " threw " + typeid(e).name() + ": " + e.what());
      }
    }
    killer.stop();
    kills = killer.kills();
  }
  for (auto& p : problems) ADD_FAILURE() << p;
  EXPECT_TRUE(remaining.empty()) << remaining.size() << " items never yielded";
  EXPECT_LE(died + died_b, kills);
  EXPECT_EQ(values_b + died_b, scaled(500));
  pool.close();
  pool.join();
  std::printf("[chaos] chunksize %zu: %zu imap rounds, %zu + %zu WorkerDiedError, %zu kills\n", chunk,
              rounds, died, died_b, kills);
}

// ================================================================ 6. soak
std::size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::set<int> counted_fds() {
  std::set<int> out;
  for (int fd : census::open_fds())
    if (!concur::detail::is_library_persistent_fd(fd)) out.insert(fd);
  return out;
}
std::set<pid_t> counted_children() {
  std::set<pid_t> out;
  for (pid_t p : census::child_pids())
    if (!concur::detail::is_library_persistent_pid(p)) out.insert(p);
  return out;
}

// One round: a pool of random shape, a random workload, a random way to stop. Returns
// the problems found.
std::vector<std::string> soak_round(std::mt19937_64& rng) {
  std::vector<std::string> problems;
  const StartMethod methods[] = {StartMethod::forkserver, StartMethod::fork, StartMethod::spawn};
  StartMethod method = methods[uniform(rng, 0, 2)];
  const int workers = uniform(rng, 1, 3);
  const int total = uniform(rng, 50, static_cast<int>(scaled(400)));
  const int style = uniform(rng, 0, 6);
  if (style == 6) {  // concur::Pool, terminated by its destructor
    concur::Pool pool({.processes = workers, .start_method = method});
    std::vector<long> in(static_cast<std::size_t>(total));
    for (int i = 0; i < total; ++i) in[static_cast<std::size_t>(i)] = i;
    long seen = 0;
    for (auto [x, sq, pid] : pool.imap_unordered(pool_square, in, 3)) {
      seen += sq == x * x && pid != ::getpid();
      if (seen == total / 2) break;  // abandon the rest: the destructor terminates
    }
    if (seen != total / 2) problems.push_back("Pool yielded wrong values");
    return problems;
  }
  const auto policy = uniform(rng, 0, 1) ? OnWorkerDeath::replace_worker : OnWorkerDeath::break_pool;
  auto ex = std::make_unique<ProcessPoolExecutor>(concur::ProcessPoolOptions{
      .max_workers = workers, .start_method = method,
      .max_tasks_per_child = static_cast<std::size_t>(uniform(rng, 0, 1) ? 0 : uniform(rng, 5, 50)),
      .on_worker_death = policy});
  std::vector<std::pair<Spec, concur::Future<Out>>> fs;
  for (int i = 0; i < total; ++i) {
    Spec s = random_spec(rng, i, policy == OnWorkerDeath::replace_worker ? 5 : 0);
    if (s.kind == kBlob) s.param = std::min(s.param, 512 << 10);
    try {
      fs.emplace_back(s, ex->submit(chaos_work, s.i, s.kind, s.param));
    } catch (const std::exception& e) {
      problems.push_back(std::string("submit threw ") + e.what());
    }
  }
  switch (style) {
    case 0: ex->shutdown(true); break;
    case 1: ex->shutdown(false); break;
    case 2: ex->shutdown(false, true); break;
    case 3: ex->terminate_workers(); break;
    case 4: ex->kill_workers(); break;
    default: break;  // 5: the destructor
  }
  ex.reset();
  for (auto& [s, f] : fs) {
    if (!f.done()) {
      problems.push_back("task " + std::to_string(s.i) + " not done after the pool was destroyed");
      continue;
    }
    std::string detail;
    Got g = classify(f, s, detail);
    bool ok = g == Got::value || g == Got::own_error || (g == Got::died && crashes(s)) ||
              (g == Got::cancelled && (style == 2 || style == 3 || style == 4)) ||
              (g == Got::broken && (style == 3 || style == 4));
    if (crashes(s) && g != Got::died && !(g == Got::cancelled || g == Got::broken)) ok = false;
    if (!ok && problems.size() < 10)
      problems.push_back("style " + std::to_string(style) + ", task " + std::to_string(s.i) + " ended with " +
                         name(g) + " " + detail);
  }
  return problems;
}

TEST(Chaos, SoakLeavesNoDescriptorNoChildAndNoGrowingMemory) {
  CHAOS_SEED_TRACE();
  Watchdog dog;
  auto rng = make_rng(6);
  const std::size_t rounds = env_u64("CONCUR_SOAK_ROUNDS", kSanitized ? 6 : 10);
  const std::set<int> fds_before = counted_fds();
  std::vector<std::size_t> rss;
  for (std::size_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    for (auto& p : soak_round(rng)) ADD_FAILURE() << p;
    // Killed processes may still be on their way out: a short grace period.
    std::set<int> fds;
    std::set<pid_t> kids;
    for (int attempt = 0; attempt < 100; ++attempt) {
      fds = counted_fds();
      kids = counted_children();
      if (fds == fds_before && kids.empty()) break;
      std::this_thread::sleep_for(20ms);
    }
    for (int fd : fds)
      if (!fds_before.count(fd)) ADD_FAILURE() << "leaked fd " << census::describe_fd(fd);
    for (pid_t p : kids) ADD_FAILURE() << "child process still present: pid " << p;
    rss.push_back(rss_bytes());
    if (HasFailure()) break;
  }
  // Round 2 onwards: allocator and library caches are warm by then. The margin is wide
  // (sanitizers keep freed memory in quarantine): this catches a leak per round, not noise.
  const std::size_t margin = (kSanitized ? 384u : 96u) << 20;
  if (rss.size() >= 3) {
    EXPECT_LE(rss.back(), rss[1] + margin)
        << "RSS grew from " << (rss[1] >> 20) << " MiB (round 2) to " << (rss.back() >> 20) << " MiB";
  }
  std::printf("[chaos] %zu rounds, RSS %zu MiB after round 2, %zu MiB at the end\n", rss.size(),
              rss.size() > 1 ? rss[1] >> 20 : 0, rss.empty() ? 0 : rss.back() >> 20);
}

}  // namespace
