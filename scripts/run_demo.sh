#!/usr/bin/env bash
# Runs each seed program found in the given build directory, with a banner per program.
set -uo pipefail
dir=${1:-build/release/examples}
status=0
banner() { echo; echo "================================================================ $*"; }
run() {
  local name=$1; shift
  [ -x "$dir/$name" ] || { echo "(skipping $name: not built)"; return; }
  banner "$name $*"
  if ! "$dir/$name" "$@"; then echo "!!! $name failed"; status=1; fi
}

# The log catcher with its clients: C++ sorting clients and a real Python SocketHandler.
log_server_demo() {
  [ -x "$dir/log_server/log_server" ] || { echo "(skipping log_server: not built)"; return; }
  banner "log_server + log_client x3 + Python logging.handlers.SocketHandler"
  local out; out=$(mktemp -d)
  "$dir/log_server/log_server" --port 0 --output "$out/log.jsonl" >"$out/server.txt" 2>&1 &
  local server=$!
  local port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^Serving on .*:\([0-9]*\)$/\1/p' "$out/server.txt")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then echo "!!! log_server did not start"; kill $server; status=1; return; fi
  head -1 "$out/server.txt"
  for sorter in bogo gnome gnome; do
    "$dir/log_server/log_client" --port "$port" --workload 6 --sorter $sorter --quiet &
  done
  /usr/bin/python3 - "$port" <<'PY'
import logging, logging.handlers, sys
log = logging.getLogger("python-client")
log.setLevel(logging.DEBUG)
log.addHandler(logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1])))
for i in range(5):
    log.info("hello from Python's SocketHandler, record %d, unicode: %s", i, "naïve ✓")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("and one with a traceback")
PY
  wait $(jobs -p | grep -v "^$server$") 2>/dev/null
  kill -TERM $server; wait $server
  local rc=$?
  tail -n +2 "$out/server.txt"
  echo "--- first and last lines of the collected log ($(wc -l <"$out/log.jsonl") lines):"
  head -2 "$out/log.jsonl" | cut -c1-200
  tail -1 "$out/log.jsonl"
  [ $rc -eq 0 ] || { echo "!!! log_server exited with $rc"; status=1; }
  rm -rf "$out"
}

run primes
# The same prime check on an MPI pool (Open MPI refuses to run as root unless told; all
# processes are on this host, so they talk over loopback, which Open MPI leaves out).
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
run mpi_primes
run pool_methods 0.05
run prime_factors 8192
run executor_tour 0.05
run start_methods 0.1
pystdlib=$(/usr/bin/python3 -c 'import os; print(os.path.dirname(os.__file__))' 2>/dev/null || echo /usr/lib/python3)
run import_finder "$pystdlib/asyncio"
# multiprocessing: Process with Queue, Pipe and Lock, the race and deadlock exercises, the
# directory search with one query queue per worker process
run process_queue
run process_pipe
run process_lock
run race_value
run deadlock_fixed
run much_cpu 20000000
run directory_search "$pystdlib/asyncio"
# asyncio
run sleepers 5 1.0
run dining_philosophers 3 5 0.2
run async_process_pool 4 400000000
log_server_demo
exit $status
