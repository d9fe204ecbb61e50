#!/usr/bin/env python3
"""Write a Markdown report (REPORT.md) from dsv3bench result bundles (docs/bundle-schema.md).

Sections: machine, ceilings, correctness summary with every failed case and its worst
element, the full correctness table, benchmarks (Google Benchmark median rows when
repetitions ran), numerics studies (studies.kv_cache as one line per model and cache format,
linking kv_cache.png; the calculators' studies.decode_limit per case and hardware profile,
studies.topology as ISCA Table 3, studies.train_cost as Tables 2 and 4, each beside the paper's
figures; studies.pipeline_summary as V3-TR Table 2 and studies.pipeline_timeline linking its PNGs,
scripts/report_pipeline.py; studies.decode_limit_calibrated and studies.pipeline_overlap, the models
calibrated with the bundle's own benchmarks, scripts/report_calibrated.py; studies.fp8_train_lm as the final held-out evaluation per recipe and seed,
the FP8 loss gap and MTP acceptance beside V3's claims, linking fp8_train_lm.png, scripts/report_train.py),
the MTP decode speedup model from the MLA decode and MoE layer benchmarks (scripts/mtp_speedup.py), the
MPI jobs (the ep case over processes and the MPI all-to-all sweep, scripts/report_mpi.py), and links to the PNGs that scripts/plot.py wrote.
With several bundles the first is the baseline: benchmarks are lined up by name with
the speedup against it, and correctness verdicts are lined up by case.
Nothing is re-run; the report comes from the bundles only.
"""
import argparse
import json
import math
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import UserError, atomic_write, benchmark_rows, finite, fixed, fmt_num, load_bundles, main_guard  # noqa: E402
from report_pipeline import pipeline_summary_table, pipeline_timeline_table  # noqa: E402
from report_train import fp8_train_lm_table, train_step_section  # noqa: E402
from report_calibrated import decode_limit_calibrated_table, pipeline_overlap_table  # noqa: E402
from mtp_speedup import speedup_table  # noqa: E402
from report_mpi import mpi_section  # noqa: E402

COLLAPSE_ROWS = 40
CPU_ONLY = "CPU-only run: no CUDA variant ran; CUDA rows are skipped, with reasons"
PLOT_ORDER = ["ceilings.png", "correctness.png", "fp8_scaling.png", "fp8_equal_bits.png", "fp8_accum.png",
              "kv_cache.png", "moe_balance.png", "fp8_train_lm.png", "mtp_speedup.png",
              "node_limit.png", "decode_limit.png", "topology.png"]


def cell(v):
    """A Markdown table cell: numbers via fmt_num, lists joined, objects as JSON, text with | < and newlines escaped."""
    if isinstance(v, list):
        v = "; ".join(x if isinstance(x, str) else json.dumps(x) for x in v)
    elif isinstance(v, dict):
        v = json.dumps(v)
    if not isinstance(v, str):
        v = fmt_num(v)
    return v.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ") or " "


