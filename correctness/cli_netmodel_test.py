#!/usr/bin/env python3
"""`dsv3 model decode-limit | topology | train-cost | node-limit`: the printed tables carry the paper's figures
(ISCA §2.3.2, Tables 2-4; v3-facts §7.3, §7.4, §8.1), --help explains, bad input is a clear error
naming the field (exit 2), and --json writes rows with the documented keys (docs/netmodel.md).

With --report PYTHON, a bundle holding only studies.decode_limit, studies.topology and
studies.train_cost, studies.node_limit (those JSON rows, as `dsv3 run` writes them) goes through
scripts/plot.py (node_limit.png, decode_limit.png, topology.png must be drawn) and scripts/report.py,
which must show the decode-limit table per hardware profile and the topology table.

Usage: cli_netmodel_test.py <path to dsv3> <scratch dir> [--report <python>]
"""
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in correctness/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_util import expect_lines, run  # noqa: E402

DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "datasets")
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts")




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


def topology(dsv3, scratch):
    out = run([dsv3, "model", "topology"], 0)
    expect_lines(out, [
        r"FT2 +two-layer fat-tree +64 +1 +2048 +96 +2048 +8\.99 +9 +4\.390 +4\.39",
        r"MPFT +multi-plane fat-tree \(8 x FT2\) +64 +8 +16384 +768 +16384 +71\.93 +72 +4\.390 +4\.39",
        r"FT3 +three-layer fat-tree +64 +1 +65536 +5120 +131072 +491\.00 +491 +7\.492 +7\.5",
        r"SF +Slim Fly \(ISCA Table 3's counts\) +- +1 +32928 +1568 +32928 +146\.57 +146 ",
        r"DF +Dragonfly \(ISCA Table 3's counts\) +- +1 +261632 +16352 +384272 +1550\.06 +1522 ",
        r"FITTED, not recovered",
        r"82427\.81 \$ per switch and 526\.20 \$ per link",
    ], "topology")
    expect_lines(run([dsv3, "model", "topology", "--help"], 0), [r"ISCA Table 3", r"--switch-price"], "topology --help")
    expect_errors(dsv3, "topology", [
        (["--radix", "63"], "radix must be even and >= 2"),
        (["--radix", "0"], "radix must be even and >= 2"),
        (["--planes", "0"], "planes must be positive, got 0"),
        (["--switch-price=-1"], "switch_usd (price per switch) must be >= 0"),
    ])
    rows_path = os.path.join(scratch, "topology.json")
    run([dsv3, "model", "topology", "--radix", "32", "--planes", "2", "--switch-price", "1000", "--link-price", "10",
         "--json", rows_path], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    ft2 = rows[0]
    if (ft2["topology"], ft2["endpoints"], ft2["switches"], ft2["links"], ft2["cost_usd"], ft2["paper"]) != \
            ("FT2", 512, 48, 512, 48 * 1000 + 512 * 10, None) or rows[1]["endpoints"] != 1024:
        sys.exit(f"FAIL: topology rows: {rows[:2]}")
    if rows[3]["counts_from"] != "isca_table3" or rows[3]["paper"]["cost_musd"] != 146:
        sys.exit(f"FAIL: SF row: {rows[3]}")
    print(f"ok: topology table, errors and {len(rows)} JSON rows")


def train_cost(dsv3, scratch):
    out = run([dsv3, "model", "train-cost"], 0)
    expect_lines(out, [
        r"deepseek-v3-671b +mla_moe +36624596992 +219\.748 +30\.702 +250\.450 +281\.152 +250",
        r"deepseek-v2-236b +mla_moe +20850769920 +125\.105 +30\.199 +155\.304 +185\.503 +155",
        r"llama-3\.1-405b +gqa_dense +403747897344 +2422\.487 +50\.734 +2473\.222 .* +2448",
        r"qwen2\.5-72b +gqa_dense +71458357248 +428\.750 .* +394",
        r"deepseek-v3-671b: reproduces \(250\.45 prints as 250\)",
        r"llama-3\.1-405b: does not reproduce: .*half the causal attention term gives 2447\.85",
        r"qwen2\.5-72b: does not reproduce: 6 x N_mm alone is 428\.75 > 394",
        r"isca-table4-mpft +19\.926 +2048 +62914560 +272\.800 +386\.1 +433\.5 ",
        r"paper +272\.80 +385 +432 +- +43\.73%",
        r"isca-table4-mrft +19\.946 +2048 +62914560 +272\.527 ",
    ], "train-cost")
    expect_lines(run([dsv3, "model", "train-cost", "--help"], 0), [r"ISCA Table 2", r"--step-s"], "train-cost --help")
    expect_errors(dsv3, "train-cost", [
        (["--step-s", "0"], "step_s must be positive"),
        (["--gpus", "0"], "gpus must be positive, got 0"),
        (["--seq-len=-1"], "seq_len must be positive, got -1"),
        (["--hardware", "no-such-gpu"], "no hardware profile 'no-such-gpu'"),
        (["no-such-model"], "no model config 'no-such-model'"),
    ])
    rows_path = os.path.join(scratch, "train_cost.json")
    run([dsv3, "model", "train-cost", "deepseek-v3-671b", "qwen2.5-72b", "--json", rows_path], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    tables = [r["table"] for r in rows]
    if tables != ["gflops_per_token", "gflops_per_token", "step", "step"]:
        sys.exit(f"FAIL: train-cost rows: {tables}")
    if abs(rows[0]["gflops"] - 250.449887232) > 1e-9 or rows[0]["paper_gflops"] != 250 or \
            rows[2]["tokens_per_step"] != 62914560 or rows[2]["paper"]["tokens_per_day_b"] != 272.80:
        sys.exit(f"FAIL: train-cost rows: {rows}")
    print(f"ok: train-cost table, errors and {len(rows)} JSON rows")


def node_limit(dsv3, scratch):
    out = run([dsv3, "model", "node-limit", "--tokens", "512"], 0)
    expect_lines(out, [
        r"dispatch 7168 x 1 B \+ 0 B = 7168 B, combine 7168 x 2 B = 14336 B; together 21504 B",
        r"(?m)^ +1 +1\.000 +1 ",             # M = 1: exactly one node per token
        r"(?m)^ +4c +[0-9.]+ +4 ",            # V3's limit: never more than 4 nodes
        r"(?m)^ +8\* .* 1\.000 +1\.000 .* 1\.0000$",  # unrestricted: ratios 1
    ], "node-limit")
    help_text = run([dsv3, "model", "node-limit", "--help"], 0)
    expect_lines(help_text, [r"V3-TR", r"--tokens", r"--seed", r"--skew", r"--json"], "node-limit --help")
    expect_errors(dsv3, "node-limit", [
        (["--tokens", "0"], "tokens must be >= 1, got 0"),
        (["--skew=-1"], "skew must be finite and >= 0"),
        (["--ranks", "48"], "ranks = 48 does not divide experts = 256"),
    ])
    rows_path = os.path.join(scratch, "node_limit.json")
    run([dsv3, "model", "node-limit", "--tokens", "256", "--seed", "3", "--json", rows_path], 0)
    with open(rows_path) as f:
        rows = json.load(f)
    keys = {"node_limit", "unrestricted", "mean_nodes_per_token", "max_nodes_per_token", "ib_bytes_per_token",
            "nvlink_bytes_per_token", "ib_bytes_per_token_no_forwarding", "ib_vs_unrestricted", "score_kept"}
    if [r["node_limit"] for r in rows] != list(range(1, 9)) or not all(keys <= set(r) for r in rows) \
            or any(r["max_nodes_per_token"] > r["node_limit"] for r in rows) or rows[0]["seed"] != 3:
        sys.exit(f"FAIL: node-limit rows: {rows}")
    print(f"ok: node-limit table, errors and {len(rows)} JSON rows")


def report(dsv3, scratch, python):
    studies = {}
    for name, sub in (("decode_limit", "decode-limit"), ("topology", "topology"), ("train_cost", "train-cost"),
                      ("node_limit", "node-limit")):
        path = os.path.join(scratch, f"study_{name}.json")
        run([dsv3, "model", sub, "--json", path], 0)
        with open(path) as f:
            studies[name] = json.load(f)
    # The calibrated models from a small measured bundle (a GPU's rows, made up: 70 us of compute per
    # micro-batch, longer than NVL72's 6.88 us all-to-alls, shorter than 400G IB's 123.86 us).
    def row(name, us):
        return {"name": name + "/manual_time", "run_name": name + "/manual_time", "real_time": us, "time_unit": "us"}
    measured = os.path.join(scratch, "measured.json")
    with open(measured, "w") as f:
        json.dump({"device": {"present": True, "name": "Test GPU"}, "benchmarks": [
            row("mla/cuda/decode b=32 sq=1 h=128 bf16 len~4096 normal", 40),
            row("fp8_gemm/cublaslt_block/dense m=288 n=4096 k=7168 f32 out=bf16 normal", 20),
            row("fp8_gemm/cublaslt_block/dense m=288 n=7168 k=2048 f32 out=bf16 normal", 10),
            row("mla/cublas_prefill/prefill b=1 s=4096 h=128 normal", 900)] +
            [row(f"fp8_gemm/cublaslt_block/dense m=4096 n={n} k={k} f32 out=bf16 normal", 50)
             for n, k in ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))]}, f)
    path = os.path.join(scratch, "study_decode_limit_calibrated.json")
    run([dsv3, "model", "decode-limit", "--model", "deepseek-v3-671b", "--bundle", measured, "--json", path], 0)
    with open(path) as f:
        studies["decode_limit_calibrated"] = json.load(f)
    studies["pipeline_overlap"] = []
    for extra in ([], ["--bundle", measured]):
        path = os.path.join(scratch, "study_pipeline_overlap.json")
        run([dsv3, "model", "pipeline-overlap", "--hardware", "h800-sxm", *extra, "--json", path], 0)
        with open(path) as f:
            studies["pipeline_overlap"] += json.load(f)
    bundle = os.path.join(scratch, "bundle.json")
    with open(bundle, "w") as f:
        json.dump({"schema": "dsv3bench.bundle/1", "created_utc": "2026-01-01T00:00:00Z", "studies": studies}, f)
    out = os.path.join(scratch, "REPORT.md")
    run([python, os.path.join(SCRIPTS, "report.py"), bundle, "--out", out], 0)
    with open(out) as f:
        text = f.read()
    hardware = [n[:-5] for n in sorted(os.listdir(os.path.join(DATASETS, "hardware"))) if n.endswith(".json")]
    needles = ["### decode_limit", "### topology", "### train_cost", "### node_limit",
               "| 4 (config) | 3.965 | 4 | 2.02 | 74560 | 140747 | 141004 | 0.746 | 0.590 | 0.9943 |",
               "| 8 (unrestricted) | 5.298 | 8 | 1.51 | 99965 | 144412 | 144832 | 1.000 | 0.451 | 1.0000 |",
               "| paper-ib-400g | paper | scale_out | 50.0 | 120.960 | 241.920 | 14.7571 | 67.8 | — | 120.96 / 14.76 / 67 |",
               "| paper-gb200-nvl72 | paper | scale_up | 900.0 | 6.720 | 13.440 | 0.8198 | 1219.8 | no | 6.72 / 0.82 / 1200 |",
               "| FT2 | formula | 64 | 1 | 2048 | 96 | 2048 | 8.99 | 9 | 4.390 | 4.39 |",
               "| MPFT | formula | 64 | 8 | 16384 | 768 | 16384 | 71.93 | 72 | 4.390 | 4.39 |",
               "| FT3 | formula | 64 | 1 | 65536 | 5120 | 131072 | 491.00 | 491 | 7.492 | 7.5 |",
               "| DF | isca_table3 | n/a | 1 | 261632 | 16352 | 384272 | 1550.06 | 1522 | 5.925 | 5.8 |",
               "| isca-table4-mpft | 19.926 | 272.800 | 386.1 | 433.5 | 43.83 | 272.80 / 385 / 432 / 43.73 |"]
    needles += [f"| {h}/{link} | {h} | {link} |" for h in hardware for link in ("scale_out", "scale_up")]
    needles += ["### decode_limit_calibrated", "measured on Test GPU", "| attention (MLA decode, cache ~4096 tokens) | cuda | 40.000 |",
                "| paper-ib-400g | paper | scale_out | 123.863 | 70.000 | 247.726 | network |",
                "| paper-gb200-nvl72 | paper | scale_up | 6.881 | 70.000 | 140.000 | compute |",
                "### pipeline_overlap", "| h800-sxm | profile |", "| h800-sxm | bundle (Test GPU) | 1100.0 | 900.0 |"]
    for needle in needles:
        if needle not in text:
            sys.exit(f"FAIL: {needle!r} not in REPORT.md:\n{text}")
    print(f"ok: REPORT.md has the decode-limit table ({len(hardware)} profiles), the topology, train-cost and node-limit tables, "
          "the calibrated decode limit and the overlap view")
    plots = os.path.join(scratch, "plots")
    run([python, os.path.join(SCRIPTS, "plot.py"), bundle, "--out", plots], 0)
    for png in ("node_limit.png", "decode_limit.png", "topology.png"):
        if not os.path.isfile(os.path.join(plots, png)):
            sys.exit(f"FAIL: plot.py wrote no {png}")
    run([python, os.path.join(SCRIPTS, "report.py"), bundle, "--out", out, "--plots", plots], 0)
    with open(out) as f:
        text = f.read()
    for png in ("node_limit.png", "decode_limit.png", "topology.png"):
        if png not in text:
            sys.exit(f"FAIL: REPORT.md does not link {png}")
    print("ok: plot.py drew node_limit.png, decode_limit.png and topology.png; REPORT.md links them")


def main():
    dsv3, scratch = sys.argv[1], sys.argv[2]
    report_python = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--report" else None
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    decode_limit(dsv3, scratch)
    topology(dsv3, scratch)
    train_cost(dsv3, scratch)
    node_limit(dsv3, scratch)
    if report_python:
        report(dsv3, scratch, report_python)


if __name__ == "__main__":
    main()
