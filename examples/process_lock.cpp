// Seed 002: five processes print under one process-shared Lock after a random sleep, so
// the lines come out whole and in a random order. (The seed sleeps 0-6 s; 0-600 ms here,
// which shows the same thing sooner.)
//
// Python's example starts the processes and lets the interpreter wait for them at exit;
// a concur::Process ends its child when it goes out of scope, so they are kept in a
// vector and joined.
#include <chrono>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "concur/process.hpp"

void f(concur::Lock lock, int i) {
  std::mt19937 rng(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution(0, 600)(rng)));

  std::lock_guard guard(lock);  // Python's `with lock:`; acquire()/release() work too
  std::cout << "Process # " << i << std::endl;
}

int main() {
  concur::Lock lock;
  std::vector<concur::Process> processes;
  for (int i = 1; i < 6; ++i) processes.emplace_back(f, lock, i);
  for (auto& p : processes) p.start();
  for (auto& p : processes) p.join();
}
