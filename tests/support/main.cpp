// Shared main for every test executable: GoogleTest plus the resource census.
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

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  // The process engine's shared fork server (and its socket) lives until the program
  // exits, by design (Python's forkserver does too): not a leak of the test that started it.
  census::ignore_fd_if([](int fd) { return concur::detail::is_library_persistent_fd(fd); });
  census::ignore_child_if([](pid_t pid) { return concur::detail::is_library_persistent_pid(pid); });
  census::install();
  return RUN_ALL_TESTS();
}
