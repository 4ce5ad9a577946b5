// Shared main for every test executable: GoogleTest plus the resource census.
#include <gtest/gtest.h>

#include "support/census.hpp"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  census::install();
  return RUN_ALL_TESTS();
}
