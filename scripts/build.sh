#!/usr/bin/env bash
# Configures and builds dsv3bench into build/ (CUDA variants when nvcc is found; see README).
# Extra arguments go to cmake's configure step, e.g. -DDSV3_ENABLE_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >/dev/null
cmake --build build -j "$(nproc)"
