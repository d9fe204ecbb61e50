#!/usr/bin/env python3
"""Draw PNG plots from dsv3bench result bundles (docs/bundle-schema.md).

Reads one or more bundle.json files and writes, into --out:
  ceilings.png        measured ceilings, one panel per unit
  bench_<comp>.png    per component: GBps per benchmark (bar text = time) and
                      frac_ceiling (dashed "goal 85%" line when CUDA variants ran)
  correctness.png     per component: stacked pass/fail/skip counts per variant
  fp8_scaling.png     studies.fp8_scaling: SQNR and row_rel_l2 (rel_l2 in older bundles) per distribution/scheme
  fp8_equal_bits.png  studies.fp8_equal_bits: SQNR per distribution/format
  fp8_accum.png       studies.fp8_accum_model: max (solid) and mean (dashed) relative error vs K,
                      one line per promotion interval N_C, panels per input kind x frac_bits
  fp8_gemm_error_budget.png  studies.fp8_gemm_error_budget: relative L2 error per (N, K) and
                      error source (kernel rounding, bf16 output, quantization, total)
  pipeline_<schedule>.png  studies.pipeline_timeline: per-rank chunk timeline per schedule, like
                      DualPipe's figure (scripts/plot_pipeline.py)
  kv_cache.png        studies.kv_cache: KV-cache GiB of one sequence vs context length (log-log),
                      one colour per model, BF16 solid, FP8 latent dashed (bundles with identical
                      rows are drawn once: the rows come from the model configs alone)
  moe_balance.png     studies.moe_balance: expert and node max/mean load over training steps of the
                      synthetic skewed router, one line per balancing policy (first bundle with rows)
  fp8_train_lm.png    studies.fp8_train_lm: BF16 vs FP8 training of a tiny byte-level LM, loss curves
                      (training smoothed, held-out markers) and the relative FP8 gap per seed beside
                      V3's < 0.25% claim (scripts/plot_train.py; first bundle with step rows)
  node_limit.png      studies.node_limit: IB (with and without V3's forwarding) and NVLink bytes per
                      token, nodes per token and top-K score kept over the node limit (plot_netmodel.py)
  decode_limit.png    studies.decode_limit: the ISCA §2.3.2 tokens/s limit per case and link, log
                      scale, the paper's figures as markers (scripts/plot_netmodel.py)
  topology.png        studies.topology: cost per endpoint against endpoints per topology beside
                      ISCA Table 3 (scripts/plot_netmodel.py)
  mtp_speedup.png     the MTP decode speedup model from the MLA decode (s_q 1, 2) and MoE layer (B, 2B)
                      benchmarks, against V3's 85-90% acceptance and 1.8x (scripts/mtp_speedup.py)
A plot whose data is absent from every bundle is skipped with a note. With several
bundles, each bundle ("<device or cpu-only> <date>") gets its own bars side by side.
Nothing is re-run; the plots come from the bundles only.
"""
import argparse
import io
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import UserError, atomic_write, benchmark_rows, finite, fmt_num, load_bundles, main_guard  # noqa: E402

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: {e.name} is not installed: pip install -r scripts/requirements.txt", file=sys.stderr)
    sys.exit(2)
from plot_pipeline import plot_pipeline_timeline  # noqa: E402
from plot_train import plot_fp8_train_lm  # noqa: E402
from mtp_speedup import plot_mtp_speedup  # noqa: E402
from plot_netmodel import plot_decode_limit, plot_node_limit, plot_topology  # noqa: E402

STATUS_COLORS = {"pass": "#4caf50", "fail": "#e53935", "skip": "#9e9e9e"}
GOAL = 0.85


def nan(v):
    f = finite(v)
    return np.nan if f is None else f


def grouped_bars(ax, categories, series, horizontal=False, texts=None):
    """Bars for each category, one per series [(label, values)], side by side."""
    n = max(len(series), 1)
    width = 0.8 / n
    idx = np.arange(len(categories))
    for i, (label, values) in enumerate(series):
        pos = idx + (i - (n - 1) / 2) * width
        vals = [nan(v) for v in values]
        if horizontal:
            bars = ax.barh(pos, vals, height=width, label=label)
        else:
            bars = ax.bar(pos, vals, width=width, label=label)
        if texts is not None:
            ax.bar_label(bars, labels=texts[i], fontsize=7, padding=2)
    if horizontal:
        ax.set_yticks(idx, categories)
        if not ax.yaxis_inverted():  # first row on top (axes may share y)
            ax.invert_yaxis()
    else:
        ax.set_xticks(idx, categories, rotation=20 if len(categories) > 3 else 0, ha="right" if len(categories) > 3 else "center")