def table(header, rows, collapse_label=None):
    """Markdown table lines; wrapped in <details> when it has more than COLLAPSE_ROWS rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if len(rows) > COLLAPSE_ROWS:
        summary = f"{collapse_label or 'table'}: {len(rows)} rows (click to expand)"
        lines = [f"<details><summary>{summary}</summary>", ""] + lines + ["", "</details>"]
    return lines + [""]


def joined(d, keys, sep=", "):
    return sep.join(f"{k} {d[k]}" for k in keys if d.get(k) not in (None, ""))


PHASES = ("environment", "ceilings", "check", "studies", "bench", "mpi", "calibrated")  # dsv3 run's phases, in order


def machine_section(bundles):
    rows = {"device": [], "host": [], "toolchain": [], "git commit": [], "created (UTC)": [], "phases": [],
            "bundle": []}
    for b in bundles:
        dev, host, tc, git = (b.get(k) or {} for k in ("device", "host", "toolchain", "git"))
        if dev.get("present"):
            extra = ", ".join(t.format(dev[k]) for k, t in (
                ("compute_capability", "sm {}"), ("sms", "{} SMs"), ("memory_gib", "{} GiB"),
                ("driver_version", "driver {}"), ("runtime_version", "runtime {}")) if dev.get(k) is not None)
            rows["device"].append(f"{dev.get('name', '?')} ({extra})" if extra else dev.get("name", "?"))
        else:
            rows["device"].append(f"none: {dev.get('reason') or 'no reason given'}")
        hw = [host.get("hostname"), host.get("cpu_model"),
              host.get("logical_cores") is not None and f"{host['logical_cores']} logical cores",
              host.get("memory_gib") is not None and f"{fmt_num(host['memory_gib'])} GiB", host.get("os")]
        rows["host"].append(", ".join(str(x) for x in hw if x))
        rows["toolchain"].append(joined(tc, ["cxx", "nvcc", "cublas", "nccl", "eigen", "build_type",
                                             "cuda_architectures"]) + f", cuda_enabled {fmt_num(tc.get('cuda_enabled'))}")
        commit = git.get("commit") or "unknown"
        rows["git commit"].append(commit + (" (dirty)" if git.get("dirty") else ""))
        rows["created (UTC)"].append(b.get("created_utc") or "unknown")
        done = b.get("completed_phases", [])
        missing = [p for p in PHASES if p not in done]
        runs = len(b.get("invocations", []))
        rows["phases"].append(", ".join(done) + (f"; **incomplete**, not completed: {', '.join(missing)}" if missing else "")
                              + (f" ({runs} invocations, see the bundle's `invocations`)" if runs > 1 else ""))
        rows["bundle"].append(b["_path"])
    out = ["## Machine", ""]
    out += table([" "] + [cell(b["_label"]) for b in bundles], [[k] + [cell(v) for v in vs] for k, vs in rows.items()])
    return out


def ceilings_section(bundles):
    names = list(dict.fromkeys((c["name"], c["unit"]) for b in bundles for c in b.get("ceilings", [])))
    if not names:
        return ["## Ceilings", "", "No ceilings in the bundle(s).", ""]
    rows = []
    for name, unit in names:
        vals, method = [], ""
        for b in bundles:
            c = next((c for c in b.get("ceilings", []) if (c["name"], c["unit"]) == (name, unit)), None)
            vals.append(cell(c["value"]) if c else "—")
            method = method or (c or {}).get("method") or ""
        rows.append([cell(name), cell(unit)] + vals + [cell(method)])
    return ["## Ceilings", ""] + table(["ceiling", "unit"] + [cell(b["_label"]) for b in bundles] + ["method"], rows)


def verdict(row, out):
    if row["status"] == "skip":
        return f"skip: {row.get('reason') or 'no reason given'}"
    if out is None:
        return row["status"] if row["status"] == "pass" else f"**FAIL**: {row.get('reason') or ''}"
    return "pass" if out.get("pass", row["status"] == "pass") else "**FAIL**"


def index_text(idx):
    if isinstance(idx, list):
        return "[" + ", ".join(map(str, idx)) + "]"
    return "n/a" if idx is None else str(idx)


def correctness_section(bundles):
    out = ["## Correctness", ""]
    if not any(b.get("correctness") for b in bundles):
        return out + ["No correctness results in the bundle(s).", ""]
    many = len(bundles) > 1
    for b in bundles:
        rows = b.get("correctness", [])
        if many:
            out += [f"### {b['_label']}", ""]
        if not rows:
            out += ["No correctness results in this bundle.", ""]
            continue
        counts = {}
        for r in rows:
            counts.setdefault((r["component"], r["variant"]), {"pass": 0, "fail": 0, "skip": 0})[r["status"]] += 1
        total = {s: sum(c[s] for c in counts.values()) for s in ("pass", "fail", "skip")}
        out += [f"Summary: {total['pass']} pass, {total['fail']} fail, {total['skip']} skip.", ""]
        quarantined = b.get("quarantine") or []
        if quarantined:  # core/device_guard.hpp: a kernel that faulted, hung, or was running when the run died
            out += [f"**Quarantined: {len(quarantined)} variant(s)** stopped running after the case named; "
                    "their later cases are skipped with this reason.", ""]
            out += table(["variant", "phase", "case", "reason"],
                         [[cell(q.get("variant", "")), cell(q.get("phase", "")), cell(q.get("item", "")), cell(q.get("reason", ""))]
                          for q in quarantined])
        out += table(["component", "variant", "pass", "fail", "skip"],
                     [[cell(k[0]), cell(k[1]), str(c["pass"]), f"**{c['fail']}**" if c["fail"] else "0", str(c["skip"])]
                      for k, c in counts.items()])
        reasons = {}
        for r in rows:
            if r["status"] == "skip":
                reasons[r.get("reason") or "no reason given"] = reasons.get(r.get("reason") or "no reason given", 0) + 1
        if reasons:
            out += ["Skip reasons:", ""] + [f"- {n} case(s): {cell(why)}" for why, n in reasons.items()] + [""]

        failed = []
        for r in rows:
            if r["status"] != "fail":
                continue
            bad = [o for o in r.get("outputs", []) if not o.get("pass", False)] or [{}]  # {}: no output listed
            for o in bad:
                w = o.get("worst") or {}
                failed.append([cell(r["component"]), cell(r["variant"]), cell(r["case"]), cell(o.get("name", "—")),
                               cell(index_text(w.get("index"))), cell(w.get("got")), cell(w.get("ref")),
                               cell(o.get("max_abs")), cell(o.get("max_rel")),
                               cell(f"{o['mismatches']}/{o.get('n', '?')}" if "mismatches" in o else "n/a"),
                               cell(r.get("reason") or "")])
        hdr = "#### Failed cases" if many else "### Failed cases"
        if failed:
            out += [hdr, ""] + table(["component", "variant", "case", "output", "worst index", "got", "ref", "max_abs",
                                      "max_rel", "mismatches", "reason"], failed, "failed outputs")
        else:
            out += [hdr, "", "None.", ""]

        full = []
        for r in rows:
            if r.get("status") == "skip":
                continue  # counted, with their reasons, above
            for o in r.get("outputs", []) or [None]:
                o2 = o or {}
                full.append([cell(r["component"]), cell(r["case"]), cell(r["variant"]), cell(o2.get("name", "—")),
                             cell(o2.get("max_abs")), cell(o2.get("max_rel")), cell(o2.get("cos_dist")),
                             cell(o2.get("tolerance", "—")), cell(verdict(r, o))])
        out += ["#### All cases" if many else "### All cases", "", "Every output of every case that ran (skipped cases are counted above).", ""]
        out += table(["component", "case", "variant", "output", "max_abs", "max_rel", "cos_dist", "tolerance", "verdict"],
                     full, "correctness outputs")
    if many:
        keys = list(dict.fromkeys((r["component"], r["variant"], r["case"]) for b in bundles for r in b.get("correctness", [])))
        status = [{(r["component"], r["variant"], r["case"]): r["status"] for r in b.get("correctness", [])} for b in bundles]
        out += ["### Verdicts side by side", ""]
        out += table(["component", "variant", "case"] + [cell(b["_label"]) for b in bundles],
                     [[cell(k[0]), cell(k[1]), cell(k[2])] + [s.get(k, "—") for s in status] for k in keys],
                     "verdicts by case")
    return out


def time_cell(r):
    if r["error"]:
        return cell(f"error: {r['error']}")
    return f"{fmt_num(r['time'])} {r['unit']}" if finite(r["time"]) is not None else "n/a"


def benchmark_section(bundles):
    out = ["## Benchmarks", ""]
    per_bundle = [benchmark_rows(b) for b in bundles]
    if not any(per_bundle):
        return out + ["No benchmark results in the bundle(s).", ""]
    for b, rows in zip(bundles, per_bundle):
        if len(bundles) > 1:
            out += [f"### {b['_label']}", ""]
        if not rows:
            out += ["No benchmark results in this bundle.", ""]
            continue
        if any("aggregate_name" in r for r in b.get("benchmarks", [])):
            out += ["Repetitions ran: the median row of each benchmark is shown.", ""]
        out += table(["name", "time", "GBps", "frac_ceiling", "TFLOPps", "frac_gemm_ceiling"],
                     [[cell(r["name"]), time_cell(r), cell(r["GBps"]), cell(r["frac_ceiling"]), cell(r["TFLOPps"]),
                       cell(r["frac_gemm_ceiling"])] for r in rows], "benchmarks")
    if len(bundles) > 1:
        base = bundles[0]["_label"]
        maps = [{r["name"]: r for r in rows} for rows in per_bundle]
        names = list(dict.fromkeys(r["name"] for rows in per_bundle for r in rows))
        header = ["name"] + [f"time {cell(b['_label'])}" for b in bundles]
        header += [f"speedup {cell(b['_label'])} vs {cell(base)}" for b in bundles[1:]]
        rows = []
        for n in names:
            got = [m.get(n) for m in maps]
            times = [time_cell(r) if r else "—" for r in got]
            t0 = got[0] and finite(got[0]["time_ns"])
            ratios = []
            for r in got[1:]:
                t = r and finite(r["time_ns"])
                ratios.append(f"{fmt_num(t0 / t)}×" if t0 and t else "n/a")
            rows.append([cell(n)] + times + ratios)
        out += ["### Side by side", "",
                f"Speedup = time in {cell(base)} / time in the other bundle (above 1: the other bundle is faster).", ""]
        out += table(header, rows, "benchmark comparison")
    return out


def accum_summary(bundles):
    """Headlines of the FP8 accumulation studies: K = 4096 errors and the hardware verdict."""
    out = []
    for b in bundles:
        st = b.get("studies") or {}
        suffix = f" — {b['_label']}" if len(bundles) > 1 else ""
        model = [r for r in st.get("fp8_accum_model") or [] if r.get("k") == 4096 and r.get("kind", "grid") == "grid"
                 and r.get("n_c") in ("128", "never")]
        if model:
            out += [f"### FP8 accumulation at K = 4096 (V3 report: ~2% max relative error without promotion){suffix}", ""]
            rows = [[cell(r["input"]), cell(r["frac_bits"]), cell(r["n_c"]), cell(r["max_rel"]), cell(r["mean_rel"]),
                     cell(r["normwise"]), cell(r.get("v3_2pct", ""))] for r in model]
            out += table(["input", "frac_bits", "N_C", "max_rel", "mean_rel", "normwise", "vs V3 ~2%"], rows,
                         "fp8_accum K=4096")
            hits = [r for r in st.get("fp8_accum_model") or [] if r.get("v3_2pct") == "reproduces"]
            out += ["Rows reproducing the V3 report's ~2% (max_rel in [1%, 4%] at K = 4096, no promotion): " +
                    (", ".join(dict.fromkeys(f"{r['input']} `{r['model']}` ({fmt_num(r['max_rel'])})" for r in hits)) or "none"), ""]
        hw = st.get("fp8_accum_hardware") or []
        verdicts = [r for r in hw if r.get("row") == "verdict" or r.get("skipped") or r.get("error")]
        if hw:
            out += [f"### FP8 accumulation: hardware calibration verdict{suffix}", ""]
            rows = []
            for r in verdicts:
                if r.get("skipped") or (r.get("error") and not r.get("instr")):
                    rows.append(["", cell("skipped" if r.get("skipped") else "error"), "", "", cell(r.get("reason") or r.get("error")), ""])
                    continue
                match = r.get("matching_models") or []
                rows.append([cell(r.get("instr")), cell(r.get("verdict")),
                             cell(f"layout {'ok' if r.get('layout_ok') else 'BROKEN'}, sanity {'ok' if r.get('sanity_ok') else 'FAILED'}"),
                             cell(match), cell(r.get("closest")), cell(r.get("closest_mismatches"))])
            out += table(["instruction", "verdict", "checks", "matching models", "closest model", "closest mismatches"],
                         rows, "fp8_accum verdict")
    return out


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


GEMM_PEER = "cublaslt_block"      # the ratio column's peer
GEMM_CEILING = "cublaslt_per_tensor"  # the same shape with one scale per tensor: the dense FP8 rate
GEMM_BF16 = "cublas_bf16"         # V3's default BF16 inference path: issue 6 asks for 1.6x of it

# DeepGEMM's published H800 SXM5 TFLOPS per shape (v3-facts §9.3: the 2025-03-25 README where it
# updated a figure, else the initial one). An H100 SXM has the same FP8 peak, so the fraction of
# these is the anchor of an own kernel. Keys: (layout, rows per group, groups, n, k); dense rows = M.
DEEPGEMM_H800 = {
    ("dense", 64, 1, 2112, 7168): 206, ("dense", 64, 1, 24576, 1536): 289, ("dense", 64, 1, 32768, 512): 219,
    ("dense", 64, 1, 7168, 16384): 336, ("dense", 64, 1, 4096, 7168): 287, ("dense", 64, 1, 7168, 2048): 295,
    ("dense", 128, 1, 2112, 7168): 352, ("dense", 128, 1, 24576, 1536): 535, ("dense", 128, 1, 32768, 512): 358,
    ("dense", 128, 1, 7168, 16384): 645, ("dense", 128, 1, 4096, 7168): 533, ("dense", 128, 1, 7168, 2048): 510,
    ("dense", 4096, 1, 2112, 7168): 1009, ("dense", 4096, 1, 24576, 1536): 1125, ("dense", 4096, 1, 32768, 512): 751,
    ("dense", 4096, 1, 7168, 16384): 1426, ("dense", 4096, 1, 4096, 7168): 1265, ("dense", 4096, 1, 7168, 2048): 1168,
    ("contiguous", 8192, 4, 4096, 7168): 1346, ("contiguous", 8192, 4, 7168, 2048): 1214,
    ("contiguous", 4096, 8, 4096, 7168): 1346, ("contiguous", 4096, 8, 7168, 2048): 1214,
    ("masked", 1024, 1, 4096, 7168): 1233, ("masked", 1024, 1, 7168, 2048): 925,
    ("masked", 512, 2, 4096, 7168): 1040, ("masked", 512, 2, 7168, 2048): 916,
    ("masked", 256, 4, 4096, 7168): 932, ("masked", 256, 4, 7168, 2048): 815,
}
GEMM_SHAPE_RE = re.compile(r"^(dense|contiguous|masked) (?:cap=\d+ )?(?:m=(\d+)|rows=(\d+)(?:x(\d+))?) n=(\d+) k=(\d+) f32 ")


def deepgemm_anchor(shape):
    """DeepGEMM's H800 TFLOPS for a case string of this suite's fp8_gemm shapes (f32 scales), or None."""
    m = GEMM_SHAPE_RE.match(shape)
    if not m:
        return None
    layout, dense_m, rows, groups, n, k = m.groups()
    key = (layout, int(dense_m or rows), int(groups or 1), int(n), int(k))
    return DEEPGEMM_H800.get(key)


def gemm_section(bundles):
    """fp8_gemm rates per shape: TFLOP/s, fraction of the per-tensor FP8 rate on the same shape,
    ratio to cuBLASLt block-scaled on the same shape (same run), and geometric means."""
    out = []
    for b in bundles:
        rows = [r for r in benchmark_rows(b) if r["component"] == "fp8_gemm" and finite(r["TFLOPps"])]
        if not rows:
            continue
        out += ["## FP8 GEMM rates" + (f" — {b['_label']}" if len(bundles) > 1 else ""), "",
                f"Per shape (the case without its scale layout): TFLOP/s, the fraction of `{GEMM_CEILING}` on the "
                f"same shape (the measured dense FP8 rate), the ratios to `{GEMM_PEER}` and to `{GEMM_BF16}`, all from "
                "this run, and the fraction of DeepGEMM's published H800 figure for the shape (v3-facts §9.3; an H100 "
                "SXM has the same FP8 peak). Geometric means over the shapes each variant ran; M = 4096 and grouped "
                "separately (DeepGEMM's headline shapes).", ""]
        rate = {}
        for r in rows:  # the ceiling variant runs the per_tensor twins, every other one the block-scaled cases
            if (" per_tensor" in r["case"]) != (r["variant"] == GEMM_CEILING):
                continue
            shape = r["case"].replace(" per_tensor", "").removesuffix("/manual_time")
            rate[(r["variant"], shape)] = finite(r["TFLOPps"])
        shapes = list(dict.fromkeys(k[1] for k in rate))
        variants = list(dict.fromkeys(k[0] for k in rate))
        columns = ["ceiling", "peer", "bf16", "deepgemm"]
        means = {(v, c, big): [] for v in variants for c in columns for big in (False, True)}
        body = []
        for shape in shapes:
            against = {"ceiling": rate.get((GEMM_CEILING, shape)), "peer": rate.get((GEMM_PEER, shape)),
                       "bf16": rate.get((GEMM_BF16, shape)), "deepgemm": deepgemm_anchor(shape)}
            big = " m=4096 " in f" {shape} " or "rows=" in shape
            for v in variants:
                t = rate.get((v, shape))
                if t is None:
                    continue
                r = {c: (t / against[c] if against[c] else None) for c in columns}
                for c in columns:
                    means[(v, c, False)].append(r[c])
                    if big:
                        means[(v, c, True)].append(r[c])
                body.append([cell(shape), cell(v), cell(t)] + [cell(r[c]) for c in columns])
        out += table(["shape", "variant", "TFLOP/s", f"/ {GEMM_CEILING}", f"/ {GEMM_PEER}", f"/ {GEMM_BF16}",
                      "/ DeepGEMM H800"], body, "FP8 GEMM rates")
        out += table(["variant"] + [f"geomean / {c}" for c in columns] + [f"geomean / {c} (M=4096, grouped)" for c in columns],
                     [[cell(v)] + [cell(geomean(means[(v, c, False)])) for c in columns]
                      + [cell(geomean(means[(v, c, True)])) for c in columns] for v in variants])
    return out


def kv_cache_table(rows, plot_link):
    """studies.kv_cache (one row per model, format and context) as one line per (model, format):
    the per-token figures, then GiB of one sequence per context length."""
    rows = [r for r in rows if "model" in r and "format" in r and "context" in r]
    if not rows:
        return []
    contexts = sorted({r["context"] for r in rows})
    base = rows[0].get("baseline", "?")
    body = []
    for key in dict.fromkeys((r["model"], r["format"]) for r in rows):
        mine = {r["context"]: r for r in rows if (r["model"], r["format"]) == key}
        r = next(iter(mine.values()))
        kb = finite(r.get("bytes_per_token"))
        body.append([cell(r["model"]), cell(r.get("family")), cell(r["format"]), cell(r.get("elems_per_token_per_layer")),
                     cell(r.get("bytes_per_token_per_layer")), cell(r.get("bytes_per_token")),
                     "n/a" if kb is None else f"{kb / 1000:.3f}", cell(r.get("ratio_to_baseline")),
                     cell(r.get("ratio_to_bf16"))]
                    + [cell(mine[c]["bytes"] / 2**30) if finite(mine.get(c, {}).get("bytes")) is not None else "—"
                       for c in contexts])
    out = ["One sequence's cache from the model configs alone (core/kv_cache.hpp). KB = 1000 B (ISCA Table 1's "
           "convention); GiB = 2^30 B. `fp8_latent` is FlashMLA's FP8 cache (kv_lora_rank E4M3 + one FP32 scale per "
           "128 + qk_rope_head_dim BF16 per layer: 656 B for V3, v3-facts G32), for MLA models only. "
           f"Ratios are to {cell(base)}'s BF16 bytes/token. ISCA Table 1 prints 7.28× for LLaMA-3.1 405B, which its "
           "own byte values do not give (516.096 / 70.272 = 7.344×; v3-facts §12 item 1).", ""]
    out += table(["model", "family", "format", "elems/token/layer", "B/token/layer", "B/token", "KB/token",
                  f"× {cell(base)}", "× BF16"] + [f"GiB @ {c}" for c in contexts], body, "kv_cache")
    if plot_link:
        out += [f"Plot: [kv_cache.png]({plot_link}) (cache memory vs context, BF16 solid, FP8 latent dashed).", ""]
    return out


def decode_limit_table(rows):
    """studies.decode_limit (reference/netmodel_decode_limit.hpp): one line per case, the paper's
    two cases then a scale-out and a scale-up line per hardware profile, the paper's figures beside."""
    rows = [r for r in rows if "case" in r and "tpot_ms" in r]
    if not rows:
        return []
    r0 = rows[0]
    out = ["Decode speed limit from EP all-to-all time alone, ISCA §2.3.2 (docs/netmodel.md): "
           f"{cell(r0.get('tokens_per_device'))} tokens per device x {cell(r0.get('experts_per_token'))} experts x "
           f"hidden {cell(r0.get('hidden'))}, {cell(r0.get('dispatch_bytes_per_elem'))} B dispatch + "
           f"{cell(r0.get('combine_bytes_per_elem'))} B combine per element = {fixed(r0.get('step_bytes'), 0)} B per EP "
           f"step per device; per layer = {cell(r0.get('micro_batches'))} micro-batches x both all-to-alls "
           f"(computation hidden), TPOT = {cell(r0.get('n_layers'))} layers. scale_out: the profile's NICs; "
           "scale_up: its NVLink. \"EP in NVLink\": whether the EP group fits one NVLink domain (when not, the "
           "scale_up line is a bound the machine cannot reach).", ""]
    body = []
    for r in rows:
        p = r.get("paper") or {}
        fits = r.get("fits_nvlink_domain")
        body.append([cell(r["case"]), cell(r.get("hardware") or "paper"), cell(r.get("link")),
                     fixed(r.get("bandwidth_gbs"), 1), fixed(r.get("step_us"), 3), fixed(r.get("layer_us"), 3),
                     fixed(r.get("tpot_ms"), 4), fixed(r.get("tokens_per_s"), 1),
                     "—" if fits is None else ("yes" if fits else "no"),
                     f"{p.get('step_us')} / {p.get('tpot_ms')} / {p.get('tokens_per_s'):g}" if p else "—"])
    return out + table(["case", "hardware", "link", "GB/s", "step µs", "layer µs", "TPOT ms", "tokens/s",
                        "EP in NVLink", "paper step µs / TPOT ms / tokens/s"], body, "decode_limit")


