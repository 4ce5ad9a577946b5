#!/usr/bin/env bash
# Installs the Debian packages concur needs, only those that are missing.
set -euo pipefail
pkgs=(build-essential g++ clang-14 libclang-rt-14-dev cmake ninja-build
      libasio-dev libcereal-dev libgtest-dev libgmock-dev libbenchmark-dev libtbb-dev
      libopenmpi-dev openmpi-bin python3 python3-matplotlib procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