def maybe_log(ax, series, axis):
    """Log scale when positive values span more than 100x."""
    vals = [f for _, vs in series for f in map(finite, vs) if f is not None and f > 0]
    if vals and max(vals) / min(vals) > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def fmt(v):
    return "" if finite(v) is None else fmt_num(v)


def save(fig, out_dir, name, written):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    path = os.path.join(out_dir, name)
    atomic_write(path, buf.getvalue())
    print(path)
    written.append(path)


def plot_ceilings(bundles, out_dir, written):
    if not any(b.get("ceilings") for b in bundles):
        print("note: no ceilings in any bundle; skipping ceilings.png")
        return
    units = list(dict.fromkeys(c["unit"] for b in bundles for c in b.get("ceilings", [])))
    fig, axes = plt.subplots(1, len(units), figsize=(4.5 * len(units) + 1, 4.5), squeeze=False)
    for ax, unit in zip(axes[0], units):
        names = list(dict.fromkeys(c["name"] for b in bundles for c in b.get("ceilings", []) if c["unit"] == unit))
        series, texts = [], []
        for b in bundles:
            by_name = {c["name"]: c["value"] for c in b.get("ceilings", []) if c["unit"] == unit}
            vals = [by_name.get(n) for n in names]
            series.append((b["_label"], vals))
            texts.append([fmt(v) for v in vals])
        grouped_bars(ax, names, series, texts=texts)
        maybe_log(ax, series, "y")
        ax.set_ylabel(unit)
        ax.set_title(f"ceilings ({unit})")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Measured ceilings")
    save(fig, out_dir, "ceilings.png", written)


def row_label(r):
    return f"{r['variant']} {r['case']}".strip() or r["name"]


def plot_benchmarks(bundles, out_dir, written):
    per_bundle = [benchmark_rows(b) for b in bundles]
    components = list(dict.fromkeys(r["component"] for rows in per_bundle for r in rows if r["error"] is None))
    if not components:
        print("note: no benchmark results in any bundle; skipping bench_*.png")
        return
    for comp in components:
        labels = list(dict.fromkeys(row_label(r) for rows in per_bundle for r in rows
                                    if r["component"] == comp and r["error"] is None))
        gbps, frac, texts = [], [], []
        any_cuda = False
        for b, rows in zip(bundles, per_bundle):
            by_label = {row_label(r): r for r in rows if r["component"] == comp and r["error"] is None}
            any_cuda |= any(r["variant"].startswith("cuda") for r in by_label.values())
            picked = [by_label.get(lab) for lab in labels]
            gbps.append((b["_label"], [r and r["GBps"] for r in picked]))
            frac.append((b["_label"], [r and r["frac_ceiling"] for r in picked]))
            texts.append([f"{fmt(r['time'])} {r['unit']}" if r and finite(r["time"]) is not None else "" for r in picked])
        height = max(3.0, 0.45 * len(labels) * max(1, len(bundles) * 0.7) + 1.5)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, height), sharey=True)
        grouped_bars(ax1, labels, gbps, horizontal=True, texts=texts)
        maybe_log(ax1, gbps, "x")
        ax1.margins(x=0.12)  # room for the time labels
        ax1.set_xlabel("GB/s (bar text: time per iteration)")
        ax1.set_title(f"{comp}: bandwidth")
        grouped_bars(ax2, labels, frac, horizontal=True)
        ax2.set_xlabel("fraction of copy ceiling")
        ax2.set_title(f"{comp}: frac_ceiling")
        if any_cuda:
            ax2.axvline(GOAL, linestyle="--", color="k", linewidth=1, label="goal 85%")
        fig.legend(*ax2.get_legend_handles_labels(), loc="lower center", ncol=len(bundles) + any_cuda, fontsize=8)
        fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", comp)
        save(fig, out_dir, f"bench_{safe}.png", written)


