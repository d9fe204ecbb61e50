"""The MTP decode speedup model from a bundle's timings (issue: multi-token prediction; V3-TR §5.4.3).

With depth-1 MTP each decode step verifies one draft: the main model runs 2 query tokens per
sequence instead of 1 and emits 1 + a tokens on average (a = acceptance). Per layer:

    speedup(a) = (1 + a) * t(1 query token) / t(2 query tokens)
    t(s)       = t_MLA decode(batch B, s_q = s) + t_MoE layer(s * B tokens)

with t measured by this suite: the mla component's decode benchmark at s_q 1 and 2 (same batch,
heads, cache format and length) and the moe component's layer benchmark at B and 2B tokens. GPU
variants are used when the bundle has them, the CPU reference otherwise (a CPU reference does
twice the work for two tokens, so its ratio is ~2 and MTP cannot pay there; on a GPU, decode is
bound by memory and t(2) is close to t(1)). V3 reports 85-90% acceptance and 1.8x tokens/s.

speedup_pairs(bundle) returns the measured pairs; speedup_table() and plot_mtp_speedup() are the
report section and mtp_speedup.png.
"""
import re

from bundle_io import benchmark_rows, finite

V3_RANGE = (0.85, 0.90)
V3_CLAIM = 1.8
ACCEPTANCE = [0.5 + 0.05 * i for i in range(11)]

_MLA = re.compile(r"^decode b=(\d+) sq=(\d+) (h=\d+ \S+ len~\d+)")
_MOE = re.compile(r"^layer (\S+) t=(\d+) (.*)$")


def _rank(variant):
    """GPU variants before the CPU reference."""
    return (variant.startswith("ref"), variant)


def _times(bundle, component, pattern):
    """{key: {variant: time_ns}} for the component's rows matching pattern (key from the match)."""
    out = {}
    for r in benchmark_rows(bundle):
        if r["component"] != component or finite(r.get("time_ns")) is None or r.get("variant") == "ref_1thread":
            continue
        m = pattern.match((r.get("case") or "").removesuffix("/manual_time"))
        if m:
            out.setdefault(m.groups(), {})[r["variant"]] = r["time_ns"]
    return out


def speedup_pairs(bundle):
    """Rows per variant and paired case, GPU variants first: variant, batch, MLA and MoE cases, their
    t1 and t2 (ns), ratio t2/t1 of the layer, speedup per acceptance."""
    mla, moe = _times(bundle, "mla", _MLA), _times(bundle, "moe", _MOE)
    rows = []
    for (b, sq, rest), by_variant in sorted(mla.items(), key=lambda kv: (int(kv[0][0]), kv[0][2])):
        if sq != "1" or (b, "2", rest) not in mla:
            continue
        two = mla[(b, "2", rest)]
        B = int(b)
        moe1 = {k: v for k, v in moe.items() if int(k[1]) == B}
        for variant in set(by_variant) & set(two):
            m1 = next(((k, v[variant]) for k, v in moe1.items() if variant in v and (k[0], str(2 * B), k[2]) in moe
                       and variant in moe[(k[0], str(2 * B), k[2])]), None)
            if m1 is None:
                continue
            (model, _, moe_rest), moe_t1 = m1
            moe_t2 = moe[(model, str(2 * B), moe_rest)][variant]
            t1, t2 = by_variant[variant] + moe_t1, two[variant] + moe_t2
            rows.append({"variant": variant, "batch": B, "mla_case": f"b={b} {rest}", "moe_case": f"{model} {moe_rest}",
                         "mla_t1": by_variant[variant], "mla_t2": two[variant], "moe_t1": moe_t1, "moe_t2": moe_t2,
                         "ratio": t2 / t1, "speedup": {a: (1 + a) * t1 / t2 for a in ACCEPTANCE}})
    return sorted(rows, key=lambda r: (_rank(r["variant"]), -r["batch"]))  # GPU variants, larger batches first


