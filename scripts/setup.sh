#!/usr/bin/env bash
# Installs what dsv3bench needs on a fresh Debian 12 machine, skipping what is already there:
# Debian packages (Eigen, nlohmann-json, CLI11, GoogleTest, Google Benchmark, OpenMPI, ccache, and
# fortunes: the tiny LM's training text)
# and the Python environment for plots/reports (.venv from scripts/requirements.txt).
# The CUDA toolkit is not installed here: when nvcc is present the CUDA variants are built too.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make libeigen3-dev nlohmann-json3-dev libcli11-dev googletest libgtest-dev
          libbenchmark-dev libopenmpi-dev openmpi-bin ccache python3-venv
          fortunes)  # fortunes: the text the tiny LM of the FP8 training study learns (docs/fp8-train.md)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import matplotlib, numpy, ml_dtypes" 2>/dev/null; then
  echo "setup: creating .venv from scripts/requirements.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r scripts/requirements.txt
fi
echo "setup: done"
