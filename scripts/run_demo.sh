#!/usr/bin/env bash
# Runs each seed program found in the given build directory, with a banner per program.
set -uo pipefail
dir=${1:-build/release/examples}
status=0
run() {
  local name=$1; shift
  [ -x "$dir/$name" ] || { echo "(skipping $name: not built)"; return; }
  echo
  echo "================================================================ $name $*"
  if ! "$dir/$name" "$@"; then echo "!!! $name failed"; status=1; fi
}
run primes
pystdlib=$(/usr/bin/python3 -c 'import os; print(os.path.dirname(os.__file__))' 2>/dev/null || echo /usr/lib/python3)
run import_finder "$pystdlib/asyncio"
exit $status
