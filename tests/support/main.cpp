// Shared main for every test executable: GoogleTest plus the resource census.
#include <sys/types.h>

#include <string>

#include <gtest/gtest.h>

#include "concur/detail/process_fd.hpp"
#include "support/census.hpp"

// libstdc++ is not built for ThreadSanitizer, so the atomic reference count of an
// exception_ptr is invisible to it: when a pool thread drops the last reference to an
// exception a test thread has caught and released, TSan sees the delete race with the
// earlier what(). Only that release is exempt.
extern "C" const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n";
}

namespace {

// The sanitizers start llvm-symbolizer the first time they symbolize a stack (to match a
// suppression, say) and keep it, and their two pipes to it, until the program exits.
bool is_symbolizer(pid_t pid) {
  return census::link_target("/proc/" + std::to_string(pid) + "/exe").find("llvm-symbolizer") !=
         std::string::npos;
}

bool is_symbolizer_pipe(int fd) {
  std::string mine = census::link_target("/proc/self/fd/" + std::to_string(fd));
  if (mine.rfind("pipe:", 0) != 0) return false;
  for (pid_t child : census::child_pids()) {
    if (!is_symbolizer(child)) continue;
    for (int theirs : {0, 1})
      if (census::link_target("/proc/" + std::to_string(child) + "/fd/" +
                              std::to_string(theirs)) == mine)
        return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  // The process engine's shared fork server (and its socket) lives until the program
  // exits, by design (Python's forkserver does too): not a leak of the test that started it.
  census::ignore_fd_if([](int fd) { return concur::detail::is_library_persistent_fd(fd); });
  census::ignore_child_if([](pid_t pid) { return concur::detail::is_library_persistent_pid(pid); });
  census::ignore_fd_if(is_symbolizer_pipe);
  census::ignore_child_if(is_symbolizer);
  census::install();
  return RUN_ALL_TESTS();
}
