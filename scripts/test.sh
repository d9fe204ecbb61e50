#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the tests.
# Without a GPU the cpu-labelled tests run (the CUDA code is still compiled); with one, all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh "$@"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  ctest --test-dir build --output-on-failure -j "$(nproc)"
else
  echo "test: no GPU here: running the cpu-labelled tests (gpu-labelled ones need a GPU)"
  ctest --test-dir build -L cpu --output-on-failure -j "$(nproc)"
fi
