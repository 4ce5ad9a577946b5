// Seed 003 (process pools): the prime factors of many random nine-digit numbers, by plain
// trial division, spread over a Pool with one worker per CPU. The numbers whose only
// factor is themselves are the primes, printed as the seed prints them.
//
//   prime_factors [count=40960] [seed]
//
// Without a seed the numbers differ on every run, as with Python's random module.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <concur/concur.hpp>

namespace {

// The seed's recursive trial division: the first divisor found splits the value in two
// and both halves are factored again; no divisor up to ceil(sqrt(value)) means prime.
std::vector<long> prime_factors(long value) {
  if (value == 2 || value == 3) return {value};
  std::vector<long> factors;
  long limit = static_cast<long>(std::ceil(std::sqrt(static_cast<double>(value))));
  for (long divisor = 2; divisor <= limit; ++divisor) {
    if (value % divisor == 0) {
      for (long f : prime_factors(divisor)) factors.push_back(f);
      for (long f : prime_factors(value / divisor)) factors.push_back(f);
      return factors;
    }
  }
  return {value};
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order with the workers' output, even into a pipe
  long count = argc > 1 ? std::atol(argv[1]) : 40'960;
  std::mt19937_64 gen(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : std::random_device{}());
  if (count < 1) {
    std::fprintf(stderr, "usage: %s [count >= 1] [seed]\n", argv[0]);
    return 2;
  }
  std::uniform_int_distribution<long> randint(100'000'000, 1'000'000'000);  // both ends included
  std::vector<long> to_factor;
  to_factor.reserve(static_cast<std::size_t>(count));
  for (long i = 0; i < count; ++i) to_factor.push_back(randint(gen));

  auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<long>> results;
  unsigned workers = concur::cpu_count();
  {
    concur::Pool pool;  // as many workers as CPUs
    results = pool.map(prime_factors, to_factor);
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<long> primes;
  for (std::size_t i = 0; i < to_factor.size(); ++i)
    if (results[i].size() == 1) primes.push_back(to_factor[i]);

  std::printf("9-digit primes [");
  for (std::size_t i = 0; i < primes.size(); ++i) std::printf("%s%ld", i ? ", " : "", primes[i]);
  std::printf("]\n");
  std::printf("%zu of %zu numbers are prime; factored in %.2f s by %u workers\n", primes.size(),
              to_factor.size(), took, workers);
}
