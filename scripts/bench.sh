#!/usr/bin/env bash
# Builds the benchmarks (Release) and runs every comparison with Python in one go.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
b=build/release/bench
for script in bench/thread_pool.py bench/process_pool.py; do
  [ -f "$script" ] || continue
  echo; /usr/bin/python3 "$script" "$b/bench_$(basename "$script" .py)"
done
# multiprocessing Queue and Pipe beside Python's, and the raw IPC ping-pong of this machine
echo; /usr/bin/python3 bench/mp.py "$b/bench_mp"
