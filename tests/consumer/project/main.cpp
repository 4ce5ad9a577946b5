// A user's program: one include, one target.
#include <concur/concur.hpp>

#include <cstdio>

int answer(int x) { return x * 2; }

int main() {
  concur::ThreadPoolExecutor pool({.max_workers = 2});
  int sum = 0;
  for (int v : pool.map(answer, std::vector{1, 20})) sum += v;
  std::printf("consumer ok: %d\n", sum);
  return sum == 42 ? 0 : 1;
}
