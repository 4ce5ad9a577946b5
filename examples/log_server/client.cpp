// The seed's log-producing client in C++: sorts random data with a deliberately bad
// algorithm (bogosort, or gnome sort) and logs its progress to the log catcher using
// SocketHandler's wire format, and to stderr like logging.StreamHandler.
//
//   log_client [--host H] [--port P] [--workload N] [--sorter bogo|gnome] [--quiet]
//
// Load-generator mode, used by the benchmarks: C connections in parallel, each sending R
// records as fast as it can (one send() per record, as SocketHandler does):
//
//   log_client --clients C --records R [--host H] [--port P]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wire.hpp"

namespace {

const double kStart = logwire::now_seconds();

// A minimal SocketHandler: one TCP connection, one frame per record.
class SocketLogger {
 public:
  SocketLogger(const std::string& host, unsigned short port, std::string name, bool echo)
      : name_(std::move(name)), echo_(echo) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1)
      throw std::runtime_error("bad host " + host);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    // Like SocketHandler: no TCP_NODELAY, so Nagle may coalesce small records.
  }
  ~SocketLogger() {
    if (fd_ >= 0) ::close(fd_);
  }
  SocketLogger(const SocketLogger&) = delete;
  SocketLogger& operator=(const SocketLogger&) = delete;

  void info(const std::string& msg, const char* func, int line) { log(20, "INFO", msg, func, line); }

  void log(int levelno, const char* levelname, const std::string& msg, const char* func, int line) {
    double created = logwire::now_seconds();
    double ms_part = std::fmod(created, 1.0) * 1000.0;
    frame_.clear();
    logwire::frame_record(frame_, {{"name", name_},
                                   {"msg", msg},
                                   {"args", nullptr},
                                   {"levelname", std::string(levelname)},
                                   {"levelno", std::int64_t{levelno}},
                                   {"pathname", std::string(__FILE__)},
                                   {"filename", std::string("client.cpp")},
                                   {"module", std::string("client")},
                                   {"exc_info", nullptr},
                                   {"exc_text", nullptr},
                                   {"stack_info", nullptr},
                                   {"lineno", std::int64_t{line}},
                                   {"funcName", std::string(func)},
                                   {"created", created},
                                   {"msecs", ms_part},
                                   {"relativeCreated", (created - kStart) * 1000.0},
                                   {"thread", static_cast<std::int64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()) >> 1)},
                                   {"threadName", std::string("MainThread")},
                                   {"processName", std::string("MainProcess")},
                                   {"process", std::int64_t{::getpid()}}});
    const char* p = frame_.data();
    std::size_t left = frame_.size();
    while (left > 0) {
      ssize_t n = ::send(fd_, p, left, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("send: ") + std::strerror(errno));
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    if (echo_) std::cerr << msg << "\n";
  }

 private:
  int fd_ = -1;
  std::string name_;
  bool echo_;
  std::string frame_;
};

__attribute__((format(printf, 1, 2))) std::string format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

bool is_ordered(const std::vector<double>& v) { return std::is_sorted(v.begin(), v.end()); }

// Tries permutations in lexicographic order until one is sorted (the seed's BogoSort).
std::vector<double> bogo_sort(SocketLogger& log, std::vector<double> data) {
  log.info(format("Sorting %zu", data.size()), "sort", __LINE__);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::size_t> idx(data.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<double> ordering = data;
  long steps = 0;
  while (!is_ordered(ordering)) {
    std::next_permutation(idx.begin(), idx.end());
    for (std::size_t i = 0; i < idx.size(); ++i) ordering[i] = data[idx[i]];
    ++steps;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  log.info(format("Sorted %zu items in %ld steps, %.3f ms", data.size(), steps, ms), "sort", __LINE__);
  return ordering;
}

std::vector<double> gnome_sort(SocketLogger& log, std::vector<double> data) {
  log.info(format("Sorting %zu", data.size()), "sort", __LINE__);
  auto start = std::chrono::steady_clock::now();
  std::size_t pos = 0;
  long steps = 0;
  while (pos < data.size()) {
    if (pos == 0 || data[pos] >= data[pos - 1]) {
      ++pos;
    } else {
      std::swap(data[pos], data[pos - 1]);
      --pos;
    }
    ++steps;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  log.info(format("Sorted %zu items in %ld steps, %.3f ms", data.size(), steps, ms), "sort", __LINE__);
  return data;
}

int load_generator(const std::string& host, unsigned short port, int clients, int records) {
  std::atomic<long> sent{0};
  std::atomic<int> failed{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      try {
        SocketLogger log(host, port, "bench.client" + std::to_string(c), false);
        for (int r = 0; r < records; ++r) {
          log.log(r % 5 == 0 ? 30 : 20, r % 5 == 0 ? "WARNING" : "INFO",
                  format("client %d record %d: sorted %d items in %d steps", c, r, r % 10, r * 7), "load", __LINE__);
          ++sent;
        }
      } catch (const std::exception& e) {
        std::cerr << "client " << c << ": " << e.what() << "\n";
        ++failed;
      }
    });
  for (auto& t : threads) t.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("sent %ld records from %d clients in %.3f s (%.0f records/s)\n", sent.load(), clients, s,
              static_cast<double>(sent.load()) / s);
  return failed.load() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = logwire::kDefaultPort;
  int workload = 10, clients = 0, records = 0;
  bool gnome = true, quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value for " + a);
      return argv[++i];
    };
    if (a == "--host") host = next();
    else if (a == "--port") port = static_cast<unsigned short>(std::stoul(next()));
    else if (a == "--workload") workload = std::stoi(next());
    else if (a == "--sorter") gnome = next() != "bogo";
    else if (a == "--clients") clients = std::stoi(next());
    else if (a == "--records") records = std::stoi(next());
    else if (a == "--quiet") quiet = true;
    else {
      std::cerr << "usage: log_client [--host H] [--port P] [--workload N] [--sorter bogo|gnome] [--quiet]\n"
                   "       log_client --clients C --records R [--host H] [--port P]\n";
      return 2;
    }
  }
  try {
    if (clients > 0) return load_generator(host, port, clients, records);
    SocketLogger log(host, port, "app_" + std::to_string(::getpid()), !quiet);
    std::mt19937 rng(std::random_device{}());
    std::uniform_real_distribution<double> uni;
    auto start = std::chrono::steady_clock::now();
    log.info(format("sorting %d collections", workload), "main", __LINE__);
    for (int i = 0; i < workload; ++i) {
      std::vector<double> data(3 + rng() % 8);
      for (auto& x : data) x = uni(rng);
      if (gnome) gnome_sort(log, data);
      else bogo_sort(log, data);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log.info(format("produced %d entries, taking %f s", workload * 2 + 2, s), "main", __LINE__);
  } catch (const std::exception& e) {
    std::cerr << "log_client: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
