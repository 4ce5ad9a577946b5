#!/usr/bin/env bash
# Builds and runs the whole test suite: g++ 12 with -Werror (preset dev), then clang 14
# with AddressSanitizer+UBSan (asan) and ThreadSanitizer (tsan), then fuzzes the decoders
# for 45 s each (fuzz: scripts/fuzz.sh). Installs missing Debian packages first.
# Usage: scripts/test.sh [preset...]   (default: dev asan tsan fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
presets=("$@")
((${#presets[@]})) || presets=(dev asan tsan fuzz)
jobs=$(nproc)
for p in "${presets[@]}"; do
  if [[ $p == fuzz ]]; then
    scripts/fuzz.sh 45
    continue
  fi
  echo "=== [$p] configure + build"
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p" -j "$jobs"
  echo "=== [$p] test"
  ctest --preset "$p" -j "$jobs"
done
echo "=== all test runs passed: ${presets[*]}"
