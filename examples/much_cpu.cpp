// Seed 003: CPU-bound work in one process per core, written as Python writes it - a
// Process subclass with a run() method. Each child prints its OS pid, sums 2i + 1 over a
// large range, and the parent times the whole.
//
//   class MuchCPU(Process):                    class MuchCPU : public concur::ProcessSubclass<MuchCPU> {
//       def run(self): ...                         void run() override { ... }
//
// The child default-constructs its own MuchCPU and calls run(); fields it should receive
// are named in a cereal serialize() (here: how far to count). The idiomatic C++ spelling
// is simply concur::Process(function, arguments...).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <vector>

#include "concur/process.hpp"
#include "concur/system.hpp"

class MuchCPU : public concur::ProcessSubclass<MuchCPU> {
 public:
  MuchCPU() = default;
  explicit MuchCPU(std::uint64_t n) : n_(n) {}

  void run() override {
    std::cout << "OS PID " << ::getpid() << std::endl;
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < n_; ++i) {
      s += 2 * i + 1;
      asm volatile("" : "+r"(s));  // keep the compiler from summing in closed form
    }
    if (s != n_ * n_) std::exit(1);  // the sum of the first n odd numbers is n^2
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(n_);
  }

 private:
  std::uint64_t n_ = 0;
};

int main(int argc, char** argv) {
  std::uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100'000'000;
  std::vector<MuchCPU> workers;
  workers.reserve(concur::cpu_count());
  for (unsigned i = 0; i < concur::cpu_count(); ++i) workers.emplace_back(n);

  auto t = std::chrono::steady_clock::now();
  for (auto& p : workers) p.start();
  int failed = 0;
  for (auto& p : workers) {
    p.join();
    failed += p.exitcode() != 0;
  }
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - t;
  std::cout << "work took " << std::fixed << std::setprecision(3) << took.count() << " seconds"
            << std::endl;
  return failed;
}