def topology_table(rows):
    """studies.topology (reference/netmodel_topology.hpp): ISCA Table 3, computed beside printed."""
    rows = [r for r in rows if "topology" in r and "cost_usd" in r]
    if not rows:
        return []
    r0 = rows[0]
    out = [f"Cluster topologies, ISCA Table 3 (docs/netmodel.md). Cost = switches × {fixed(r0.get('switch_usd'), 2)} $ + "
           f"links × {fixed(r0.get('link_usd'), 2)} $ ({cell(r0.get('price_source'))}). Fitted prices, not the "
           "paper's model: SF and DF use the paper's counts and are an out-of-sample check of the fit.", ""]
    body = []
    for r in rows:
        p = r.get("paper") or {}
        body.append([cell(r["topology"]), cell(r.get("counts_from")), cell(r.get("radix")), cell(r.get("planes")),
                     cell(r.get("endpoints")), cell(r.get("switches")), cell(r.get("links")),
                     f"{r['cost_usd'] / 1e6:.2f}", cell(p.get("cost_musd")) if p else "—",
                     f"{r['cost_per_endpoint_usd'] / 1e3:.3f}", cell(p.get("cost_per_endpoint_kusd")) if p else "—"])
    return out + table(["topology", "counts", "radix", "planes", "endpoints", "switches", "links", "cost M$",
                        "paper M$", "k$/endpoint", "paper k$/endpoint"], body, "topology")


