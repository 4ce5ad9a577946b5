// The seed's sleepers: N tasks each sleep a random time, started in order, finishing in
// the order of their delays, gathered by the main coroutine.
//
//   sleepers [how_many=5] [max_seconds=5]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "concur/async.hpp"

using asio::awaitable;

namespace {

awaitable<void> random_sleep(int counter, double delay) {
  std::printf("%d sleeps for %.2f seconds\n", counter, delay);
  co_await concur::sleep(std::chrono::duration<double>(delay));
  std::printf("%d awakens, refreshed\n", counter);
}

awaitable<void> sleepers(int how_many, double max_seconds) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> delay(0.0, max_seconds);
  std::printf("Creating %d tasks\n", how_many);
  std::vector<concur::Task<void>> tasks;
  for (int i = 0; i < how_many; ++i) tasks.push_back(concur::create_task(random_sleep(i, delay(rng))));
  std::printf("Waiting for %d tasks\n", how_many);
  std::vector<awaitable<void>> waits;
  for (auto& t : tasks) waits.push_back(t.wait());
  co_await concur::gather(std::move(waits));
}

}  // namespace

int main(int argc, char** argv) {
  int how_many = argc > 1 ? std::atoi(argv[1]) : 5;
  double max_seconds = argc > 2 ? std::atof(argv[2]) : 5.0;
  concur::run(sleepers(how_many, max_seconds));
  std::printf("Done with the sleepers\n");
}
