#!/usr/bin/env bash
# Builds (Release) and runs the main job: the seed programs, one after another.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
exec scripts/run_demo.sh build/release/examples