def train_cost_table(rows):
    """studies.train_cost (reference/netmodel_train_cost.hpp): ISCA Table 2 and the Table 4 cross-check."""
    flops = [r for r in rows if r.get("table") == "gflops_per_token"]
    steps = [r for r in rows if r.get("table") == "step"]
    if not flops and not steps:
        return []
    out = ["Training GFLOPs per token, ISCA Table 2: 6 × activated matmul params + causal attention "
           "(docs/netmodel.md).", ""]
    out += table(["model", "N_mm", "GFLOPs", "non-causal", "paper", "verdict"],
                 [[cell(r.get("model")), cell(r.get("matmul_params")), fixed(r.get("gflops"), 2),
                   fixed(r.get("noncausal_gflops"), 2), "—" if r.get("paper_gflops") is None else f"{r['paper_gflops']:g}",
                   cell(r.get("verdict") or "—")]
                  for r in flops], "train_cost")
    def paper(r):
        p = r.get("paper") or {}
        if not p:
            return "—"
        return " / ".join(["n/a" if p.get("tokens_per_day_b") is None else f"{p['tokens_per_day_b']:.2f}",
                           "n/a" if p.get("tflops_causal") is None else f"{p['tflops_causal']:g}",
                           "n/a" if p.get("tflops_noncausal") is None else f"{p['tflops_noncausal']:g}",
                           fixed(p.get("mfu_noncausal"), 2, 100)])
    out += table(["ISCA Table 4 case", "step s", "tokens/day B", "TFLOPS causal", "TFLOPS non-causal",
                  "MFU non-causal %", "paper tokens/day B / TFLOPS c / nc / MFU nc %"],
                 [[cell(r.get("case")), fixed(r.get("step_s"), 3), fixed(r.get("tokens_per_day"), 3, 1e-9),
                   fixed(r.get("tflops_causal"), 1), fixed(r.get("tflops_noncausal"), 1),
                   fixed(r.get("mfu_noncausal"), 2, 100), paper(r)] for r in steps])
    return out


