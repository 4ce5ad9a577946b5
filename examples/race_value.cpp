// Seed 002's race condition, between processes on a shared concur::Value<int>: two
// workers read the counter, "work" a little, and write back what they read plus their
// increment. Without a lock one update is lost; with the Value's own lock (Python's
// get_lock()) held around the read-modify-write, both count.
//
// The unsafe run makes the bad interleaving certain with a Barrier between the reads and
// the writes, so the demo shows the lost update every time rather than most times.
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "concur/process.hpp"

using namespace std::chrono_literals;

void increment_unsafe(concur::Value<int> counter, int val, concur::Barrier after_reads) {
  int local_counter = counter.value();
  local_counter += val;
  after_reads.wait();
  std::this_thread::sleep_for(100ms);
  counter.set_value(local_counter);
  std::cout << "counter=" << local_counter << std::endl;
}

void increment_safe(concur::Value<int> counter, int val) {
  auto lock = counter.get_lock();
  std::lock_guard guard(lock);
  int local_counter = counter.value();
  local_counter += val;
  std::this_thread::sleep_for(100ms);
  counter.set_value(local_counter);
  std::cout << "counter=" << local_counter << std::endl;
}

int main() {
  concur::Value<int> unsafe_counter(0);
  concur::Barrier barrier(2);
  {
    concur::Process t1(increment_unsafe, unsafe_counter, 1, barrier);
    concur::Process t2(increment_unsafe, unsafe_counter, 2, barrier);
    t1.start();
    t2.start();
    t1.join();
    t2.join();
  }
  std::cout << "without the lock: counter = " << unsafe_counter.value()
            << " (an update was lost; 3 expected)" << std::endl;

  concur::Value<int> counter(0);
  {
    concur::Process t1(increment_safe, counter, 1);
    concur::Process t2(increment_safe, counter, 2);
    t1.start();
    t2.start();
    t1.join();
    t2.join();
  }
  std::cout << "with the lock: counter = " << counter.value() << std::endl;
  return counter.value() == 3 ? 0 : 1;
}
