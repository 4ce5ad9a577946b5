// Small synchronisation and inspection helpers shared by the foundation's tests
// (test_future, test_wait, test_executor, test_thread_pool).
//
// Tests order threads with events and latches, never with sleeps; a bound on a wait only
// keeps a broken build from hanging the suite, it is never what a test asserts on.
#pragma once

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concur/errors.hpp"
#include "concur/future.hpp"

namespace foundation_test {

using namespace std::chrono_literals;

// How long a test waits for something that must happen before calling it a hang.
inline constexpr std::chrono::seconds kBound{60};

// A one-shot event (Python's threading.Event).
class Event {
 public:
  // Notifies under the lock: a waiter may destroy the Event as soon as it wakes, which it
  // cannot do before this thread has let go of the mutex.
  void set() {
    std::lock_guard lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  bool is_set() const {
    std::lock_guard lock(mu_);
    return set_;
  }
  // True once set; false if `bound` passed first.
  bool wait(std::chrono::milliseconds bound = kBound) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return set_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool set_ = false;
};

// Runs fn on a thread and reports whether it returned within `bound`. Turns a hang (a lost
// wake-up, a deadlock) into a test failure; the hung thread is abandoned, as the test has
// failed anyway.
template <class F>
bool returns_within(F fn, std::chrono::milliseconds bound = kBound) {
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto d = std::make_shared<Done>();
  std::thread t([fn = std::move(fn), d]() mutable {
    fn();
    std::lock_guard lock(d->mu);
    d->done = true;
    d->cv.notify_all();
  });
  std::unique_lock lock(d->mu);
  if (d->cv.wait_for(lock, bound, [&] { return d->done; })) {
    lock.unlock();
    t.join();
    return true;
  }
  t.detach();
  return false;
}

// A counter others can wait on reaching a value.
class Counter {
 public:
  void add(long n = 1) {
    std::lock_guard lock(mu_);  // notify under the lock: see Event::set
    value_ += n;
    cv_.notify_all();
  }
  long get() const {
    std::lock_guard lock(mu_);
    return value_;
  }
  bool wait_for_at_least(long n, std::chrono::milliseconds bound = kBound) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return value_ >= n; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  long value_ = 0;
};

// Releases n threads at (nearly) the same instant, by spinning rather than sleeping: a
// std::barrier wakes sleepers through the kernel tens of microseconds after the last
// arrival, which lets the last thread win every race the test means to provoke.
class SpinStart {
 public:
  explicit SpinStart(int n) : n_(n) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1, std::memory_order_acq_rel);
    while (arrived_.load(std::memory_order_acquire) < n_) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
};

inline pid_t current_tid() {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

// The scheduler state of one of this process's threads ('R', 'S', 'D', ...), or 0 when it
// is gone.
inline char thread_state(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  auto paren = stat.rfind(')');  // the name may itself contain ')'
  if (paren == std::string::npos || paren + 2 >= stat.size()) return 0;
  return stat[paren + 2];
}

// Waits until thread `tid` sleeps in the kernel (blocked on a futex, a join, ...). Used to
// release another thread only once the thread under test is really blocked; if the bound
// passes first the test merely loses some strength, it cannot fail because of it.
inline bool wait_until_blocked(pid_t tid, std::chrono::milliseconds bound = 10s) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    char s = thread_state(tid);
    if (s == 'S' || s == 'D') return true;
    std::this_thread::yield();
  }
  return false;
}

// Names (comm) of this process's threads.
inline std::vector<std::string> thread_names() {
  std::vector<std::string> out;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    if (std::getline(in, name)) out.push_back(name);
  }
  closedir(dir);
  return out;
}

inline std::size_t thread_count_now() {
  return thread_names().size();
}

// Threads whose name starts with `prefix`.
inline std::vector<std::string> threads_named(const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& n : thread_names())
    if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n);
  return out;
}

// Waits (bounded) until no thread of this process is named with `prefix`: a joined thread
// can linger in /proc for a moment after pthread_join returns.
inline bool wait_until_no_threads_named(const std::string& prefix,
                                        std::chrono::milliseconds bound = 10s) {
  auto until = std::chrono::steady_clock::now() + bound;
  for (;;) {
    if (threads_named(prefix).empty()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(1ms);
  }
}

// Counts live instances (and the most ever alive at once) of Tracked objects.
struct LiveCount {
  std::atomic<long> alive{0};
  std::atomic<long> max_alive{0};
  std::atomic<long> created{0};

  void inc() {
    created.fetch_add(1, std::memory_order_relaxed);
    long now = alive.fetch_add(1, std::memory_order_acq_rel) + 1;
    long seen = max_alive.load(std::memory_order_relaxed);
    while (now > seen && !max_alive.compare_exchange_weak(seen, now)) {
    }
  }
  void dec() { alive.fetch_sub(1, std::memory_order_acq_rel); }
};

// A value that reports its lifetime to a LiveCount.
class Tracked {
 public:
  Tracked(LiveCount* c, long v) : c_(c), v_(v) { c_->inc(); }
  Tracked(const Tracked& o) : c_(o.c_), v_(o.v_) { c_->inc(); }
  Tracked(Tracked&& o) noexcept : c_(o.c_), v_(o.v_) { c_->inc(); }
  Tracked& operator=(const Tracked& o) {
    v_ = o.v_;
    return *this;
  }
  ~Tracked() { c_->dec(); }
  long value() const { return v_; }

 private:
  LiveCount* c_;
  long v_;
};

// A user-defined error type that must survive with its type and payload.
struct CustomError : std::exception {
  explicit CustomError(int c) : code(c) {}
  const char* what() const noexcept override { return "CustomError"; }
  int code;
};

// Futures in each of the states of CPython's test_concurrent_futures/util.py, built
// through the public interface.
inline concur::Future<int> pending_future() { return concur::Future<int>(); }
inline concur::Future<int> running_future() {
  concur::Future<int> f;
  if (!f.set_running_or_notify_cancel()) throw std::logic_error("a new future refused to run");
  return f;
}
inline concur::Future<int> cancelled_future() {
  concur::Future<int> f;
  if (!f.cancel()) throw std::logic_error("a new future refused to be cancelled");
  return f;
}
inline concur::Future<int> exception_future() {
  concur::Future<int> f;
  f.set_exception(std::make_exception_ptr(concur::OSError("disk on fire", EIO)));
  return f;
}
inline concur::Future<int> successful_future() {
  concur::Future<int> f;
  f.set_result(42);
  return f;
}

}  // namespace foundation_test