def moe_balance_table(rows, plot_link):
    """studies.moe_balance (reference/moe_gate_balance.hpp): per policy, the first and last
    sampled step's load imbalance."""
    rows = [r for r in rows if "policy" in r and finite(r.get("step")) is not None]
    if not rows:
        return []
    body = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["step"])
        first, last = mine[0], mine[-1]
        body.append([cell(policy), cell(last.get("gamma")), cell(last.get("alpha")), cell(last["step"] + 1),
                     f"{fixed(first.get('expert_max_over_mean'), 2)} → {fixed(last.get('expert_max_over_mean'), 2)}",
                     f"{fixed(first.get('rank_max_over_mean'), 2)} → {fixed(last.get('rank_max_over_mean'), 2)}",
                     f"{fixed(first.get('node_max_over_mean'), 2)} → {fixed(last.get('node_max_over_mean'), 2)}",
                     fixed(last.get("mean_nodes_per_token"), 2), fixed(last.get("seq_sum_f_p"), 3)])
    out = [f"V3's gate on a synthetic router with skewed expert affinities, {cell(rows[0].get('tokens_per_step'))} "
           "tokens per step (docs/moe.md): max/mean load at the first → last step; `unskewed_floor` is the "
           "sampling-noise floor (no skew, no balancing). Sum f·P is the sequence-wise loss over alpha (1 = balanced).", ""]
    out += table(["policy", "gamma", "alpha", "steps", "experts max/mean", "ranks max/mean", "nodes max/mean",
                  "nodes/token", "sum f·P"], body, "moe_balance")
    if plot_link:
        out += [f"Plot: [moe_balance.png]({plot_link}).", ""]
    return out


