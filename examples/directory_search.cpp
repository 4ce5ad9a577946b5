// Seed 003's directory search: one worker process per CPU loads its share of the source
// files once, then answers queries until it receives the sentinel. Each worker has its own
// query queue; all of them answer on one shared result queue.
//
//   usage: directory_search [directory] [pattern] [query...]
//   defaults: the Python standard library (/usr/lib/python3.N), "*.py", import class def
//
// As in the seed, the first query also pays for the workers reading their files; the
// following ones show the cost of the queues and the search alone.
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "concur/process.hpp"
#include "concur/system.hpp"

namespace fs = std::filesystem;

using QueryQueue = concur::Queue<std::optional<std::string>>;
using ResultQueue = concur::Queue<std::vector<std::string>>;

// The worker: load once, then answer each query with the matching lines.
void search(std::vector<std::string> paths, QueryQueue query_q, ResultQueue results_q) {
  std::cout << "PID: " << ::getpid() << ", paths " << paths.size() << std::endl;
  std::vector<std::string> lines;
  for (const auto& path : paths) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      lines.push_back(std::move(line));
    }
  }
  for (;;) {
    std::optional<std::string> query_text = query_q.get();
    if (!query_text) break;
    std::vector<std::string> results;
    for (const auto& l : lines)
      if (l.find(*query_text) != std::string::npos) results.push_back(l);
    results_q.put(results);
  }
}

// The facade: the queues and the worker processes as one object.
class DirectorySearch {
 public:
  void setup_search(const std::vector<std::string>& paths, unsigned cpus = concur::cpu_count()) {
    std::vector<std::vector<std::string>> worker_paths(cpus);
    for (std::size_t i = 0; i < paths.size(); ++i) worker_paths[i % cpus].push_back(paths[i]);
    for (unsigned i = 0; i < cpus; ++i) query_queues_.emplace_back();
    for (unsigned i = 0; i < cpus; ++i)
      search_workers_.emplace_back(::search, worker_paths[i], query_queues_[i], results_queue_);
    for (auto& proc : search_workers_) proc.start();
  }

  void teardown_search() {
    for (auto& q : query_queues_) q.put(std::nullopt);  // the sentinel
    for (auto& proc : search_workers_) proc.join();
  }

  std::vector<std::string> search(const std::string& target) {
    for (auto& q : query_queues_) q.put(target);
    std::vector<std::string> matches;
    for (std::size_t i = 0; i < query_queues_.size(); ++i) {
      auto part = results_queue_.get();
      matches.insert(matches.end(), std::make_move_iterator(part.begin()),
                     std::make_move_iterator(part.end()));
    }
    return matches;
  }

 private:
  std::vector<QueryQueue> query_queues_;
  ResultQueue results_queue_;
  std::vector<concur::Process> search_workers_;
};

std::vector<std::string> all_source(const fs::path& base, const std::string& pattern) {
  static const std::set<std::string> skip = {".tox", ".mypy_cache", "__pycache__", ".idea"};
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(base, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_directory(ec) && skip.count(it->path().filename().string())) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && ::fnmatch(pattern.c_str(), it->path().filename().c_str(), 0) == 0)
      out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The standard library of the newest Python 3 installed.
fs::path default_base() {
  fs::path best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("python3.", 0) == 0 && e.is_directory(ec) &&
        (best.empty() || std::stoi(name.substr(8)) > std::stoi(best.filename().string().substr(8))))
      best = e.path();
  }
  return best.empty() ? fs::path(".") : best;
}

int main(int argc, char** argv) {
  fs::path base = argc > 1 ? fs::path(argv[1]) : default_base();
  std::string pattern = argc > 2 ? argv[2] : "*.py";
  std::vector<std::string> targets;
  for (int i = 3; i < argc; ++i) targets.push_back(argv[i]);
  if (targets.empty()) targets = {"import", "class", "def"};

  std::vector<std::string> all_paths = all_source(base, pattern);
  std::cout << "searching " << all_paths.size() << " files under " << base.string() << std::endl;
  DirectorySearch ds;
  ds.setup_search(all_paths);
  for (const auto& target : targets) {
    auto start = std::chrono::steady_clock::now();
    std::size_t count = ds.search(target).size();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::cout << "Found " << count << " '" << target << "' in " << all_paths.size() << " files in "
              << std::fixed << std::setprecision(3) << ms << "ms" << std::endl;
  }
  ds.teardown_search();
}