def plot_correctness(bundles, out_dir, written):
    rows = [(b["_label"], r) for b in bundles for r in b.get("correctness", [])]
    if not rows:
        print("note: no correctness results in any bundle; skipping correctness.png")
        return
    components = list(dict.fromkeys(r["component"] for _, r in rows))
    # one row of panels per component, one column per bundle (side by side)
    fig, axes = plt.subplots(len(components), len(bundles), figsize=(5.5 * len(bundles), 3.8 * len(components)),
                             squeeze=False, sharey="row")
    for axrow, comp in zip(axes, components):
        variants = list(dict.fromkeys(r["variant"] for _, r in rows if r["component"] == comp))
        for ax, b in zip(axrow, bundles):
            mine = [r for lab, r in rows if lab == b["_label"] and r["component"] == comp]
            bottom = np.zeros(len(variants))
            for s, color in STATUS_COLORS.items():
                counts = np.array([sum(r["variant"] == v and r["status"] == s for r in mine) for v in variants])
                bars = ax.bar(range(len(variants)), counts, bottom=bottom, color=color, label=s)
                ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], label_type="center", fontsize=8)
                bottom += counts
            ax.set_xticks(range(len(variants)), variants, rotation=20 if len(variants) > 3 else 0)
            ax.set_title(comp if len(bundles) == 1 else f"{comp} — {b['_label']}", fontsize=10)
            ax.set_ylabel("cases")
            ax.yaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle("Correctness: cases per verdict")
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    save(fig, out_dir, "correctness.png", written)


def order(values, preferred):
    values = list(dict.fromkeys(values))
    return [p for p in preferred if p in values] + [v for v in values if v not in preferred]


def plot_fp8_scaling(bundles, out_dir, written):
    having = [b for b in bundles if (b.get("studies") or {}).get("fp8_scaling")]
    if not having:
        print("note: no studies.fp8_scaling in any bundle; skipping fp8_scaling.png")
        return
    fig, axes = plt.subplots(len(having), 2, figsize=(13, 4.5 * len(having)), squeeze=False)
    for (ax1, ax2), b in zip(axes, having):
        rows = b["studies"]["fp8_scaling"]
        dists = list(dict.fromkeys(r["distribution"] for r in rows))
        keys = [(s, f) for s in order((r["scheme"] for r in rows), ["per_tensor", "1x128", "128x128"])
                for f in dict.fromkeys(r["format"] for r in rows if r["scheme"] == s)]
        # Per-row error shows what energy-weighted SQNR hides (small tokens); older bundles lack it.
        metric = "row_rel_l2" if all("row_rel_l2" in r for r in rows) else "rel_l2"
        sqnr, rel = [], []
        for s, f in keys:
            by_dist = {r["distribution"]: r for r in rows if r["scheme"] == s and r["format"] == f}
            sqnr.append((f"{s} ({f})", [by_dist.get(d, {}).get("sqnr_db") for d in dists]))
            rel.append((f"{s} ({f})", [by_dist.get(d, {}).get(metric) for d in dists]))
        grouped_bars(ax1, dists, sqnr)
        ax1.set_ylabel("SQNR (dB, higher is better)")
        ax1.set_title(f"FP8 scaling schemes: SQNR — {b['_label']}")
        ax1.margins(y=0.25)
        ax1.legend(fontsize=8, loc="upper center", ncol=min(len(sqnr), 3))
        grouped_bars(ax2, dists, [(lab, [v if (finite(v) or 0) > 0 else None for v in vals]) for lab, vals in rel])
        ax2.set_yscale("log")
        ax2.set_ylabel(("mean per-row " if metric == "row_rel_l2" else "") + "relative L2 error (log, lower is better)")
        ax2.set_title(metric)
    fig.tight_layout()
    save(fig, out_dir, "fp8_scaling.png", written)


def plot_fp8_equal_bits(bundles, out_dir, written):
    having = [b for b in bundles if (b.get("studies") or {}).get("fp8_equal_bits")]
    if not having:
        print("note: no studies.fp8_equal_bits in any bundle; skipping fp8_equal_bits.png")
        return
    fig, axes = plt.subplots(1, len(having), figsize=(9 * len(having), 4.8), squeeze=False)
    for ax, b in zip(axes[0], having):
        rows = b["studies"]["fp8_equal_bits"]
        dists = list(dict.fromkeys(r["distribution"] for r in rows))
        formats = order((r["format"] for r in rows), ["e4m3", "e5m2", "logfmt8", "logfmt10", "bf16"])
        series = []
        for f in formats:
            by_dist = {r["distribution"]: r for r in rows if r["format"] == f}
            bits = next((r.get("bits") for r in by_dist.values() if r.get("bits") is not None), None)
            label = f if bits is None else f"{f} ({bits} bit)"
            series.append((label, [by_dist.get(d, {}).get("sqnr_db") for d in dists]))
        grouped_bars(ax, dists, series)
        ax.set_ylabel("SQNR (dB, higher is better)")
        ax.set_title(f"Formats compared: SQNR — {b['_label']}")
        ax.margins(y=0.25)
        ax.legend(fontsize=8, loc="upper center", ncol=min(len(series), 5))
    fig.tight_layout()
    save(fig, out_dir, "fp8_equal_bits.png", written)


