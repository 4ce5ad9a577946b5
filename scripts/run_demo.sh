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
exit $status
