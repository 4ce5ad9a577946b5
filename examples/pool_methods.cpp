// Seed 001: a tour of multiprocessing.Pool - apply, apply_async and AsyncResult, map
// (sequential against parallel, chunksize), map_async, imap, imap_unordered, starmap,
// starmap_async, worker initializers, a CPU-bound "image processing" run and errors.
//
//   pool_methods [scale=1]
//
// Every time.sleep() of the seed is multiplied by `scale` (0.05 runs the tour in about a
// second); scale also sizes the CPU-bound section. Workers are separate processes, so they
// learn the scale the way Python hands a worker its state: through the pool's initializer
// and its arguments (initializer=..., initargs=...).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <concur/concur.hpp>

using namespace std::chrono_literals;

namespace {

// --- the scale of every sleep, in the parent and (through the initializer) in workers ---

double g_scale = 1.0;

void set_scale(double scale) { g_scale = scale; }

// time.sleep(seconds), scaled.
void sleep_s(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds * g_scale)); }

// A Pool whose workers sleep at the parent's scale.
concur::Pool scaled_pool(int processes) {
  return concur::Pool({.processes = processes, .initializer = {set_scale, g_scale}});
}

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void heading(const char* title) { std::printf("\n=== %s ===\n", title); }

template <class T>
void print_list(const std::vector<T>& xs) {
  std::printf("[");
  for (std::size_t i = 0; i < xs.size(); ++i) std::printf("%s%ld", i ? ", " : "", static_cast<long>(xs[i]));
  std::printf("]\n");
}

// --- the seed's worker functions ---

int square(int x) {
  sleep_s(1);  // stands for a computation
  return x * x;
}

int slow_task(int x) {
  sleep_s(2);
  return x * 2;
}

int process_item(int item) {
  sleep_s(0.5);
  return item * item;
}

int quick_square(int x) { return x * x; }

int compute(int x) {
  sleep_s(1);
  return x * x;
}

// The seed's second compute(), for map_async.
int quick_compute(int x) {
  sleep_s(0.1);
  return x * x;
}

// Python's random.uniform(0.1, 1.0): each worker has its own generator.
int variable_task(int x) {
  thread_local std::mt19937 gen(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  sleep_s(std::uniform_real_distribution<double>(0.1, 1.0)(gen));
  return x * x;
}

int add(int a, int b) { return a + b; }

long power(long base, long exp) {
  long r = 1;
  for (long i = 0; i < exp; ++i) r *= base;
  return r;
}

void initializer() {
  std::printf("Initializing worker %d\n", ::getpid());
  std::fflush(stdout);  // a worker's buffer is not flushed for it when the pool ends
}

// Per-worker state set by the initializer, as the seed's `global worker_data`.
int worker_data = 0;

void init_worker(int data) {
  worker_data = data;
  std::printf("Worker initialized with: %d\n", data);
  std::fflush(stdout);
}

int times_worker_data(int x) { return x * worker_data; }

// Stands for CPU-heavy image work. The seed's loop is a million square roots, which C++
// does in about a millisecond, so the loop length is a parameter (set from scale).
std::string process_image(std::string image_path, long iterations) {
  double result = 0;
  for (long i = 0; i < iterations; ++i) result += std::sqrt(static_cast<double>(i));
  if (result < 0) image_path += " (?)";  // uses the sum, so the loop cannot be dropped
  return "Processed: " + image_path;
}

// Python's ValueError is std::invalid_argument here; it reaches the parent with its type.
int risky_function(int x) {
  if (x == 5) throw std::invalid_argument("Error processing " + std::to_string(x));
  return x * x;
}

// --- the sections ---

void apply_section() {
  heading("apply()");
  auto pool = scaled_pool(4);
  int result = pool.apply(square, 5);  // blocks until the worker answers
  std::printf("Result: %d\n", result);
}

void apply_async_section() {
  heading("apply_async()");
  auto pool = scaled_pool(4);
  std::vector<concur::AsyncResult<int>> results;
  for (int i = 0; i < 8; ++i) results.push_back(pool.apply_async(compute, i));
  for (auto& r : results) std::printf("%d\n", r.get(10s));
}

void async_result_section() {
  heading("AsyncResult: ready(), wait(), successful(), get()");
  auto pool = scaled_pool(2);
  auto async_result = pool.apply_async(slow_task, 10);
  std::printf("Ready: %s\n", async_result.ready() ? "True" : "False");
  async_result.wait(5s);
  std::printf("Ready after wait(): %s, successful: %s\n", async_result.ready() ? "True" : "False",
              async_result.successful() ? "True" : "False");
  std::printf("Result: %d\n", async_result.get(10s));
}

void map_section() {
  heading("map(): sequential against parallel");
  std::vector<int> items;
  for (int i = 0; i < 16; ++i) items.push_back(i);

  auto start = std::chrono::steady_clock::now();
  std::vector<int> sequential_results;
  for (int x : items) sequential_results.push_back(process_item(x));
  std::printf("Sequential: %.2f s\n", since(start));

  start = std::chrono::steady_clock::now();
  std::vector<int> parallel_results;
  {
    auto pool = scaled_pool(4);
    parallel_results = pool.map(process_item, items);
  }
  std::printf("Parallel: %.2f s\n", since(start));

  if (sequential_results != parallel_results) {
    std::printf("results differ!\n");
    std::exit(1);
  }
  std::printf("Results: ");
  print_list(parallel_results);
}

void chunksize_section() {
  heading("map() with chunksize");
  std::vector<int> items;
  for (int i = 0; i < 1000; ++i) items.push_back(i);
  auto pool = scaled_pool(4);
  // Small chunks: one message per item; large chunks: few messages; 0 is Python's default,
  // len / (4 * processes) rounded up.
  std::vector<int> first;
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{100}, std::size_t{0}}) {
    auto start = std::chrono::steady_clock::now();
    auto result = pool.map(quick_square, items, chunksize);
    double took = since(start);
    if (first.empty()) first = result;
    long sum = 0;
    for (int v : result) sum += v;
    std::printf("chunksize=%-8s %zu results, sum %ld, same as chunksize=1: %s (%.1f ms)\n",
                chunksize ? std::to_string(chunksize).c_str() : "default", result.size(), sum,
                result == first ? "True" : "False", took * 1e3);
  }
}

