#!/usr/bin/env python3
"""`dsv3 model decode-limit | topology | train-cost`: the printed tables carry the paper's figures
(ISCA §2.3.2, Tables 2-4; v3-facts §7.3, §7.4, §8.1), --help explains, bad input is a clear error
naming the field (exit 2), and --json writes rows with the documented keys (docs/netmodel.md).

Usage: cli_netmodel_test.py <path to dsv3> <scratch dir>
"""
import json
import os
import re
import shutil
import subprocess
import sys

DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "datasets")


def run(cmd, expect_rc):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect_rc}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def expect_lines(out, patterns, what):
    for pattern in patterns:
        if not re.search(pattern, out):
            sys.exit(f"FAIL: {what}: no line matching {pattern!r} in:\n{out}")


def expect_errors(dsv3, sub, cases):
    for args, message in cases:
        err = run([dsv3, "model", sub, *args], 2)
        if message not in err:
            sys.exit(f"FAIL: {sub} {args}: expected {message!r} in:\n{err}")


def decode_limit(dsv3, scratch):
    out = run([dsv3, "model", "decode-limit"], 0)
    expect_lines(out, [
        r"6048000 B / 50 GB/s = 40\.320 us dispatch \+ 80\.640 us combine = 120\.960 us +\(paper 120\.96 us\)",
        r"2 x 120\.960 us = 241\.920 us +\(paper 241\.92 us\)",
        r"61 x 241\.920 us = 14\.75712 ms +\(paper 14\.76 ms\)",
        r"1 / TPOT = 67\.76 +\(paper 67\)",
        r"= 6\.720 us +\(paper 6\.72 us\)",
        r"1 / TPOT = 1219\.75 +\(paper 1200\)",
        r"h800-sxm/scale_out +scale_out +50\.0 .* 14\.7571 +67\.8 +-",
        r"gb200-nvl72/scale_up +scale_up +900\.0 .* 0\.8198 +1219\.8 +no",
    ], "decode-limit")
    help_text = run([dsv3, "model", "decode-limit", "--help"], 0)
    expect_lines(help_text, [r"ISCA §2\.3\.2", r"--tokens-per-device", r"--latency-us"], "decode-limit --help")

    bad = os.path.join(scratch, "bad-profile.json")
    with open(os.path.join(DATASETS, "hardware", "h800-sxm.json")) as f:
        profile = json.load(f)
    del profile["nics_per_gpu"]
    with open(bad, "w") as f:
        json.dump(profile, f)
    expect_errors(dsv3, "decode-limit", [
        (["--tokens-per-device", "0"], "tokens_per_device must be positive, got 0"),
        (["--layers=-2"], "n_layers must be positive, got -2"),
        (["--bandwidth-gbs", "0"], "bandwidth_gbs must be positive"),
        (["--hardware", bad], "missing field 'nics_per_gpu'"),
        (["--hardware", "no-such-gpu"], "no hardware profile 'no-such-gpu'"),
        (["--model", "qwen2.5-72b"], "needs an MoE config"),
    ])

    rows_path = os.path.join(scratch, "decode_limit.json")
    out = run([dsv3, "model", "decode-limit", "--model", "deepseek-v3-671b", "--hardware", "h800-sxm",
               "--bandwidth-gbs", "100", "--json", rows_path], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    if [r["case"] for r in rows] != ["paper-ib-400g", "paper-gb200-nvl72", "h800-sxm/scale_out", "h800-sxm/scale_up",
                                     "custom-100.0gbs"]:
        sys.exit(f"FAIL: decode-limit rows: {[r['case'] for r in rows]}")
    ib = rows[0]
    if ib["hidden"] != 7168 or ib["step_bytes"] != 3 * 32 * 9 * 7168 or ib["paper"]["tpot_ms"] != 14.76:
        sys.exit(f"FAIL: --model deepseek-v3-671b row: {ib}")
    print(f"ok: decode-limit table, errors and {len(rows)} JSON rows")


def main():
    dsv3, scratch = sys.argv[1], sys.argv[2]
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    decode_limit(dsv3, scratch)


if __name__ == "__main__":
    main()
