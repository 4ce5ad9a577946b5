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
  ctest --preset "$p" -j "$jobs" -LE '^(mpi|test_mpi_pool)$'
  # Debian 12's Open MPI 4.1.4 with PMIx 4.2.2 hangs inside MPI_Comm_spawn about once in
  # a few hundred spawns on a loaded machine (a worker's PMIx_Init is never answered;
  # openpmix issue 2735). The library turns that hang into an OSError after spawn_timeout
  # and cannot recover in-process, so an MPI test that met it runs again, at most twice:
  # ctest's output keeps the failed attempt.
  ctest --preset "$p" -j "$jobs" -L '^(mpi|test_mpi_pool)$' --no-tests=ignore --repeat until-pass:3
done
echo "=== all test runs passed: ${presets[*]}"
