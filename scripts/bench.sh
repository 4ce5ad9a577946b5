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
# The MPI pool beside mpi4py.futures (Debian's python3-mpi4py, installed here if missing)
if [ -x "$b/bench_mpi_pool" ]; then
  dpkg-query -W -f='${Status}' python3-mpi4py 2>/dev/null | grep -q "install ok installed" ||
    { [ "$(id -u)" = 0 ] || s=sudo; ${s:-} apt-get install -y -qq --no-install-recommends python3-mpi4py; }
  echo; /usr/bin/python3 bench/mpi_pool.py "$b/bench_mpi_pool"
fi
# multiprocessing Queue and Pipe beside Python's, and the raw IPC ping-pong of this machine
echo; /usr/bin/python3 bench/mp.py "$b/bench_mp"
# Serialization, process-shared synchronisation (real-time priority when allowed, so the
# spinning partner gets its core), async primitives and the loop's responsiveness
echo; "$b/bench_serialize" --benchmark_min_time=0.2
rt=(); chrt -f 10 true 2>/dev/null && rt=(chrt -f 10)
echo; "${rt[@]}" "$b/bench_ipc_sync" --benchmark_min_time=0.2 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true
echo; "$b/bench_async" --benchmark_min_time=0.2
# The log catcher against the seed's Python asyncio server, same load
echo; bench/log_server_bench.sh build/release
