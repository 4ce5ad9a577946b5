// Seed 002's two deadlock exercises, fixed, with process-shared locks; and how a timed
// acquire detects the deadlock instead of hanging.
//
// 1. g() holds the lock and calls f(), which takes the same lock again. Fixed: g()
//    releases it before calling f(). (concur::Lock is not re-entrant, as Python's Lock; a
//    blocking re-acquire by the holder even throws LockOwnershipError rather than hang,
//    and a timed one gives up - which is what the detection below relies on.)
// 2. Two workers take two locks in opposite orders: each holds one and waits forever for
//    the other. Fixed: every worker takes them in the same order. The detection: a worker
//    takes its second lock with a timeout, and when that runs out it backs off (releases
//    what it holds) and reports the deadlock.
#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "concur/process.hpp"

using namespace std::chrono_literals;

// ---- exercise 1
void f(concur::Lock lock) {
  std::lock_guard guard(lock);
  std::cout << "f() acquired lock" << std::endl;
}

void g_fixed(concur::Lock lock) {
  {
    std::lock_guard guard(lock);
    std::cout << "g() acquired lock" << std::endl;
  }
  f(lock);  // after the release
}

void f_with_timeout(concur::Lock lock) {
  if (!lock.acquire(200ms)) {
    std::cout << "f() could not acquire the lock within 200 ms: deadlock detected "
                 "(its holder is waiting for f() to return)"
              << std::endl;
    return;
  }
  std::cout << "f() acquired lock" << std::endl;
  lock.release();
}

void g_original(concur::Lock lock) {
  std::lock_guard guard(lock);
  std::cout << "g() acquired lock" << std::endl;
  f_with_timeout(lock);  // the bug: still holding the lock
}

// ---- exercise 2
void worker(int n, concur::Lock first, concur::Lock second, concur::Barrier both_hold_one,
            bool detect) {
  std::cout << "Worker " << n << " acquiring lock 1..." << std::endl;
  std::unique_lock a(first);
  if (detect) both_hold_one.wait();  // make the bad interleaving certain for the demo
  std::this_thread::sleep_for(50ms);
  std::cout << "Worker " << n << " acquiring lock 2..." << std::endl;
  if (!detect) {
    std::lock_guard b(second);
    std::cout << "Worker " << n << " acquired 2 locks!" << std::endl;
    return;
  }
  std::unique_lock b(second, std::defer_lock);
  if (!b.try_lock_for(300ms)) {
    std::cout << "Worker " << n
              << " could not get lock 2 within 300 ms: deadlock detected, backing off" << std::endl;
    return;  // releases lock 1
  }
  std::cout << "Worker " << n << " acquired 2 locks!" << std::endl;
}

void run_all(std::vector<concur::Process>& ps) {
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
}

int main() {
  concur::Lock lock;
  std::cout << "-- 1. g() calls f() after releasing the lock (fixed)" << std::endl;
  {
    concur::Process p(g_fixed, lock);
    p.start();
    p.join();
  }
  std::cout << "-- 1. the original order, detected by a timed acquire" << std::endl;
  {
    concur::Process p(g_original, lock);
    p.start();
    p.join();
  }

  concur::Lock lock_a, lock_b;
  concur::Barrier barrier(2);
  std::cout << "-- 2. both workers take lock A, then lock B (fixed)" << std::endl;
  {
    std::vector<concur::Process> ps;
    ps.emplace_back(worker, 1, lock_a, lock_b, barrier, false);
    ps.emplace_back(worker, 2, lock_a, lock_b, barrier, false);
    run_all(ps);
  }
  std::cout << "-- 2. the original opposite orders, detected by timed acquires" << std::endl;
  {
    std::vector<concur::Process> ps;
    ps.emplace_back(worker, 1, lock_a, lock_b, barrier, true);
    ps.emplace_back(worker, 2, lock_b, lock_a, barrier, true);
    run_all(ps);
  }
}
