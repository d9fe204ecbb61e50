#!/usr/bin/env bash
# The SASS instruction mix of the own kernels: per kernel, how many tensor-core (HMMA, HGMMA, QGMMA),
# copy (LDGSTS, UTMALDG, LDSM), barrier (SYNCS, BAR, WARPGROUP), register (USETMAXREG) and
# local-memory (LDL, STL: spills) instructions its SASS holds, for the kernels' docs.
# Usage: scripts/sass-mix.sh [object.o ...]   (default: the own kernels' objects in build/)
# Needs cuobjdump and nvdisasm: the toolkit's, or NVIDIA's PyPI wheels, installed into .venv on
# first use where the toolkit lacks them (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm).
set -euo pipefail
cd "$(dirname "$0")/.."
objs=("$@")
[ ${#objs[@]} -gt 0 ] || objs=(build/CMakeFiles/dsv3_optimized.dir/optimized/{mla_decode,fp8_gemm_wgmma}.cu.o)
wheel_bin() { ls -d .venv/lib/python3*/site-packages/nvidia/cu13/bin 2>/dev/null | head -1; }
if ! command -v cuobjdump >/dev/null || ! command -v nvdisasm >/dev/null; then
  PATH="/usr/local/cuda/bin:$PATH"
  if ! command -v nvdisasm >/dev/null || ! command -v cuobjdump >/dev/null; then
    if [ -z "$(wheel_bin)" ] && [ -x .venv/bin/pip ]; then
      .venv/bin/pip install -q nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm >&2 || true
    fi
    [ -n "$(wheel_bin)" ] && PATH="$PWD/$(wheel_bin):$PATH"
  fi
fi
if ! command -v cuobjdump >/dev/null || ! command -v nvdisasm >/dev/null; then
  echo "sass-mix: no cuobjdump/nvdisasm (toolkit or .venv wheels); mix not recorded" >&2
  exit 0
fi
ops='(HMMA|HGMMA|QGMMA|LDSM|LDGSTS|UTMALDG|SYNCS|WARPGROUP|USETMAXREG|LDL|STL)(\.[A-Za-z0-9_]+)*'
for obj in "${objs[@]}"; do
  [ -f "$obj" ] || { echo "sass-mix: $obj not built" >&2; continue; }
  echo "== $obj"
  cuobjdump -sass "$obj" | awk -v ops="$ops" '
    /Function :/ { name = $3; sub(/.*_cu_[0-9a-f]+[0-9]+/, "", name); print "-- " name; next }
    { line = $0; while (match(line, ops)) { count[name SUBSEP substr(line, RSTART, RLENGTH)]++; line = substr(line, RSTART + RLENGTH) } }
    END { for (k in count) { split(k, p, SUBSEP); printf "%6d  %s  %s\n", count[k], p[1], p[2] } }' | sort -k2,2 -k1,1nr | grep -v '^-- ' || true
done
