#!/usr/bin/env bash
# Run ON the lent GPU machine, in one device call (see scripts/device-prepare.sh):
#   builds with the carried .deps for sm_90a, runs every gpu-labelled test (one process:
#   seconds, where one ctest process per test takes minutes) and compute-sanitizer's memcheck and
#   racecheck on a few cases of the own kernels (where the tool exists), then `dsv3 run --resume` into
#   results/<date>_<gpu>/ of the tree, and packs the test logs and that folder into
#   $OUT/device-results.tar.gz. Unpack it over the checkout here; when the run was cut short
#   (DSV3_RUN_SECONDS or the call's limit), the next call ships the partial bundle back with the
#   tree and the run continues at its first unmeasured case. CPU tests are CI's job, not run here.
# Usage: device-run.sh [all|test|run] [dsv3 run arguments...]
#   all (default) build + tests + run; `test` build + tests; `run` build + run.
# Environment: DSV3_RUN_SECONDS  stop `dsv3 run` after this long (default: no limit); the bundle
#              keeps every finished phase and benchmark case.
#              DSV3_SUITE_SECONDS  limit per gpu test suite (default 240).
# A kernel that faults or hangs costs its own variant only (core/device_guard.hpp): every gpu test
# suite (one variant) runs in its own process under a time limit, and `dsv3 run` is resumed after
# it stops with exit 75 (a lost CUDA context, or no progress past --gpu-deadline), with that
# variant quarantined.
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
# The SASS instruction mix of the own kernels (tensor-core and copy instructions), for their docs.
bash scripts/sass-mix.sh build-device/CMakeFiles/dsv3_optimized.dir/optimized/{mla_decode,fp8_gemm_wgmma}.cu.o \
  > "$out/pack/sass-mix.txt" 2>&1
grep -cE 'QGMMA|HMMA' "$out/pack/sass-mix.txt" | sed 's/^/device-run: sass-mix lines with tensor-core instructions: /'
gpu_rc=0 run_rc=0
if [ "$mode" != run ]; then
  # ctest -L gpu selects the tests named Gpu* (CMakeLists.txt): the same filter, one process per
  # suite (a suite is one variant; a process per test takes minutes), each under a time limit, so a
  # kernel that faults (the process's CUDA context is lost) or hangs costs only its own suite.
  : > "$out/pack/gpu-tests.log"
  mkdir -p "$out/pack/gpu-tests"
  for suite in $(build-device/dsv3_tests --gtest_list_tests --gtest_filter='Gpu*' | grep -v '^ ' | tr -d .); do
    timeout "${DSV3_SUITE_SECONDS:-240}" build-device/dsv3_tests --gtest_filter="$suite.*" \
      --gtest_output="xml:$out/pack/gpu-tests/$suite.xml" >> "$out/pack/gpu-tests.log" 2>&1
    rc=$?
    case $rc in
      0) ;;
      124) echo "device-run: $suite stopped after ${DSV3_SUITE_SECONDS:-240} s (a hang?)"
           echo "device-run: $suite stopped after ${DSV3_SUITE_SECONDS:-240} s" >> "$out/pack/gpu-tests.log"; gpu_rc=1 ;;
      1) gpu_rc=1 ;;
      *) echo "device-run: $suite ended with status $rc (a crash?)"
         echo "device-run: $suite ended with status $rc" >> "$out/pack/gpu-tests.log"; gpu_rc=1 ;;
    esac
  done
  # One line per suite: tests passed, failed, skipped.
  python3 - "$out/pack/gpu-tests" <<'PY'
import glob, os, sys, xml.etree.ElementTree as ET
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.xml"))):
    ts = ET.parse(f).getroot().find("testsuite")
    if ts is None:
        continue
    cases = ts.findall("testcase")
    failed = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    print(f"device-run: {ts.get('name'):44s} {len(cases) - failed - skipped:4d} pass {failed:4d} fail {skipped:4d} skip")