def _acceptances(bundle):
    """The tiny LM's measured acceptance (studies.fp8_train_lm summary): {label: value}."""
    s = next((r for r in (bundle.get("studies") or {}).get("fp8_train_lm") or []
              if isinstance(r, dict) and r.get("kind") == "summary"), {})
    out = {}
    for recipe in ("bf16", "fp8"):
        for key, label in ((f"mtp_acceptance_{recipe}", "greedy"), (f"mtp_acceptance_t1_{recipe}", "T=1")):
            if finite(s.get(key)) is not None:
                out[f"tiny LM {recipe} {label}"] = s[key]
    return out


def speedup_table(bundle, cell, table, plot_link):
    rows = speedup_pairs(bundle)
    out = ["MTP decode speedup model (scripts/mtp_speedup.py): speedup = (1 + acceptance) x t(1 query token) / "
           "t(2 query tokens) per layer, t = MLA decode (s_q 1 or 2) + MoE layer (B or 2B tokens) from this bundle's "
           f"benchmarks; V3 reports {V3_RANGE[0]:.0%}-{V3_RANGE[1]:.0%} acceptance and {V3_CLAIM}x tokens/s.", ""]
    if not rows:
        return out + ["No MLA decode pair (s_q 1 and 2) with an MoE layer pair (B and 2B tokens) in this bundle.", ""]
    body = []
    for r in rows:
        body.append([cell(r["variant"]), cell(r["mla_case"]), cell(r["moe_case"]), f"{r['mla_t2'] / r['mla_t1']:.2f}",
                     f"{r['moe_t2'] / r['moe_t1']:.2f}", f"{r['ratio']:.2f}",
                     f"{r['speedup'][ACCEPTANCE[7]]:.2f}x", f"{r['speedup'][ACCEPTANCE[8]]:.2f}x",
                     f"{r['speedup'][ACCEPTANCE[10]]:.2f}x"])
    out += table(["variant", "MLA decode", "MoE layer", "MLA t2/t1", "MoE t2/t1", "layer t2/t1", "speedup at 85%",
                  "at 90%", "at 100%"], body)
    acc = _acceptances(bundle)
    if acc:
        best = rows[0]
        items = ", ".join(f"{k} {v:.1%} -> {(1 + v) / best['ratio']:.2f}x" for k, v in acc.items())
        out += [f"At the tiny LM's measured acceptance ({cell(best['variant'])}, {cell(best['mla_case'])}): {items}.", ""]
    link = plot_link("mtp_speedup.png")
    if link:
        out += [f"Plot: [mtp_speedup.png]({link}).", ""]
    return out


def plot_mtp_speedup(bundles, out_dir, written, save, plt):
    b, rows = next(((b, r) for b in bundles for r in [speedup_pairs(b)] if r), (None, None))
    if not rows:
        print("note: no MLA decode (s_q 1 and 2) and MoE layer (B and 2B) benchmark pairs in any bundle; skipping mtp_speedup.png")
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axvspan(*V3_RANGE, color="#ffdd99", alpha=0.6, label="V3 acceptance 85-90%")
    ax.axhline(V3_CLAIM, color="k", ls="--", lw=1, label=f"V3 claim {V3_CLAIM}x")
    ax.axhline(1.0, color="grey", lw=0.8)
    for r in rows:
        ax.plot(ACCEPTANCE, [r["speedup"][a] for a in ACCEPTANCE], marker="o", ms=3,
                label=f"{r['variant']} {r['mla_case']} (t2/t1 {r['ratio']:.2f})")
    ax.plot(ACCEPTANCE, [1 + a for a in ACCEPTANCE], color="grey", ls=":", label="t2 = t1 (1 + acceptance)")
    styles = ["-", "--", "-.", ":"]
    for i, (k, v) in enumerate(_acceptances(b).items()):
        ax.axvline(v, color="#2ca02c", lw=0.9, ls=styles[i % len(styles)], alpha=0.7, label=f"{k} {v:.1%}")
    ax.set_xlabel("acceptance of the MTP draft")
    ax.set_ylabel("decode tokens/s speedup")
    ax.set_title(f"MTP decode speedup model — {b['_label']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save(fig, out_dir, "mtp_speedup.png", written)