def node_limit_table(rows):
    """studies.node_limit (reference/netmodel_node_limit.hpp): nodes, IB and NVLink bytes per token over
    the node limit M, beside unrestricted routing (M = groups)."""
    rows = [r for r in rows if "node_limit" in r and "ib_bytes_per_token" in r]
    if not rows:
        return []
    r0 = rows[0]
    send = (r0.get("dispatch_send_bytes") or 0) + (r0.get("combine_send_bytes") or 0)
    out = [f"Node-limited routing (V3-TR §3.2.2, ISCA §4.3; docs/netmodel.md): {cell(r0.get('model'))}'s gate on a "
           f"seeded synthetic router ({cell(r0.get('tokens'))} tokens, skew {cell(r0.get('skew'))}), experts on "
           f"{cell(r0.get('ranks'))} GPUs in {cell(r0.get('nodes'))} nodes. IB bytes = remote target nodes × "
           f"{send:.0f} B (FP8 dispatch + BF16 combine), NVLink = forwarded target GPUs × the same; "
           f"NVL/IB time at {cell(r0.get('nvlink_gbs'))} / {cell(r0.get('ib_gbs'))} GB/s.", ""]
    body = []
    for r in rows:
        m = f"{r['node_limit']}" + (" (unrestricted)" if r.get("unrestricted") else
                                   " (config)" if r["node_limit"] == r.get("config_limit") else "")
        body.append([m, fixed(r.get("mean_nodes_per_token"), 3), cell(r.get("max_nodes_per_token")),
                     fixed(r.get("experts_per_node"), 2), f"{r['ib_bytes_per_token']:.0f}",
                     f"{r.get('nvlink_bytes_per_token', 0):.0f}", f"{r.get('ib_bytes_per_token_no_forwarding', 0):.0f}",
                     fixed(r.get("ib_vs_unrestricted"), 3), fixed(r.get("nvlink_over_ib_time"), 3),
                     fixed(r.get("score_kept"), 4)])
    return out + table(["M", "nodes/token", "max", "experts/node", "IB B/token", "NVLink B/token",
                        "IB B/token no forwarding", "IB vs unrestricted", "NVL/IB time", "score kept"], body, "node_limit")


