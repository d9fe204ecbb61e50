#!/usr/bin/env bash
# Run HERE (the build machine with Debian's packages) before using a lent GPU machine, which has
# nvcc, CMake and cuBLAS/NCCL but no apt and no network. Copies what the build needs into .deps/
# (git-ignored; ~16 MB): Eigen, nlohmann-json and CLI11 headers, GoogleTest's source, and Google
# Benchmark's headers and Debian's shared library. Then call the device tool with
#   command: bash scripts/device-run.sh      carry: [".deps"]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
rm -rf .deps && mkdir -p .deps/include .deps/lib
cp -r /usr/include/eigen3 /usr/include/nlohmann /usr/include/CLI /usr/include/benchmark .deps/include/
cp -r /usr/src/googletest .deps/googletest
lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libbenchmark.so)
cp "$lib" .deps/lib/
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
ln -sf "$(basename "$lib")" ".deps/lib/$soname"
ln -sf "$(basename "$lib")" .deps/lib/libbenchmark.so
du -sh .deps
