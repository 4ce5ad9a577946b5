// A user's program: one include, one target. It also runs work in worker processes under
// each start method, which proves the installed library's pre-main hook takes over the
// re-executed copies of a program it did not build itself.
#include <concur/concur.hpp>

#include <cstdio>
#include <vector>

int answer(int x) { return x * 2; }

int main() {
  concur::ThreadPoolExecutor pool({.max_workers = 2});
  int sum = 0;
  for (int v : pool.map(answer, std::vector{1, 20})) sum += v;

  int in_processes = 0;
  for (auto method : {concur::StartMethod::forkserver, concur::StartMethod::spawn,
                      concur::StartMethod::fork}) {
    concur::ProcessPoolExecutor ex({.max_workers = 1, .start_method = method});
    in_processes += ex.submit(answer, 21).result();
  }
  concur::Pool processes(2);
  for (int v : processes.map(answer, std::vector{1, 20})) in_processes += v;

  std::printf("consumer ok: %d %d\n", sum, in_processes);
  return sum == 42 && in_processes == 3 * 42 + 42 ? 0 : 1;
}