PY
  grep -E "^\[  FAILED  \] [A-Za-z]" "$out/pack/gpu-tests.log" | sort -u | head -20
  # The own kernels under compute-sanitizer (memcheck, racecheck) on a few small cases: MLA decode
  # with split and unsplit sequences, both cache formats, s_q 2 with a head slice; the FP8 GEMM with
  # row and column tails, empty and padded contiguous groups, masked groups. Logs beside the test log.
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$san" ]; then
    cases='GpuCheck_mla_decode.decode_b_1_sq_1_h_128_bf16_lens_300_normal'
    cases+=':GpuCheck_mla_decode.decode_b_8_sq_2_h_64_fp8_lens_0_1_63_64_65_130_200_257_normal'
    cases+=':GpuCheck_mla_decode.decode_b_1_sq_2_h_128_bf16_lens_65_normal'
    cases+=':GpuCheck_fp8_gemm_wgmma.dense_m_65_n_576_k_256_f32_out_bf16_normal'
    cases+=':GpuCheck_fp8_gemm_wgmma.contiguous_rows_1_0_130_128_n_576_k_256_f32_out_bf16_normal'
    cases+=':GpuCheck_fp8_gemm_wgmma.masked_cap_64_rows_64_0_1_33_n_576_k_256_f32_out_bf16_normal'
    cases+=':GpuCheck_ep_cuda.deepseek_v3_671b_R_8_G_2_T_12_D_256_M_2_fp8'
    cases+=':GpuCheck_ep_cuda.deepseek_v2_lite_16b_R_4_G_2_T_16_D_256_M_1_bf16'
    cases+=':GpuCheck_ep_cuda.deepseek_v3_671b_R_4_G_2_T_16_D_256_M_2_fp8_combine_logfmt10_x_2__6'
    for tool in memcheck racecheck; do
      timeout 300 "$san" --tool "$tool" --error-exitcode 3 build-device/dsv3_tests --gtest_filter="$cases" \
        > "$out/pack/sanitizer-$tool.log" 2>&1
      rc=$?
      echo "device-run: compute-sanitizer $tool rc=$rc ($(grep -cE '^\[       OK' "$out/pack/sanitizer-$tool.log") tests ok;" \
           "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/pack/sanitizer-$tool.log" | tail -1))"
      [ "$rc" = 0 ] || gpu_rc=1
    done
  else
    echo "device-run: no compute-sanitizer on this machine; memcheck/racecheck not run"
  fi
  # NCCL all-to-all between this machine's GPUs (nccl-tests' form, data checked; built where NCCL is).
  if [ -x build-device/dsv3_nccl_alltoall ]; then
    build-device/dsv3_nccl_alltoall --min-bytes 8 --max-bytes 268435456 --json "$out/pack/nccl_alltoall.json" \
      > "$out/pack/nccl-alltoall.log" 2>&1 || gpu_rc=1
    tail -6 "$out/pack/nccl-alltoall.log"
  else
    echo "device-run: dsv3_nccl_alltoall not built (no NCCL in this toolkit)"
  fi
  # The ep case over NCCL with world size 1 (this build has no MPI: tools/mpi_single.hpp; on a
  # machine with MPI and several GPUs run it under mpirun, docs/ep.md): each wire, then V3 sizes.
  if [ -x build-device/dsv3_ep_nccl ]; then
    : > "$out/pack/ep-nccl.log"
    for args in "--tokens 64 --dim 512" "--tokens 64 --dim 512 --wire bf16" "--tokens 64 --dim 512 --wire fp8_pow2" \
                "--tokens 64 --dim 512 --combine logfmt10 --x-scale-log2 -6" "--tokens 9 --dim 256 --draw all_to_rank0" \
                "--tokens 4096 --dim 7168" "--tokens 4096 --dim 7168 --wire bf16"; do
      name=$(echo "$args" | tr -d -- '-' | tr ' ' '_')
      build-device/dsv3_ep_nccl --ranks-per-node 1 $args --iters 10 \
        --json "$out/pack/ep_nccl_${name}.json" >> "$out/pack/ep-nccl.log" 2>&1 || gpu_rc=1
    done
    grep -E "^case|DIFFERENT|FAIL|rank [0-9]+:" "$out/pack/ep-nccl.log"
  else
    echo "device-run: dsv3_ep_nccl not built (no NCCL in this toolkit)"
  fi
fi
if [ "$mode" != test ]; then
  slug=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\+/-/g; s/-$//')
  dir="results/$(date -u +%F)_${slug}"
  # Exit 75: a kernel lost the CUDA context or hung; the bundle is saved with that variant
  # quarantined, and a fresh process continues.
  start=$(date +%s)
  : > "$out/pack/run.log"
  while :; do
    limit=()
    if [ -n "${DSV3_RUN_SECONDS:-}" ]; then
      left=$(( DSV3_RUN_SECONDS - ($(date +%s) - start) ))
      [ "$left" -gt 10 ] || { run_rc=124; break; }
      limit=(timeout "$left")
    fi
    "${limit[@]}" build-device/dsv3 run --resume --out "$dir" "$@" >> "$out/pack/run.log" 2>&1
    run_rc=$?
    [ "$run_rc" = 75 ] || break
    echo "device-run: $(grep -E 'quarantined|no progress' "$out/pack/run.log" | tail -1 | cut -c1-300)"
    echo "device-run: resuming dsv3 run in a new process"
  done
  [ "$run_rc" = 124 ] && echo "device-run: dsv3 run stopped after ${DSV3_RUN_SECONDS}s; call again to resume"
  tail -30 "$out/pack/run.log"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('bundle phases:', d['completed_phases'])" \
    "$dir/bundle.json" 2>/dev/null
  for f in gpu-tests.log run.log nvidia-smi.txt sanitizer-memcheck.log sanitizer-racecheck.log sass-mix.txt \
           nccl-alltoall.log nccl_alltoall.json ep-nccl.log; do
    [ -f "$out/pack/$f" ] && cp "$out/pack/$f" "$dir/"
  done
  for f in "$out"/pack/ep_nccl_*.json; do [ -f "$f" ] && mkdir -p "$dir/ep_nccl" && cp "$f" "$dir/ep_nccl/"; done
  tar -czf "$out/device-results.tar.gz" "$dir"
fi
[ "$mode" = test ] && tar -C "$out/pack" -czf "$out/device-results.tar.gz" .
rm -rf "$out/pack"
echo "device-run: gpu tests rc=$gpu_rc, run rc=$run_rc"
exit $(( gpu_rc || run_rc ))
