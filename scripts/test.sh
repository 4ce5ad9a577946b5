#!/usr/bin/env bash
# Builds and runs the whole test suite: g++ 12 with -Werror (preset dev), then clang 14
# with AddressSanitizer+UBSan (asan) and ThreadSanitizer (tsan). Installs missing Debian
# packages first. Usage: scripts/test.sh [preset...]   (default: dev asan tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
presets=("$@")
((${#presets[@]})) || presets=(dev asan tsan)
jobs=$(nproc)
for p in "${presets[@]}"; do
  echo "=== [$p] configure + build"
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p" -j "$jobs"
  echo "=== [$p] test"
  ctest --preset "$p" -j "$jobs"
done
echo "=== all test runs passed: ${presets[*]}"
