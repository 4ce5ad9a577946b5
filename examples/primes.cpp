// The seed's prime check: which of these large numbers are prime? Each check runs in a
// pool worker; results come back in input order, as with Python's executor.map.
#include <cmath>
#include <cstdio>
#include <vector>

#include <concur/concur.hpp>

bool is_prime(long n) {
  if (n < 2) return false;
  if (n == 2) return true;
  if (n % 2 == 0) return false;
  long limit = static_cast<long>(std::floor(std::sqrt(static_cast<double>(n))));
  for (long i = 3; i <= limit; i += 2)
    if (n % i == 0) return false;
  return true;
}

int main() {
  const std::vector<long> primes{112272535095293L, 112582705942171L, 112272535095293L,
                                 115280095190773L, 115797848077099L, 1099726899285419L};
  concur::ThreadPoolExecutor executor;
  std::size_t i = 0;
  for (bool prime : executor.map(is_prime, primes))
    std::printf("%ld is prime: %s\n", primes[i++], prime ? "True" : "False");
}