COMPACT_STUDIES = {"decode_limit": decode_limit_table, "topology": topology_table, "train_cost": train_cost_table,
                   "node_limit": node_limit_table}


def studies_section(bundles, plot_link=lambda name: None):
    """plot_link(png name) -> the link to that plot relative to the report, or None when absent."""
    out = ["## Numerics studies", ""]
    names = list(dict.fromkeys(n for b in bundles for n, rows in (b.get("studies") or {}).items() if rows))
    if not names:
        return out + ["No numerics studies in the bundle(s).", ""]
    out += accum_summary(bundles)
    for name in names:
        for b in bundles:
            rows = (b.get("studies") or {}).get(name) or []
            if not rows:
                continue
            out += [f"### {name}" + (f" — {b['_label']}" if len(bundles) > 1 else ""), ""]
            if name == "kv_cache":
                compact = kv_cache_table(rows, plot_link("kv_cache.png"))
            elif name == "moe_balance":
                compact = moe_balance_table(rows, plot_link("moe_balance.png"))
            elif name == "pipeline_summary":
                compact = pipeline_summary_table(rows, cell, table)
            elif name == "pipeline_timeline":
                compact = pipeline_timeline_table(rows, cell, table, plot_link)
            elif name == "fp8_train_lm":
                compact = fp8_train_lm_table(rows, cell, table, plot_link)
            elif name == "decode_limit_calibrated":
                compact = decode_limit_calibrated_table(rows, cell, table)
            elif name == "pipeline_overlap":
                compact = pipeline_overlap_table(rows, cell, table)
            else:
                compact = COMPACT_STUDIES[name](rows) if name in COMPACT_STUDIES else []
            if compact:
                out += compact
                continue
            cols = list(dict.fromkeys(k for r in rows for k in r))
            out += table([cell(c) for c in cols], [[cell(r.get(c)) for c in cols] for r in rows], name)
    return out


