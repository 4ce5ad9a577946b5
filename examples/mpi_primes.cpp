// The seed's prime check and factoring, on an MPI pool: the same program as primes.cpp
// and prime_factors.cpp, with workers started by MPI_Comm_spawn (on this host here; on a
// cluster, give MPI the hosts with `.spawn_info = {{"hostfile", "hosts.txt"}}`).
// Run it directly or as `mpirun -n 1 mpi_primes`; the worker copies never reach main().
#include <cmath>
#include <cstdio>
#include <vector>

#include <concur/concur.hpp>
#include <concur/mpi_pool.hpp>

bool is_prime(long n) {
  if (n < 2) return false;
  if (n == 2) return true;
  if (n % 2 == 0) return false;
  long limit = static_cast<long>(std::floor(std::sqrt(static_cast<double>(n))));
  for (long i = 3; i <= limit; i += 2)
    if (n % i == 0) return false;
  return true;
}

std::vector<long> prime_factors(long n) {
  std::vector<long> out;
  for (long d = 2; d * d <= n; ++d)
    while (n % d == 0) {
      out.push_back(d);
      n /= d;
    }
  if (n > 1) out.push_back(n);
  return out;
}

int main() {
  const std::vector<long> numbers{112272535095293L, 112582705942171L, 112272535095293L,
                                  115280095190773L, 115797848077099L, 1099726899285419L};
  concur::MPIPoolExecutor executor(2);
  for (const auto& w : executor.workers())
    std::printf("MPI worker rank %d: pid %d on %s\n", w.rank, static_cast<int>(w.pid),
                w.host.c_str());
  std::size_t i = 0;
  for (bool prime : executor.map(is_prime, numbers))
    std::printf("%ld is prime: %s\n", numbers[i++], prime ? "True" : "False");

  std::vector<concur::Future<std::vector<long>>> factored;
  for (long n : numbers) factored.push_back(executor.submit(prime_factors, n));
  for (std::size_t k = 0; k < numbers.size(); ++k) {
    std::printf("%ld =", numbers[k]);
    const char* sep = " ";
    for (long f : factored[k].result()) {
      std::printf("%s%ld", sep, f);
      sep = " * ";
    }
    std::printf("\n");
  }
}
