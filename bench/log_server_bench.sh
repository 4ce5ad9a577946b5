#!/usr/bin/env bash
# Side-by-side benchmark of the log catcher: C++ (examples/log_server) against the seed's
# Python asyncio design (bench/log_server_py.py), on the same load, in one run.
#
#   bench/log_server_bench.sh BUILD_DIR [CLIENTS=100] [RECORDS=2000] [IDLE=1000]
#
# 1. Throughput and latency: CLIENTS concurrent C++ clients (examples/log_server
#    log_client) each send RECORDS SocketHandler-format records as fast as they can.
#    records/s = records / (first record created .. last record written); latency =
#    write time - record creation time (same machine clock), p50/p99.
# 2. Memory: server RSS growth while IDLE idle connections are open.
# Prints each figure for both servers and the C++/Python ratio.
set -euo pipefail
BUILD=${1:?usage: log_server_bench.sh BUILD_DIR [CLIENTS] [RECORDS] [IDLE]}
CLIENTS=${2:-100}
RECORDS=${3:-2000}
IDLE=${4:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
CPP_SERVER=$BUILD/examples/log_server/log_server
CLIENT=$BUILD/examples/log_server/log_client
PY=/usr/bin/python3
ulimit -n 8192
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

start_server() {  # name cmd... ; sets SERVER_PID, SERVER_PORT
  local name=$1; shift
  "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 200); do
    if grep -q "Serving on" "$TMP/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  SERVER_PORT=$(grep -m1 "Serving on" "$TMP/$name.out" | sed 's/.*://')
}

wait_lines() {  # file count: wait until the file holds count lines, or stops growing for 2 s
  local file=$1 want=$2 last=-1 same=0
  for _ in $(seq 3000); do
    local n; n=$(wc -l < "$file" 2>/dev/null || echo 0)
    [ "$n" -ge "$want" ] && return 0
    if [ "$n" = "$last" ]; then same=$((same + 1)); [ $same -ge 20 ] && return 0; else same=0; fi
    last=$n
    sleep 0.1
  done
}

stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

throughput() {  # name server-cmd...
  local name=$1; shift
  start_server "$name" "$@" --port 0 --output "$TMP/$name.log" --stats
  "$CLIENT" --port "$SERVER_PORT" --clients "$CLIENTS" --records "$RECORDS" > "$TMP/$name.client" 2>&1
  wait_lines "$TMP/$name.log" $((CLIENTS * RECORDS))
  stop_server
  local stats; stats=$(grep latency_ms "$TMP/$name.err")
  local lines; lines=$(($(wc -l < "$TMP/$name.log") - 1))
  echo "$name: $stats lines=$lines"
}

idle_memory() {  # name server-cmd...
  local name=$1; shift
  start_server "$name-idle" "$@" --port 0 --output "$TMP/$name-idle.log"
  sleep 0.3
  local before; before=$(rss_kb "$SERVER_PID")
  "$PY" - "$SERVER_PORT" "$IDLE" "$SERVER_PID" > "$TMP/$name.idle" <<'PYEOF'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(1.0)
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]
print(rss)
for s in socks: s.close()
PYEOF
  local after; after=$(cat "$TMP/$name.idle")
  stop_server
  echo "$name: rss_before_kb=$before rss_with_${IDLE}_idle_kb=$after growth_kb=$((after - before))"
}

echo "== throughput: $CLIENTS clients x $RECORDS records"
CPP=$(throughput cpp "$CPP_SERVER"); echo "$CPP"
PYR=$(throughput python "$PY" "$HERE/log_server_py.py"); echo "$PYR"
field() { echo "$1" | sed -n "s/.*$2=\([0-9.]*\).*/\1/p"; }
echo "ratio records/s C++/Python: $(awk -v a="$(field "$CPP" rate)" -v b="$(field "$PYR" rate)" 'BEGIN{printf "%.1f", a/b}')"
echo "ratio p99 latency Python/C++: $(awk -v a="$(field "$PYR" p99)" -v b="$(field "$CPP" p99)" 'BEGIN{printf "%.1f", a/b}')"

echo "== memory: $IDLE idle connections"
CM=$(idle_memory cpp "$CPP_SERVER"); echo "$CM"
PM=$(idle_memory python "$PY" "$HERE/log_server_py.py"); echo "$PM"
echo "ratio idle RSS Python/C++: $(awk -v a="$(field "$PM" "rss_with_${IDLE}_idle_kb")" -v b="$(field "$CM" "rss_with_${IDLE}_idle_kb")" 'BEGIN{printf "%.1f", a/b}')"