def mtp_section(bundles, plot_link):
    """The MTP decode speedup model from the first bundle's MLA decode and MoE layer timings."""
    return ["## MTP decode speedup" + (f" — {bundles[0]['_label']}" if len(bundles) > 1 else ""), ""] + \
        speedup_table(bundles[0], cell, table, plot_link)


def plot_linker(plots_dir, report_dir):
    def link(name):
        path = os.path.join(plots_dir, name)
        if not os.path.isfile(path):
            return None
        return os.path.relpath(path, report_dir).replace(os.sep, "/").replace(" ", "%20")
    return link


def plots_section(plots_dir, report_dir):
    if not os.path.isdir(plots_dir):
        return ["## Plots", "", f"No plots folder at `{plots_dir}` (run scripts/plot.py first).", ""]
    pngs = sorted(f for f in os.listdir(plots_dir) if f.endswith(".png"))
    ordered = [f for f in PLOT_ORDER[:1] if f in pngs] + [f for f in pngs if f.startswith("bench_")]
    ordered += [f for f in PLOT_ORDER[1:] if f in pngs] + [f for f in pngs if f not in ordered and f not in PLOT_ORDER]
    if not ordered:
        return ["## Plots", "", f"No PNG in `{plots_dir}` (run scripts/plot.py first).", ""]
    out = ["## Plots", ""]
    for f in ordered:
        rel = os.path.relpath(os.path.join(plots_dir, f), report_dir).replace(os.sep, "/")
        out += [f"![{f[:-4]}]({rel.replace(' ', '%20')})", ""]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+", metavar="BUNDLE.json", help="result bundle(s); the first one is the baseline")
    p.add_argument("--out", metavar="REPORT.md", help="report to write (default: REPORT.md next to the first bundle)")
    p.add_argument("--plots", metavar="DIR", help="folder with scripts/plot.py's PNGs, linked relative to the report "
                                                 "(default: <first bundle's folder>/plots)")
    args = p.parse_args()
    bundles = load_bundles(args.bundles)
    first_dir = os.path.dirname(os.path.abspath(args.bundles[0]))
    out_path = args.out or os.path.join(first_dir, "REPORT.md")
    if os.path.isdir(out_path):
        raise UserError(f"{out_path}: --out is a folder; give a file name such as {os.path.join(out_path, 'REPORT.md')}")
    plots_dir = args.plots or os.path.join(first_dir, "plots")

    lines = ["# dsv3bench report", ""]
    lines += [f"Made by `scripts/report.py` from {len(bundles)} bundle(s); "
              f"{'the first is the baseline' if len(bundles) > 1 else 'nothing was re-run'}:", ""]
    lines += [f"- **{cell(b['_label'])}**: `{b['_path']}`" for b in bundles] + [""]
    for b in bundles:
        dev = b.get("device") or {}
        if not dev.get("present", False):
            who = f" ({cell(b['_label'])})" if len(bundles) > 1 else ""
            why = dev.get("reason") or ("no reason given" if "device" in b else "the bundle has no 'device' field")
            lines += [f"> **{CPU_ONLY}.**{who} Device: {cell(why)}", ""]
    report_dir = os.path.dirname(os.path.abspath(out_path))
    for section in (machine_section(bundles), ceilings_section(bundles), correctness_section(bundles),
                    benchmark_section(bundles), gemm_section(bundles),
                    [line for b in bundles for line in train_step_section(b, benchmark_rows(b), cell, table, len(bundles) > 1)], mtp_section(bundles, plot_linker(plots_dir, report_dir)),
                    [line for b in bundles for line in mpi_section(b, cell, table, b["_label"] if len(bundles) > 1 else "")],
                    studies_section(bundles, plot_linker(plots_dir, report_dir)), plots_section(plots_dir, report_dir)):
        lines += section
    atomic_write(out_path, "\n".join(lines).rstrip("\n") + "\n")
    print(out_path)
    return 0


if __name__ == "__main__":
    main_guard(main)