void map_async_section() {
  heading("map_async()");
  std::vector<int> items;
  for (int i = 0; i < 20; ++i) items.push_back(i);
  auto pool = scaled_pool(4);
  auto async_result = pool.map_async(quick_compute, items);
  std::printf("Computation started...\n");  // free to do other work meanwhile
  const auto& results = async_result.get(30s);
  std::printf("Results: ");
  print_list(results);
}

void imap_section() {
  heading("imap(): lazily, in input order");
  std::vector<int> items;
  for (int i = 0; i < 10; ++i) items.push_back(i);
  auto pool = scaled_pool(4);
  for (int result : pool.imap(process_item, items)) std::printf("Got result: %d\n", result);
}

void imap_unordered_section() {
  heading("imap_unordered(): as they finish");
  std::vector<int> items;
  for (int i = 0; i < 10; ++i) items.push_back(i);
  auto pool = scaled_pool(4);
  for (int result : pool.imap_unordered(variable_task, items)) std::printf("Got result: %d\n", result);
}

void starmap_section() {
  heading("starmap() and starmap_async()");
  auto pool = scaled_pool(4);
  std::vector<std::tuple<int, int>> args{{1, 2}, {3, 4}, {5, 6}, {7, 8}};
  print_list(pool.starmap(add, args));  // each tuple unpacked into add's parameters

  std::vector<std::tuple<long, long>> powers{{2, 3}, {3, 3}, {4, 2}, {5, 2}};
  auto async_result = pool.starmap_async(power, powers);
  print_list(async_result.get());
}

void initializer_section() {
  heading("initializer");
  {
    concur::Pool pool({.processes = 4, .initializer = initializer});
    std::vector<int> xs;
    for (int i = 0; i < 10; ++i) xs.push_back(i);
    print_list(pool.map(quick_square, xs));
  }
  heading("initializer with arguments");
  concur::Pool pool({.processes = 4, .initializer = {init_worker, 10}});
  print_list(pool.map(times_worker_data, std::vector<int>{0, 1, 2, 3, 4}));
}

void image_section() {
  heading("CPU-bound work: image processing");
  long iterations = std::max(1L, static_cast<long>(50'000'000 * g_scale));
  std::vector<std::string> images;
  for (int i = 0; i < 20; ++i) images.push_back("image_" + std::to_string(i) + ".jpg");

  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> sequential;
  for (auto& img : images) sequential.push_back(process_image(img, iterations));
  std::printf("Sequential: %.2f s\n", since(start));

  start = std::chrono::steady_clock::now();
  std::vector<std::string> parallel;
  {
    concur::Pool pool;  // one worker per CPU
    parallel = pool.starmap(process_image, [&] {
      std::vector<std::tuple<std::string, long>> args;
      for (auto& img : images) args.emplace_back(img, iterations);
      return args;
    }());
  }
  std::printf("Parallel: %.2f s (%u CPUs)\n", since(start), concur::cpu_count());
  std::printf("%zu images: %s ... %s\n", parallel.size(), parallel.front().c_str(), parallel.back().c_str());
}

void errors_section() {
  heading("error handling");
  auto pool = scaled_pool(4);
  std::vector<int> xs;
  for (int i = 0; i < 10; ++i) xs.push_back(i);
  try {
    auto results = pool.map(risky_function, xs);
    std::printf("no error?\n");
  } catch (const std::invalid_argument& e) {
    std::printf("Caught error: %s\n", e.what());
  }

  // apply_async gives every item its own outcome.
  std::vector<concur::AsyncResult<int>> results;
  for (int i = 0; i < 10; ++i) results.push_back(pool.apply_async(risky_function, i));
  for (std::size_t i = 0; i < results.size(); ++i) {
    try {
      int value = results[i].get();
      std::printf("%zu: %d\n", i, value);
    } catch (const std::invalid_argument& e) {
      std::printf("%zu: Error - %s\n", i, e.what());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order with the workers' output, even into a pipe
  g_scale = argc > 1 ? std::atof(argv[1]) : 1.0;
  if (!(g_scale > 0)) {
    std::fprintf(stderr, "usage: %s [scale > 0]\n", argv[0]);
    return 2;
  }
  apply_section();
  apply_async_section();
  async_result_section();
  map_section();
  chunksize_section();
  map_async_section();
  imap_section();
  imap_unordered_section();
  starmap_section();
  initializer_section();
  image_section();
  errors_section();
}
