// Forked children for tests that need a second process without the library's help.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

namespace test_support {

// Forked children that are always reaped: whatever a test asserts, none outlives it.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (pid_t pid : pids_) {
      kill(pid, SIGKILL);
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  // Runs body() in a child; its return value is the child's exit status (an exception: 99).
  template <class F>
  pid_t fork(F&& body) {
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int code = 98;
      try {
        code = body();
      } catch (...) {
        code = 99;
      }
      _exit(code);
    }
    pids_.push_back(pid);
    return pid;
  }

  // Waits for a child: its exit status, or 128 + the signal that killed it.
  int wait(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::erase(pids_, pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

 private:
  std::vector<pid_t> pids_;
};

}  // namespace test_support
