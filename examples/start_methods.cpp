// Seed 002 (processes, first half): a task timed on a one-worker ProcessPoolExecutor, the
// seed's is_prime exercise under each start method - fork, spawn and forkserver - with the
// time each takes to get a pool going, and multiprocessing.Pool(3).map(abs, ...).
//
//   start_methods [scale=1]
//
// The seed's time.sleep(1) is multiplied by `scale`; workers get it through the pool's
// initializer (Python's initializer/initargs).
//
// Python needs `if __name__ == "__main__":` so that spawn's fresh interpreter does not run
// the program again; concur takes over a spawned copy before main() runs, so main() needs
// no such guard. Python picks a start method through get_context(); here it is an option:
// ProcessPoolExecutor({.start_method = concur::StartMethod::spawn}).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <concur/concur.hpp>

namespace {

double g_scale = 1.0;

void set_scale(double scale) { g_scale = scale; }

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// pow(a, b) written out in decimal, after a (scaled) second of sleep. Python's integers
// have no size limit; here the digits live in base-10^9 limbs, least significant first.
std::string calc_and_sleep(std::uint32_t a, std::uint32_t b) {
  std::this_thread::sleep_for(std::chrono::duration<double>(1.0 * g_scale));
  constexpr std::uint64_t base = 1'000'000'000;
  std::vector<std::uint64_t> limbs{1};
  for (std::uint32_t i = 0; i < b; ++i) {
    std::uint64_t carry = 0;
    for (auto& limb : limbs) {
      std::uint64_t v = limb * a + carry;  // < 10^9 * 2^32 + carry: fits
      limb = v % base;
      carry = v / base;
    }
    for (; carry; carry /= base) limbs.push_back(carry % base);
  }
  std::string out = std::to_string(limbs.back());
  char buf[16];
  for (auto it = limbs.rbegin() + 1; it != limbs.rend(); ++it) {
    std::snprintf(buf, sizeof buf, "%09llu", static_cast<unsigned long long>(*it));
    out += buf;
  }
  return out;
}

bool is_prime(long n) {
  if (n < 2) return false;
  if (n == 2) return true;
  if (n % 2 == 0) return false;
  long sqrt_n = static_cast<long>(std::floor(std::sqrt(static_cast<double>(n))));
  for (long i = 3; i <= sqrt_n; i += 2)
    if (n % i == 0) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order with the workers' output, even into a pipe
  g_scale = argc > 1 ? std::atof(argv[1]) : 1.0;
  if (!(g_scale > 0)) {
    std::fprintf(stderr, "usage: %s [scale > 0]\n", argv[0]);
    return 2;
  }

  std::printf("=== submit() on ProcessPoolExecutor(max_workers=1) ===\n");
  auto start = std::chrono::steady_clock::now();
  {
    concur::ProcessPoolExecutor executor({.max_workers = 1, .initializer = {set_scale, g_scale}});
    auto future = executor.submit(calc_and_sleep, 128u, 256u);
    std::printf("%s\n", future.result().c_str());
  }
  std::printf("Finished in %.2f seconds (sleeping %.2f)\n", since(start), g_scale);

  const std::vector<long> nums{112272535095293, 112582705942171, 102272535065492,
                               115280095190773, 115797848077099, 1099726899285419};
  for (auto method : {concur::StartMethod::fork, concur::StartMethod::spawn, concur::StartMethod::forkserver}) {
    std::printf("\n=== is_prime with start method %s ===\n", concur::to_string(method));
    start = std::chrono::steady_clock::now();
    concur::ProcessPoolExecutor executor({.start_method = method});
    // Workers start as work arrives: the first answer includes starting one.
    executor.submit(is_prime, 2L).result();
    double startup = since(start);
    auto work = std::chrono::steady_clock::now();
    std::size_t i = 0;
    for (bool prime : executor.map(is_prime, nums))
      std::printf("%ld is prime: %s\n", nums[i++], prime ? "True" : "False");
    std::printf("%s: first answer %.1f ms after creating the pool, the %zu checks %.2f s\n", concur::to_string(method),
                startup * 1e3, nums.size(), since(work));
    if (method == concur::StartMethod::forkserver)
      std::printf("(one server per program, already started for the first section: new workers are forked from it)\n");
  }

  std::printf("\n=== Pool(3).map(abs, ...) ===\n");
  concur::Pool p(3);
  auto result = p.map([](int x) { return std::abs(x); }, std::vector<int>{-2, 8, -3, 0});
  std::printf("[");
  for (std::size_t k = 0; k < result.size(); ++k) std::printf("%s%d", k ? ", " : "", result[k]);
  std::printf("]\n");
}
