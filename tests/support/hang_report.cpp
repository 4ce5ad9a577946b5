#include "support/hang_report.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "support/census.hpp"

namespace test_support {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s;
}

std::vector<pid_t> descendants(pid_t root) {
  std::vector<pid_t> out;
  for (pid_t c : census::child_pids(root)) {
    out.push_back(c);
    for (pid_t d : descendants(c)) out.push_back(d);
  }
  return out;
}

// One line per thread: its name, state (field 3 of stat), wchan and syscall.
void describe(pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  std::fprintf(stderr, "[hang] process %d (%s)\n", static_cast<int>(pid),
               read_text(base + "/comm").c_str());
  DIR* d = ::opendir((base + "/task").c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string t = base + "/task/" + e->d_name;
    std::string stat = read_text(t + "/stat");
    auto close = stat.rfind(')');
    char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    std::fprintf(stderr, "[hang]   thread %s (%s) %c wchan=%s syscall=%s\n", e->d_name,
                 read_text(t + "/comm").c_str(), state, read_text(t + "/wchan").c_str(),
                 read_text(t + "/syscall").c_str());
  }
  ::closedir(d);
}

bool have_gdb() { return ::access("/usr/bin/gdb", X_OK) == 0; }

// gdb's view of every thread of pid, bounded in time (gdb may itself get stuck).
void backtraces(pid_t pid) {
  std::fflush(stderr);
  const std::string p = std::to_string(pid);  // nothing allocates between fork and exec
  pid_t g = ::fork();
  if (g == 0) {
    ::dup2(2, 1);
    ::alarm(30);  // survives the exec: a gdb that gets stuck too is ended
    ::execl("/usr/bin/gdb", "gdb", "-q", "-batch", "-nx", "-p", p.c_str(), "-ex",
            "set print frame-arguments none", "-ex", "thread apply all bt 25",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (g > 0) ::waitpid(g, nullptr, 0);
}

}  // namespace

void report_hang_and_exit(const std::string& what) noexcept {
  try {
    std::fprintf(stderr, "%s\n", what.c_str());
    std::vector<pid_t> all{::getpid()};
    for (pid_t d : descendants(::getpid())) all.push_back(d);
    for (pid_t p : all) describe(p);
    if (have_gdb())
      for (pid_t p : all) backtraces(p);
    for (std::size_t i = 1; i < all.size(); ++i) ::kill(all[i], SIGKILL);
  } catch (...) {
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(3);
}

}  // namespace test_support
