#!/usr/bin/env bash
# The suite's main job: installs what is missing, builds, then `dsv3 run` on whatever hardware is
# present (CPU-only included). Arguments go to `dsv3 run` (see build/dsv3 run --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec build/dsv3 run "$@"
