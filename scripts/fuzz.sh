#!/usr/bin/env bash
# Fuzzes the decoders that read other processes' bytes: builds the libFuzzer targets of
# fuzz/ (preset `fuzz`: clang 14, ASan + UBSan) and runs each for SECONDS (default 60) on a
# scratch copy of its corpus fuzz/corpus/<target>/ (plus fresh seeds from make_corpus).
# Exits non-zero when a fuzzer finds a crash, a leak, a timeout or an excessive
# allocation, and prints the reproducer; once fixed, copy it into fuzz/corpus/<target>/
# so that every test build replays it (ctest -L fuzz).
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
targets=(serialize pickle)

echo "=== [fuzz] configure + build"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"
bin=build/fuzz/fuzz

work=$(mktemp -d "${TMPDIR:-/tmp}/concur-fuzz.XXXXXX")
failed=()
for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/corpus/"$t"/* "$dir/corpus/"
  if [[ $t == serialize ]]; then "$bin/make_corpus" "$dir/corpus" >/dev/null; fi
  echo "=== [fuzz] $t for ${secs}s"
  rc=0
  "$bin/fuzz_$t" "$dir/corpus" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 >"$dir/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$dir/log")
  if ((rc != 0)); then
    tail -n 60 "$dir/log"
    for a in "$dir"/artifacts/*; do
      [[ -e $a ]] && echo "=== [fuzz] $t FAILED (exit $rc); reproducer: $a" \
                  && echo "    replay: $bin/fuzz_$t $a"
    done
    failed+=("$t")
  else
    echo "    ${runs:-?} runs in ${took:-?} s ($(( ${runs:-0} / (${took:-1} > 0 ? ${took:-1} : 1) )) exec/s)," \
         "corpus $(ls "$dir/corpus" | wc -l) inputs"
  fi
done

if ((${#failed[@]})); then
  echo "=== [fuzz] failures in: ${failed[*]} (logs and reproducers kept in $work)"
  exit 1
fi
rm -rf "$work"
echo "=== [fuzz] no findings: ${targets[*]}"
