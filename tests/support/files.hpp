// Coordination by files for tests whose tasks run in other processes: a task waits for a
// file to appear and the test creates it (or the other way round), so no test depends on
// timing. Bounds on waits only keep a broken build from hanging the suite.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace files {

inline std::string make_test_dir() {
  char tmpl[] = "/tmp/concur-test-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  return d ? d : "/tmp";
}

// A fresh directory, removed with everything in it at the end of the test.
struct TestDir {
  std::string path = make_test_dir();
  ~TestDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

inline void touch(const std::string& path) { std::ofstream(path) << "x"; }

inline bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Waits (bounded) for a file to exist; true if it does.
inline bool wait_file(const std::string& path,
                      std::chrono::milliseconds bound = std::chrono::seconds(60)) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (!exists(path)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace files
