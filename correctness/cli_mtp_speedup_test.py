#!/usr/bin/env python3
"""scripts/mtp_speedup.py: the MTP decode speedup model from a bundle's benchmark rows.

A bundle with known times (MLA decode at s_q 1 and 2, the MoE layer at B and 2B tokens, for a
GPU variant and the CPU reference, and the tiny LM's measured acceptance) must give
speedup = (1 + a) t1 / t2 with the GPU variant preferred; scripts/report.py must show the section
and scripts/plot.py draw mtp_speedup.png. A bundle without the pairs gets a note, not an error.

Usage: cli_mtp_speedup_test.py <scratch dir>   (run with a Python that has matplotlib)
"""
import json
import os
import shutil
import subprocess
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts")
sys.path.insert(0, SCRIPTS)
import mtp_speedup  # noqa: E402


def row(component, variant, case, ns):
    return {"name": f"{component}/{variant}/{case}/manual_time", "run_name": f"{component}/{variant}/{case}/manual_time",
            "real_time": ns / 1000.0, "time_unit": "us", "iterations": 1}


def bundle():
    rows = []
    for variant, f in (("cuda", 1.0), ("ref", 1000.0)):
        rows += [row("mla", variant, "decode b=4 sq=1 h=128 bf16 len~4096 normal", 100 * f),
                 row("mla", variant, "decode b=4 sq=2 h=128 bf16 len~4096 normal", (110 if variant == "cuda" else 200) * f),
                 row("moe", variant, "layer deepseek-v3-671b t=4 dim=512 inter=256 normal", 200 * f),
                 row("moe", variant, "layer deepseek-v3-671b t=8 dim=512 inter=256 normal", (260 if variant == "cuda" else 400) * f)]
    rows.append(row("mla", "cuda", "decode b=128 sq=1 h=128 bf16 len~4096 normal", 50))  # no s_q 2 twin: unpaired
    return {"schema": "dsv3bench.bundle/1", "benchmarks": rows, "created_utc": "2026-11-23T00:00:00Z",
            "device": {"present": True, "name": "test GPU"},
            "studies": {"fp8_train_lm": [{"kind": "summary", "mtp_acceptance_bf16": 0.5, "mtp_acceptance_fp8": 0.6,
                                          "mtp_acceptance_t1_bf16": 0.8, "mtp_acceptance_t1_fp8": 0.9}]}}


def fail(msg):
    sys.exit("FAIL: " + msg)


def main():
    scratch = sys.argv[1]
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    b = bundle()
    b["_label"] = "test"
    pairs = mtp_speedup.speedup_pairs(b)
    if len(pairs) != 2:
        fail(f"expected a pair per variant of the one paired case, got {pairs}")
    cuda = pairs[0]
    if cuda["variant"] != "cuda":
        fail(f"the GPU variant must come first: {[p['variant'] for p in pairs]}")
    t1, t2 = 100 + 200, 110 + 260
    if abs(cuda["ratio"] - t2 / t1) > 1e-12:
        fail(f"ratio {cuda['ratio']} != {t2 / t1}")
    for a in mtp_speedup.ACCEPTANCE:
        if abs(cuda["speedup"][a] - (1 + a) * t1 / t2) > 1e-12:
            fail(f"speedup at {a}: {cuda['speedup'][a]} != {(1 + a) * t1 / t2}")
    ref = pairs[1]
    if abs(ref["ratio"] - 2.0) > 1e-12:  # (200 + 400) / (100 + 200) x 1000 / 1000
        fail(f"reference ratio {ref['ratio']} != 2")

    path = os.path.join(scratch, "bundle.json")
    with open(path, "w") as f:
        json.dump(bundle(), f)
    for script in ("plot.py", "report.py"):
        p = subprocess.run([sys.executable, os.path.join(SCRIPTS, script), path], capture_output=True, text=True)
        if p.returncode != 0:
            fail(f"{script} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    if not os.path.isfile(os.path.join(scratch, "plots", "mtp_speedup.png")):
        fail("plot.py wrote no mtp_speedup.png")
    report = open(os.path.join(scratch, "REPORT.md")).read()
    expect = f"{(1 + mtp_speedup.ACCEPTANCE[8]) * t1 / t2:.2f}x"  # at 90%
    for needle in ("## MTP decode speedup", "| cuda | b=4 h=128 bf16 len~4096", expect, "mtp_speedup.png",
                   "tiny LM fp8 T=1 90.0%"):
        if needle not in report:
            fail(f"REPORT.md lacks {needle!r}:\n{report[report.find('## MTP'):][:2000]}")

    empty = os.path.join(scratch, "empty.json")
    with open(empty, "w") as f:
        json.dump({"schema": "dsv3bench.bundle/1", "benchmarks": [], "created_utc": "2026-11-23T00:00:00Z"}, f)
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "report.py"), empty, "--out", os.path.join(scratch, "E.md")],
                       capture_output=True, text=True)
    if p.returncode != 0 or "No MLA decode pair" not in open(os.path.join(scratch, "E.md")).read():
        fail(f"a bundle without pairs must get a note:\n{p.stdout}{p.stderr}")
    print("mtp speedup model: ok")


if __name__ == "__main__":
    main()
