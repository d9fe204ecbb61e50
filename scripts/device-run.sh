#!/usr/bin/env bash
# Run ON the lent GPU machine, in one device call (see scripts/device-prepare.sh):
#   builds with the carried .deps for sm_90a, runs the gpu- and cpu-labelled tests, then
#   `dsv3 run`, and packs test logs + the result bundle, plots and REPORT.md into
#   $OUT/device-results.tar.gz (unpack it under results/ here and commit the bundle).
# Usage: device-run.sh [all|test|run] [dsv3 run arguments...]
#   all (default) build + tests + run; `test` build + tests; `run` build (kept between calls on a
#   warm machine, so nearly free) + `dsv3 run`: two calls when one would pass the 10-minute limit.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in all|test|run) mode=$1; shift ;; esac
out=${OUT:-/tmp/dsv3-out}
mkdir -p "$out/pack"
nvidia-smi -L | tee "$out/pack/nvidia-smi.txt"
export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build-device "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDSV3_BUNDLED_DEPS=ON \
      -DDSV3_ENABLE_MPI=OFF -DDSV3_CUDA_ARCHITECTURES=90a > "$out/pack/configure.log" 2>&1 \
  || { tail -40 "$out/pack/configure.log"; exit 1; }
cmake --build build-device -j "$(nproc)" > "$out/pack/build.log" 2>&1 || { tail -60 "$out/pack/build.log"; exit 1; }
echo "device-run: built"
gpu_rc=0 cpu_rc=0 run_rc=0
if [ "$mode" != run ]; then
  ctest --test-dir build-device -L gpu -j 4 --output-on-failure > "$out/pack/ctest-gpu.log" 2>&1
  gpu_rc=$?
  ctest --test-dir build-device -L cpu -j 8 --output-on-failure > "$out/pack/ctest-cpu.log" 2>&1
  cpu_rc=$?
  grep -E "tests passed|tests failed" "$out/pack/ctest-gpu.log" "$out/pack/ctest-cpu.log"
  grep -E "\*\*\*Failed" "$out/pack/ctest-gpu.log" | head -20
fi
if [ "$mode" != test ]; then
  day=$(date -u +%F)
  slug=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\+/-/g; s/-$//')
  build-device/dsv3 run --out "$out/pack/${day}_${slug}" "$@" > "$out/pack/run.log" 2>&1
  run_rc=$?
  tail -30 "$out/pack/run.log"
fi
tar -C "$out/pack" -czf "$out/device-results.tar.gz" .
rm -rf "$out/pack"
echo "device-run: gpu tests rc=$gpu_rc, cpu tests rc=$cpu_rc, run rc=$run_rc"
exit $(( gpu_rc || cpu_rc || run_rc ))
