#!/usr/bin/env python3
"""`dsv3 run --resume` continues an interrupted run where it stopped.

1. Bench: runs a small `dsv3 run`, then rewrites its bundle as an interruption after the first
   benchmark case would have left it (bench not completed, the last case's row missing), resumes,
   and checks that only the missing case ran, every row is there once, and both invocations are
   recorded.
2. Check, after a death in GPU code (core/device_guard.hpp): rewrites the bundle as a process that
   died in a CUDA case of the check phase leaves it (check not completed, the last rows missing, the
   in-flight marker naming the case), resumes, and checks that the case is a failure with the
   reason, its variant is quarantined, the other missing rows were checked once, and the exit
   status is 1. The case is one of rmsnorm/cuda's, skipped here for want of a GPU: the marker is
   all the resumed run knows, which is the point.
Usage: cli_resume_test.py <path to dsv3> <scratch dir>
"""
import json
import os
import re
import shutil
import subprocess
import sys

# Two benchmark cases (two batches), eval cases of a CUDA variant for the check phase, and one MPI
# job (the all-to-all sweep, to 1 MB with --quick).
FILTER = "fp8_quant/ref/quant_1x128 m=4096 k=(2048|7168) e4m3 divide f32 normal|rmsnorm/cuda/rows=1 dim=1 |ep/mpi/alltoall"


def run(dsv3, out, *extra, expect=0):
    cmd = [dsv3, "run", "--quick", "--no-plots", "--filter", FILTER, "--out", out, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect}\n{p.stderr[-3000:]}")
    return p.stderr


def names(bundle):
    return [re.sub(r"/manual_time$", "", b["run_name"]) for b in bundle["benchmarks"] if not b.get("skipped")]


def check_mpi(bundle):
    """The MPI phase ran the one job the filter names, with every byte checked, or says why it could not."""
    mpi = bundle.get("mpi")
    if mpi is None or "mpi" not in bundle.get("completed_phases", []):
        sys.exit("FAIL: the run's bundle has no completed mpi phase")
    if mpi.get("skipped"):
        if "no MPI library" not in mpi["skipped"]:
            sys.exit(f"FAIL: the MPI phase was skipped for an unexpected reason: {mpi['skipped']}")
        print("ok: MPI phase skipped with its reason:", mpi["skipped"])
        return
    jobs = mpi.get("jobs", [])
    if [j.get("item") for j in jobs] != ["ep/mpi/alltoall np4"]:
        sys.exit(f"FAIL: expected exactly the all-to-all job, got {[j.get('item') for j in jobs]}")
    rows = jobs[0].get("result", {}).get("rows", [])
    if jobs[0].get("error") or not rows or rows[-1].get("size_bytes") != 1 << 20 or any(r.get("wrong") for r in rows):
        sys.exit(f"FAIL: the all-to-all job: {json.dumps(jobs[0])[:2000]}")
    print(f"ok: MPI all-to-all, {len(rows)} sizes to 1 MB, 0 wrong")


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
    check_mpi(full)
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
    if resumed["completed_phases"] != ["environment", "ceilings", "check", "studies", "bench", "mpi", "calibrated"]:
        sys.exit(f"FAIL: phases after resuming: {resumed['completed_phases']}")
    inv = resumed.get("invocations", [])
    if [i.get("resume") for i in inv] != [False, True]:
        sys.exit(f"FAIL: invocations {inv}")
    print("ok: resumed run measured only", measured[1])
    resume_after_death_in_gpu_code(dsv3, scratch, full)


def resume_after_death_in_gpu_code(dsv3, scratch, full):
    path, marker = os.path.join(scratch, "bundle.json"), os.path.join(scratch, "inflight.json")
    rows = full["correctness"]
    if len(rows) < 3 or any(r["variant"] != "cuda" for r in rows):
        sys.exit(f"FAIL: expected rmsnorm/cuda check rows for filter {FILTER!r}, got {len(rows)}")
    died_in, missing = rows[-2], rows[-1]
    item = f"{died_in['component']}/{died_in['variant']}/{died_in['case']}"
    cut = dict(full)
    cut["completed_phases"] = ["environment", "ceilings"]
    cut["correctness"] = rows[:-2]
    with open(path, "w") as f:
        json.dump(cut, f)
    with open(marker, "w") as f:
        json.dump({"item": item, "phase": "check", "utc": "2026-01-01T00:00:00Z"}, f)
    log = run(dsv3, scratch, "--resume", expect=1)  # the case that died is a failure
    if os.path.exists(marker):
        sys.exit("FAIL: the resumed run left the stale in-flight marker")
    if f"check of {item}: the previous invocation ended while this ran" not in log:
        sys.exit("FAIL: the resumed run did not name the case the previous one died in:\n" + log[-3000:])
    with open(path) as f:
        resumed = json.load(f)
    q = resumed.get("quarantine", [])
    if [(e.get("variant"), e.get("item"), e.get("phase")) for e in q] != [("rmsnorm/cuda", item, "check")]:
        sys.exit(f"FAIL: quarantine {q}")
    keys = [f"{r['component']}/{r['variant']}/{r['case']}" for r in resumed["correctness"]]
    if sorted(keys) != sorted(f"{r['component']}/{r['variant']}/{r['case']}" for r in rows):
        sys.exit(f"FAIL: check rows after resuming are not the original ones, each once: {len(keys)} rows")
    got = {f"{r['component']}/{r['variant']}/{r['case']}": r for r in resumed["correctness"]}
    dead = got[item]
    if dead["status"] != "fail" or "the previous invocation ended while this ran" not in dead["reason"]:
        sys.exit(f"FAIL: the case the run died in: {dead}")
    other = got[f"{missing['component']}/{missing['variant']}/{missing['case']}"]
    if other["status"] != "skip":  # checked again: no GPU here
        sys.exit(f"FAIL: the other missing case: {other}")
    if "check" not in resumed["completed_phases"]:
        sys.exit(f"FAIL: phases after resuming: {resumed['completed_phases']}")
    # REPORT.md names the quarantined variant, the case and the reason (scripts/report.py: stdlib only).
    report = os.path.join(scratch, "REPORT.md")
    scripts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts")
    p = subprocess.run([sys.executable, os.path.join(scripts, "report.py"), path, "--out", report],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: report.py exited {p.returncode}: {p.stderr[-2000:]}")
    with open(report) as f:
        text = f.read()
    if "Quarantined: 1 variant(s)" not in text or "| rmsnorm/cuda | check |" not in text:
        sys.exit("FAIL: REPORT.md does not show the quarantine:\n" + text[:3000])
    print("ok: resumed run failed and quarantined", item)


if __name__ == "__main__":
    main()
