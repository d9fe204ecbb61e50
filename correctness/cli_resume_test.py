#!/usr/bin/env python3
"""`dsv3 run --resume` continues an interrupted bench phase at its first unmeasured case.

Runs a small `dsv3 run`, then rewrites its bundle as an interruption after the first benchmark
case would have left it (bench not completed, the last case's row missing), resumes,
and checks that only the missing case ran, every row is there once, and both invocations are
recorded. Usage: cli_resume_test.py <path to dsv3> <scratch dir>
"""
import json
import os
import re
import shutil
import subprocess
import sys

FILTER = "fp8_quant/ref/quant_1x128 m=4096 k=(2048|7168) e4m3 divide f32 normal"  # two cases: two batches


def run(dsv3, out, *extra):
    cmd = [dsv3, "run", "--quick", "--no-plots", "--filter", FILTER, "--out", out, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return p.stderr


def names(bundle):
    return [re.sub(r"/manual_time$", "", b["run_name"]) for b in bundle["benchmarks"] if not b.get("skipped")]


def main():
    dsv3, scratch = sys.argv[1], sys.argv[2]
    shutil.rmtree(scratch, ignore_errors=True)
    path = os.path.join(scratch, "bundle.json")
    run(dsv3, scratch)
    with open(path) as f:
        full = json.load(f)
    # Every study the run wrote is a non-empty array (a null or empty one is a lost study).
    bad = [k for k, v in full.get("studies", {}).items() if not isinstance(v, list) or not v]
    if bad or not full.get("studies"):
        sys.exit(f"FAIL: studies missing, null or empty in the run's bundle: {bad or 'no studies'}")
    measured = names(full)
    if len(measured) != 2:
        sys.exit(f"FAIL: expected 2 benchmarks for filter {FILTER!r}, got {measured}")
    # What the bundle looks like when the run is killed while the second case is being measured
    # (rows are saved per case, so the first case's row is in it).
    cut = dict(full)
    cut["completed_phases"] = ["environment", "ceilings", "check", "studies"]
    cut["benchmarks"] = [b for b in full["benchmarks"] if not b.get("skipped") and
                         re.sub(r"/manual_time$", "", b["run_name"]) == measured[0]]
    with open(path, "w") as f:
        json.dump(cut, f)
    log = run(dsv3, scratch, "--resume")
    if "bench: 1 benchmarks to run (1 already in the bundle)" not in log:
        sys.exit("FAIL: the resumed run did not skip the measured case:\n" + log[-3000:])
    if f"] {measured[0]}" in log:
        sys.exit(f"FAIL: the resumed run re-measured {measured[0]}")
    with open(path) as f:
        resumed = json.load(f)
    if sorted(names(resumed)) != sorted(measured):
        sys.exit(f"FAIL: resumed bundle rows {names(resumed)} != {measured}")
    if resumed["completed_phases"] != ["environment", "ceilings", "check", "studies", "bench", "calibrated"]:
        sys.exit(f"FAIL: phases after resuming: {resumed['completed_phases']}")
    inv = resumed.get("invocations", [])
    if [i.get("resume") for i in inv] != [False, True]:
        sys.exit(f"FAIL: invocations {inv}")
    print("ok: resumed run measured only", measured[1])


if __name__ == "__main__":
    main()
