// The seed's dining philosophers: five philosophers share five forks (AsyncLock); a
// footman (AsyncBoundedSemaphore of faculty - 1 seats) keeps one of them away from the
// table, so somebody can always get both forks and nobody deadlocks.
//
//   dining_philosophers [servings=5] [faculty=5] [max_eat_and_think_seconds=1] [threads=1]
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <tuple>
#include <vector>

#include "concur/async.hpp"
#include "concur/async_sync.hpp"

using asio::awaitable;

namespace {

struct Table {
  std::vector<std::unique_ptr<concur::AsyncLock>> forks;
  concur::AsyncBoundedSemaphore footman;
  double max_seconds;
  std::mutex rng_mutex;
  std::mt19937 rng{std::random_device{}()};
  std::atomic<long> meals{0};

  Table(std::size_t faculty, double max_s) : footman(faculty - 1), max_seconds(max_s) {
    for (std::size_t i = 0; i < faculty; ++i) forks.push_back(std::make_unique<concur::AsyncLock>());
  }
  double random_time() {
    std::lock_guard lock(rng_mutex);
    return max_seconds * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  }
};

awaitable<std::tuple<std::size_t, double, double>> philosopher(std::size_t id, Table& table) {
  double eat_time = 0, think_time = 0;
  {
    auto seat = co_await table.footman.scoped();  // async with footman:
    {
      auto left = co_await table.forks[id]->scoped();  // async with FORKS[id], FORKS[id + 1]:
      auto right = co_await table.forks[(id + 1) % table.forks.size()]->scoped();
      eat_time = table.random_time();
      if (table.max_seconds > 0) std::printf("%zu eating\n", id);
      co_await concur::sleep(std::chrono::duration<double>(eat_time));
      ++table.meals;
    }
    think_time = table.random_time();
    if (table.max_seconds > 0) std::printf("%zu philosophizing\n", id);
    co_await concur::sleep(std::chrono::duration<double>(think_time));
  }
  co_return std::tuple{id, eat_time, think_time};
}

awaitable<void> dinner(int servings, std::size_t faculty, double max_seconds) {
  Table table(faculty, max_seconds);
  for (int serving = 0; serving < servings; ++serving) {
    std::vector<awaitable<std::tuple<std::size_t, double, double>>> department;
    for (std::size_t p = 0; p < faculty; ++p) department.push_back(philosopher(p, table));
    auto results = co_await concur::gather(std::move(department));
    if (max_seconds > 0) {
      std::printf("[");
      for (auto& [id, eat, think] : results) std::printf("(%zu, %.3f, %.3f) ", id, eat, think);
      std::printf("]\n");
    }
  }
  std::printf("served %ld meals in %d servings\n", table.meals.load(), servings);
}

}  // namespace

int main(int argc, char** argv) {
  int servings = argc > 1 ? std::atoi(argv[1]) : 5;
  std::size_t faculty = argc > 2 ? static_cast<std::size_t>(std::atoi(argv[2])) : 5;
  double max_seconds = argc > 3 ? std::atof(argv[3]) : 1.0;
  unsigned threads = argc > 4 ? static_cast<unsigned>(std::atoi(argv[4])) : 1;
  if (faculty < 2) {
    std::fprintf(stderr, "need at least 2 philosophers\n");
    return 2;
  }
  concur::run(dinner(servings, faculty, max_seconds), {.threads = threads});
}
