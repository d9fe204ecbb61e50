#!/usr/bin/env python3
"""`dsv3 model pipeline`: the per-rank tables and the Table 2 summary (V3-TR §3.2.1, v3-facts §6) are
printed with the formulas beside the simulated figures, --help explains, bad input is a clear error
naming the field (exit 2), and --json / --timeline write rows with the documented keys
(docs/pipeline.md).

With --plots PYTHON, a bundle holding only studies.pipeline_timeline and studies.pipeline_summary
(those rows, as `dsv3 run` writes them) goes through scripts/plot.py, which must draw one timeline
PNG per schedule, and scripts/report.py, which must show the Table 2 comparison and link the PNGs.

Usage: cli_pipeline_test.py <path to dsv3> <scratch dir> [--plots <python>]
"""
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in correctness/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_util import expect_lines, run  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts")
SCHEDULES = ["1f1b", "zb1p", "dualpipe", "dualpipev"]




def cli(dsv3, scratch):
    # PP 8, 20 micro-batches (the DualPipe figure's): Table 2 with the default chunk times.
    out = run([dsv3, "model", "pipeline"], 0)
    expect_lines(out, [
        r"^1f1b +8 +20 +8 \(PP-1\)\(F\+B\) +21 +21 +21 +8 +8 +1x$",
        r"^zb1p +8 +20 +8 \(PP-1\)\(F\+B-2W\) +7 +7 +7 +8 +8 +1x$",
        r"^dualpipe +8 +20 +8 \(PP/2-1\)\(F&B\+B-3W\) +6 +6 +6 +9 +9 +2x \(2 copies\)$",
        r"^dualpipev +8 +20 +4 \(PP/2-1\)\(F&B\+B-3W\) +6 +6 +6 +9 +9 +2x$",
        r"^dualpipe: PP 8 stages on 8 devices, 20 micro-batches \(half from each end\); makespan 66$",
        r"^ +0 d0:0,d1:7 +60 +6 +9 +9$",
        r"^ +3 3,4 +120 +6 +9 +9$",  # DualPipeV: the last rank holds the turn of the V
    ], "model pipeline")
    expect_lines(run([dsv3, "model", "pipeline", "--help"], 0),
                 [r"Table 2", r"--micro-batches", r"--fb", r"--latency", r"--timeline"], "--help")
    # An overlap gain: the centre ranks' bubble is the formula, the edge ranks' less.
    out = run([dsv3, "model", "pipeline", "--schedule", "dualpipe", "--fb", "2.5", "--summary-only"], 0)
    expect_lines(out, [r"^dualpipe +8 +20 +8 \(PP/2-1\)\(F&B\+B-3W\) +4\.5 +4\.5 +3\.5 +9 +9 "], "--fb 2.5")
    for args, message in [
        (["--schedule", "dualpipe", "--pp", "7"], "pp must be even for dualpipe"),
        (["--schedule", "dualpipe", "--micro-batches", "10"], "micro_batches must be even and >= 2 pp = 16"),
        (["--schedule", "dualpipev", "--micro-batches", "6"], "micro_batches must be >= pp = 8"),
        (["--schedule", "gpipe"], "schedule must be 1f1b, zb1p, dualpipe or dualpipev"),
        (["--w", "2"], "chunk time 'w' must be < 'b'"),
        (["--f=-1"], "chunk time 'f' must be finite and > 0"),
        (["--latency=-0.5"], "chunk time 'latency' must be finite and >= 0"),
    ]:
        err = run([dsv3, "model", "pipeline", *args], 2)
        if message not in err:
            sys.exit(f"FAIL: {args}: expected {message!r} in:\n{err}")

    rows_path = os.path.join(scratch, "pipeline.json")
    events_path = os.path.join(scratch, "timeline.json")
    run([dsv3, "model", "pipeline", "--pp", "4", "--micro-batches", "8", "--json", rows_path,
         "--timeline", events_path, "--summary-only"], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    with open(events_path) as f:
        events = json.load(f)
    if [r["schedule"] for r in rows] != SCHEDULES:
        sys.exit(f"FAIL: --json schedules {[r['schedule'] for r in rows]}")
    for r in rows:
        if r["bubble_max"] != r["table2_bubble"] or r["peak_activations_max"] != r["table2_activations"]:
            sys.exit(f"FAIL: --json row differs from Table 2: {r}")
        if len(r["bubble_per_rank"]) != r["devices"]:
            sys.exit(f"FAIL: --json bubble_per_rank: {r}")
    keys = {"schedule", "rank", "start", "end", "kind", "mb", "dir", "stage"}
    if not events or any(not keys <= set(e) for e in events):
        sys.exit("FAIL: --timeline rows lack " + str(keys))
    if {e["kind"] for e in events} != {"F", "B", "Bi", "W", "F&B"}:
        sys.exit(f"FAIL: --timeline kinds {sorted({e['kind'] for e in events})}")
    print(f"ok: model pipeline tables, errors, {len(rows)} summary rows and {len(events)} timeline rows")

    # The communication-overlap view: 1:1 compute : communication, every all-to-all of an F&B hidden.
    overlap_path = os.path.join(scratch, "overlap.json")
    out = run([dsv3, "model", "pipeline-overlap", "--comm-sms", "0", "--json", overlap_path], 0)
    expect_lines(out, [
        r"^Chunk times: F 4, B 6, W 2 \(alone: all-to-alls exposed\); F&B 6 on two streams \(F \+ B alone 10\)$",
        r"^F&B: compute 6, all-to-all 4, hidden 4 \(100\.0 %\)$",
        r"^1f1b +8 +20 +8 +270 +640 +0 +0\.0%$",
        r"^dualpipe +8 +20 +8 +\d+ +640 +328 +51\.2%$",
    ], "model pipeline-overlap")
    for args, message in [(["--comm-sms", "132"], "comm_sms must be in [0, sms)"), (["--attn=-1"], "attn must be"),
                          (["--hardware", "h800-sxm", "--attn", "2"], "--attn excludes --hardware"),
                          (["--bundle", "b.json"], "--bundle requires --hardware"),
                          (["--hardware", "no-such-gpu"], "no-such-gpu"),
                          (["--hardware", "h800-sxm", "--tokens", "1000"], "multiple of seq_len"),
                          (["--hardware", "h800-sxm", "--model", "llama-3.1-405b"], "has no MoE layers"),
                          (["--hardware", "h800-sxm", "--bundle", os.path.join(scratch, "missing.json")], "missing.json")]:
        err = run([dsv3, "model", "pipeline-overlap", *args], 2)
        if message not in err:
            sys.exit(f"FAIL: pipeline-overlap {args}: expected {message!r} in:\n{err}")
    with open(overlap_path) as f:
        ov = json.load(f)
    if [r["table"] for r in ov] != ["chunk"] + ["step"] * 4 or ov[0]["fb_hidden"] != ov[0]["fb_comm"]:
        sys.exit(f"FAIL: pipeline-overlap --json rows: {ov[:2]}")
    print("ok: model pipeline-overlap")

    # Times from a hardware profile: the printed terms add up to the pieces the view runs with.
    prof_path = os.path.join(scratch, "overlap_h800.json")
    out = run([dsv3, "model", "pipeline-overlap", "--hardware", "h800-sxm", "--json", prof_path], 0)
    expect_lines(out, [r"^deepseek-v3-671b on h800-sxm, compute from the profile", r"^PP 16, 120 micro-batches per step",
                       r"^  dispatch +IB ", r"^  combine +NVLink ", r"^dualpipe +16 +120 +16 "], "pipeline-overlap --hardware")
    with open(prof_path) as f:
        prof = json.load(f)
    chunk = next(r for r in prof if r["table"] == "chunk")
    terms = [r for r in prof if r["table"] == "term"]
    for piece in ("attn", "mlp"):
        total = sum(t["us"] for t in terms if t["piece"] == piece)
        if abs(total - chunk[piece]) > 1e-9 * total:
            sys.exit(f"FAIL: {piece} terms {total} != chunk {chunk[piece]}")
    for piece in ("dispatch", "combine"):
        if chunk[piece] != max(t["us"] for t in terms if t["piece"] == piece):
            sys.exit(f"FAIL: {piece} is not the longer of its links: {chunk[piece]}")
    if any(r.get("hardware") != "h800-sxm" or r.get("compute") != "profile" for r in prof):
        sys.exit("FAIL: --hardware rows are not tagged with hardware and compute")
    print("ok: model pipeline-overlap --hardware (terms add up to the pieces)")
    return rows, events


def plots(dsv3, scratch, python, rows, events):
    run([dsv3, "model", "pipeline", "--json", os.path.join(scratch, "s.json"),
         "--timeline", os.path.join(scratch, "t.json"), "--summary-only"], 0)
    with open(os.path.join(scratch, "s.json")) as f:
        summary = json.load(f)
    with open(os.path.join(scratch, "t.json")) as f:
        timeline = json.load(f)
    bundle_dir = os.path.join(scratch, "bundle")
    os.makedirs(bundle_dir, exist_ok=True)
    bundle = os.path.join(bundle_dir, "bundle.json")
    with open(bundle, "w") as f:
        json.dump({"schema": "dsv3bench.bundle/1", "created_utc": "2026-01-01T00:00:00Z",
                   "studies": {"pipeline_timeline": timeline, "pipeline_summary": summary}}, f)
    plots_dir = os.path.join(bundle_dir, "plots")
    run([python, os.path.join(SCRIPTS, "plot.py"), bundle, "--out", plots_dir], 0)
    for s in SCHEDULES:
        png = os.path.join(plots_dir, f"pipeline_{s}.png")
        if not os.path.isfile(png) or os.path.getsize(png) < 1000:
            sys.exit(f"FAIL: plot.py did not draw {png}")
    report = os.path.join(bundle_dir, "REPORT.md")
    run([python, os.path.join(SCRIPTS, "report.py"), bundle, "--out", report, "--plots", plots_dir], 0)
    with open(report) as f:
        text = f.read()
    expect_lines(text, [
        r"^\| dualpipe \| 8 \| 20 \| 8 \| \(PP/2-1\)\(F&B\+B-3W\) \| 6 \| 6 \| 6 \| 9 \| 9 \| 2× \(2 copies\) \|",
        r"^\| 1f1b \| 8 \| 20 \| 8 \| \(PP-1\)\(F\+B\) \| 21 \| 21 \| 21 \| 8 \| 8 \| 1× \|",
        r"\[pipeline_dualpipe\.png\]\(plots/pipeline_dualpipe\.png\)",
    ], "REPORT.md")
    print("ok: plot.py drew the four timelines; report.py shows Table 2 and links them")


def main():
    dsv3, scratch = sys.argv[1], sys.argv[2]
    python = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--plots" else None
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    rows, events = cli(dsv3, scratch)
    if python:
        plots(dsv3, scratch, python, rows, events)


if __name__ == "__main__":
    main()
