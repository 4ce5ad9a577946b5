// What a test does when it detects a hang: it says where every process of the test is
// stuck, then ends the test's whole process tree. A hung worker would otherwise keep the
// test's output pipe open, and CTest would report a bare timeout minutes later with no
// clue.
#pragma once

#include <string>

namespace test_support {

// Prints `what`, then for this process and all its descendants each thread's state, the
// kernel function it waits in and its system call (and, with gdb on PATH, every thread's
// stack), sends SIGKILL to the descendants and exits with status 3.
[[noreturn]] void report_hang_and_exit(const std::string& what) noexcept;

}  // namespace test_support