def plot_fp8_accum(bundles, out_dir, written):
    having = [b for b in bundles if (b.get("studies") or {}).get("fp8_accum_model")]
    if not having:
        print("note: no studies.fp8_accum_model in any bundle; skipping fp8_accum.png")
        return
    panels = []  # (bundle, input kind, frac_bits, rows)
    for b in having:
        rows = [r for r in b["studies"]["fp8_accum_model"] if r.get("kind", "grid") == "grid"]
        for kind in order((r["input"] for r in rows), ["normal", "outliers", "positive"]):
            mine = [r for r in rows if r["input"] == kind]
            for f in sorted({r["frac_bits"] for r in mine}):
                panels.append((b, kind, f, [r for r in mine if r["frac_bits"] == f]))
    fracs = sorted({f for _, _, f, _ in panels})
    kinds = list(dict.fromkeys((b["_label"], k) for b, k, _, _ in panels))
    fig, axes = plt.subplots(len(kinds), len(fracs), figsize=(4.6 * len(fracs), 3.6 * len(kinds)),
                             squeeze=False, sharex=True, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for b, kind, f, rows in panels:
        ax = axes[kinds.index((b["_label"], kind))][fracs.index(f)]
        ncs = order((r["n_c"] for r in rows), ["32", "64", "128", "256", "never"])
        for i, nc in enumerate(ncs):
            pts = sorted((r["k"], r["max_rel"], r["mean_rel"]) for r in rows if r["n_c"] == nc)
            ks = [k for k, _, _ in pts]
            pos = lambda v: v if (finite(v) or 0) > 0 else np.nan  # noqa: E731 - log axes
            c = colors[i % len(colors)]
            ax.plot(ks, [pos(m) for _, m, _ in pts], "o-", color=c, label=f"N_C={nc} max")
            ax.plot(ks, [pos(m) for _, _, m in pts], "--", color=c, alpha=0.6, label=f"N_C={nc} mean")
        ax.axhline(0.02, color="k", linestyle=":", linewidth=1, label="V3 report ~2% (K=4096, no promotion)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{kind}, frac_bits {f}" + (f" — {b['_label']}" if len(having) > 1 else ""), fontsize=10)
        ax.set_xlabel("K")
        ax.set_ylabel("relative error")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8)
    fig.suptitle("FP8 accumulation model: error vs exact sum (solid max, dashed mean; zero errors not drawn)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    save(fig, out_dir, "fp8_accum.png", written)


def plot_fp8_gemm_error_budget(bundles, out_dir, written):
    having = [b for b in bundles if (b.get("studies") or {}).get("fp8_gemm_error_budget")]
    if not having:
        print("note: no studies.fp8_gemm_error_budget in any bundle; skipping fp8_gemm_error_budget.png")
        return
    fig, axes = plt.subplots(1, len(having), figsize=(11 * len(having), 4.8), squeeze=False)
    for ax, b in zip(axes[0], having):
        rows = b["studies"]["fp8_gemm_error_budget"]
        shapes = list(dict.fromkeys(f"{r['n']}x{r['k']}" for r in rows))
        pairs = order((r["pair"] for r in rows), ["kernel", "output_bf16", "quantization", "total"])
        series = []
        for pair in pairs:
            by_shape = {f"{r['n']}x{r['k']}": r for r in rows if r["pair"] == pair}
            series.append((pair, [(lambda v: v if (finite(v) or 0) > 0 else None)(by_shape.get(s, {}).get("rel_l2"))
                                  for s in shapes]))
        grouped_bars(ax, shapes, series)
        ax.set_yscale("log")
        ax.set_xlabel("(N, K) of the GEMM, M = " + ", ".join(sorted({str(r["m"]) for r in rows})))
        ax.set_ylabel("relative L2 error (log, lower is better)")
        ax.set_title(f"FP8 GEMM error budget — {b['_label']}")
        ax.legend(fontsize=8, loc="upper center", ncol=len(series))
    fig.tight_layout()
    save(fig, out_dir, "fp8_gemm_error_budget.png", written)


KV_FORMATS = {"bf16": ("-", "o", "BF16"), "fp8_latent": ("--", "s", "FP8 latent")}


def plot_kv_cache(bundles, out_dir, written):
    panels = []  # (label, rows), rows with a context and a byte count
    for b in bundles:
        rows = [r for r in (b.get("studies") or {}).get("kv_cache") or []
                if finite(r.get("context")) and finite(r.get("bytes")) is not None]
        if rows and all(rows != seen for _, seen in panels):
            panels.append((b["_label"], rows))
    if not panels:
        print("note: no studies.kv_cache in any bundle; skipping kv_cache.png")
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(12 * len(panels), 5.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (label, rows) in zip(axes[0], panels):
        models = list(dict.fromkeys(r["model"] for r in rows))
        for i, model in enumerate(models):
            mine = [r for r in rows if r["model"] == model]
            for fmt_key in order((r["format"] for r in mine), list(KV_FORMATS)):
                style, marker, fmt_name = KV_FORMATS.get(fmt_key, (":", "x", fmt_key))
                pts = sorted((r["context"], r["bytes"] / 2**30) for r in mine if r["format"] == fmt_key)
                per_token = next(r.get("bytes_per_token") for r in mine if r["format"] == fmt_key)
                name = mine[0].get("name") or model
                ax.plot([c for c, _ in pts], [g if g > 0 else np.nan for _, g in pts], linestyle=style,
                        marker=marker, color=colors[i % len(colors)],
                        label=f"{name} {fmt_name}: {per_token / 1000:.3f} KB/token")
        contexts = sorted({r["context"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(contexts, [f"{c:,}" for c in contexts], rotation=20)
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("KV cache of one sequence (GiB = 2^30 B, log)")
        ax.set_title("KV-cache memory vs context (BF16 solid, FP8 latent dashed)"
                     + (f" — {label}" if len(panels) > 1 else ""), fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save(fig, out_dir, "kv_cache.png", written)


def plot_moe_balance(bundles, out_dir, written):
    rows, label = next((((b.get("studies") or {}).get("moe_balance"), b["_label"]) for b in bundles
                        if any(finite(r.get("step")) is not None for r in (b.get("studies") or {}).get("moe_balance") or [])),
                       (None, None))
    if not rows:
        print("note: no studies.moe_balance in any bundle; skipping moe_balance.png")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, key, what in ((axes[0], "expert_max_over_mean", "experts"), (axes[1], "node_max_over_mean", "nodes (8 x 32 experts)")):
        for policy in dict.fromkeys(r["policy"] for r in rows):
            pts = sorted((r["step"], r[key]) for r in rows if r["policy"] == policy and finite(r.get(key)) is not None)
            # "none" drawn wide underneath: a weak loss can coincide with it exactly
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=policy,
                    linestyle=":" if policy == "unskewed_floor" else "-",
                    linewidth=4 if policy == "none" else 1.5, alpha=0.5 if policy == "none" else 1.0)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(f"max / mean load over {what}")
        ax.grid(True, alpha=0.3)
    tokens = rows[0].get("tokens_per_step")
    axes[0].set_title(f"MoE balancing, V3 gate on a skewed synthetic router ({tokens} tokens/step) — {label}", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save(fig, out_dir, "moe_balance.png", written)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+", metavar="BUNDLE.json", help="result bundle(s); the first one is the baseline")
    p.add_argument("--out", metavar="DIR", help="output folder for the PNGs (default: <first bundle's folder>/plots)")
    args = p.parse_args()
    bundles = load_bundles(args.bundles)
    out_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(args.bundles[0])), "plots")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir}: --out exists and is not a folder")
    written = []
    for fn in (plot_ceilings, plot_benchmarks, plot_correctness, plot_fp8_scaling, plot_fp8_equal_bits,
               plot_fp8_accum, plot_fp8_gemm_error_budget, plot_kv_cache, plot_moe_balance):
        fn(bundles, out_dir, written)
    plot_pipeline_timeline(bundles, out_dir, written, save, plt)
    plot_fp8_train_lm(bundles, out_dir, written, save, plt)
    plot_mtp_speedup(bundles, out_dir, written, save, plt)
    plot_node_limit(bundles, out_dir, written, save, plt)
    plot_decode_limit(bundles, out_dir, written, save, plt)
    plot_topology(bundles, out_dir, written, save, plt)
    print(f"{len(written)} plot(s) written to {out_dir}")
    return 0


if __name__ == "__main__":
    main_guard(main)
