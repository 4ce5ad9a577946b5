// Shared main for every test executable: GoogleTest plus the resource census.
#include <gtest/gtest.h>

#include "concur/detail/process_fd.hpp"
#include "support/census.hpp"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  // The process engine's shared fork server (and its socket) lives until the program
  // exits, by design (Python's forkserver does too): not a leak of the test that started it.
  census::ignore_fd_if([](int fd) { return concur::detail::is_library_persistent_fd(fd); });
  census::ignore_child_if([](pid_t pid) { return concur::detail::is_library_persistent_pid(pid); });
  census::install();
  return RUN_ALL_TESTS();
}
