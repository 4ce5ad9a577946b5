#include "support/census.hpp"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace census {
namespace {

std::vector<std::function<bool(int)>>& fd_filters() {
  static std::vector<std::function<bool(int)>> filters;
  return filters;
}
std::vector<std::function<bool(pid_t)>>& child_filters() {
  static std::vector<std::function<bool(pid_t)>> filters;
  return filters;
}

bool ignored_fd(int fd) {
  for (auto& f : fd_filters())
    if (f(fd)) return true;
  return false;
}
bool ignored_child(pid_t pid) {
  for (auto& f : child_filters())
    if (f(pid)) return true;
  return false;
}

std::set<int> counted_fds() {
  std::set<int> out;
  for (int fd : open_fds())
    if (!ignored_fd(fd)) out.insert(fd);
  return out;
}
std::set<pid_t> counted_children() {
  std::set<pid_t> out;
  for (pid_t p : child_pids())
    if (!ignored_child(p)) out.insert(p);
  return out;
}

class Listener : public testing::EmptyTestEventListener {
  std::set<int> fds_at_start_;

  void OnTestStart(const testing::TestInfo&) override { fds_at_start_ = counted_fds(); }

  void OnTestEnd(const testing::TestInfo& info) override {
    if (std::getenv("CONCUR_NO_CENSUS")) return;
    // A child that was killed a moment ago may still be on its way out of the kernel;
    // give teardown a short grace period before calling it a leak.
    std::set<int> fds;
    std::set<pid_t> kids;
    for (int attempt = 0; attempt < 50; ++attempt) {
      fds = counted_fds();
      kids = counted_children();
      if (fds == fds_at_start_ && kids.empty()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ostringstream msg;
    for (int fd : fds)
      if (!fds_at_start_.count(fd)) msg << "  leaked fd " << describe_fd(fd) << "\n";
    for (int fd : fds_at_start_)
      if (!fds.count(fd)) msg << "  fd closed that the test did not open: " << fd << "\n";
    for (pid_t p : kids) msg << "  child process still present: " << describe_process(p) << "\n";
    ADD_FAILURE() << "resource census failed after " << info.test_suite_name() << "."
                  << info.name() << ":\n"
                  << msg.str();
  }
};

}  // namespace

std::set<int> open_fds() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return out;
  int own = dirfd(dir);
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != own) out.insert(fd);
  }
  closedir(dir);
  return out;
}

namespace {
// Children of /proc/<proc_name> ("self" or a pid), from each thread's children list.
std::set<pid_t> child_pids_of(const std::string& proc_name) {
  std::set<pid_t> out;
  const std::string tasks = "/proc/" + proc_name + "/task";
  DIR* dir = opendir(tasks.c_str());
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(tasks + "/" + e->d_name + "/children");
    pid_t pid;
    while (in >> pid) out.insert(pid);
  }
  closedir(dir);
  return out;
}
}  // namespace

std::set<pid_t> child_pids() { return child_pids_of("self"); }

std::set<pid_t> child_pids(pid_t parent) { return child_pids_of(std::to_string(parent)); }

std::string link_target(const std::string& path) {
  char target[512] = {};
  ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
}

std::string describe_fd(int fd) {
  std::string target = link_target("/proc/self/fd/" + std::to_string(fd));
  return std::to_string(fd) + " -> " + (target.empty() ? "?" : target);
}

std::string describe_process(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : cmd)
    if (c == '\0') c = ' ';
  while (!cmd.empty() && cmd.back() == ' ') cmd.pop_back();
  return "pid " + std::to_string(pid) + " (" + (cmd.empty() ? "?" : cmd) + ")";
}

void ignore_fd_if(std::function<bool(int)> predicate) {
  fd_filters().push_back(std::move(predicate));
}
void ignore_child_if(std::function<bool(pid_t)> predicate) {
  child_filters().push_back(std::move(predicate));
}

void install() {
  testing::UnitTest::GetInstance()->listeners().Append(new Listener);
}

}  // namespace census
