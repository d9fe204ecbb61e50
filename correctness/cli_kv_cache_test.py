#!/usr/bin/env python3
"""`dsv3 model kv-cache`: the printed table reproduces ISCA Table 1 (v3-facts §2.3, G1-G5, G32),
bad input is a clear error (exit 2), --json writes the study rows; with --plots PYTHON, a bundle
holding only studies.kv_cache (those rows) goes through scripts/plot.py and scripts/report.py,
which must draw kv_cache.png and show one table line per model and format, linking the plot.

Usage: cli_kv_cache_test.py <path to dsv3> <scratch dir> [--plots <python with matplotlib>]
"""
import json
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in correctness/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_util import run  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts")
# The ISCA Table 1 lines (id, family, elems/token/layer, BF16 B/token, KB, x V3, FP8 latent B/token, FP8/BF16).
EXPECTED_LINES = [
    r"deepseek-v3-671b +mla_moe +576 +70272 +70\.272 +1\.0000 +40016 +0\.5694",
    r"qwen2\.5-72b +gqa_dense +2048 +327680 +327\.680 +4\.6630 +n/a +n/a",
    r"llama-3\.1-405b +gqa_dense +2048 +516096 +516\.096 +7\.3443 +n/a +n/a",
    r"deepseek-v2-236b +mla_moe +576 +69120 +69\.120 ",
    r"deepseek-v2-lite-16b +mla_moe +576 +31104 +31\.104 ",
    r"ISCA Table 1 prints 7\.28x",
]



def main():
    dsv3, scratch = sys.argv[1], sys.argv[2]
    plot_python = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--plots" else None
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)

    out = run([dsv3, "model", "kv-cache"], 0)
    for pattern in EXPECTED_LINES:
        if not re.search(pattern, out):
            sys.exit(f"FAIL: no line matching {pattern!r} in:\n{out}")
    for args, message in ((["--context", "0"], "context length 0 must be >= 1"),
                          (["--context=-3"], "context length -3 must be >= 1"),
                          (["no-such-model"], "no model config 'no-such-model'; available: ")):
        err = run([dsv3, "model", "kv-cache", *args], 2)
        if message not in err:
            sys.exit(f"FAIL: {args}: expected {message!r} in:\n{err}")

    rows_path = os.path.join(scratch, "kv.json")
    run([dsv3, "model", "kv-cache", "--json", rows_path], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    v3 = [r for r in rows if r["model"] == "deepseek-v3-671b" and r["context"] == 32768]
    if sorted((r["format"], r["bytes"]) for r in v3) != [("bf16", 70272 * 32768), ("fp8_latent", 40016 * 32768)]:
        sys.exit(f"FAIL: V3 rows at 32768: {v3}")
    print(f"ok: table, errors and {len(rows)} JSON rows")
    if not plot_python:
        return

    bundle = os.path.join(scratch, "bundle.json")
    with open(bundle, "w") as f:
        json.dump({"schema": "dsv3bench.bundle/1", "created_utc": "2026-01-01T00:00:00Z",
                   "studies": {"kv_cache": rows}}, f)
    plots, report = os.path.join(scratch, "plots"), os.path.join(scratch, "REPORT.md")
    run([plot_python, os.path.join(SCRIPTS, "plot.py"), bundle, "--out", plots], 0)
    if not os.path.getsize(os.path.join(plots, "kv_cache.png")):
        sys.exit("FAIL: empty kv_cache.png")
    run([plot_python, os.path.join(SCRIPTS, "report.py"), bundle, "--out", report, "--plots", plots], 0)
    with open(report) as f:
        text = f.read()
    pairs = {(r["model"], r["format"]) for r in rows}
    lines = [ln for ln in text.splitlines() if re.match(r"\| \S+ \| (mla_moe|gqa_dense) \| (bf16|fp8_latent) \|", ln)]
    if len(lines) != len(pairs):
        sys.exit(f"FAIL: {len(lines)} kv_cache table lines in REPORT.md, expected {len(pairs)} (one per model and format)")
    for needle in ("| deepseek-v3-671b | mla_moe | fp8_latent | 576 | 656 | 40016 | 40.016 |",
                   "Plot: [kv_cache.png](plots/kv_cache.png)", "![kv_cache](plots/kv_cache.png)"):
        if needle not in text:
            sys.exit(f"FAIL: {needle!r} not in REPORT.md")
    print("ok: kv_cache.png drawn and REPORT.md has the kv_cache table and its link")


if __name__ == "__main__":
    main()
