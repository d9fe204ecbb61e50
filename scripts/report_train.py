"""FP8 training section for scripts/report.py: studies.fp8_train_lm, a tiny byte-level language model
with an MTP head trained in a BF16 and an FP8 recipe per seed. Writes a short paragraph, one table
row per (recipe, seed) with the final held-out evaluation, tokens/s and skipped steps, the relative
FP8 loss gap per seed and its mean ± std beside V3's < 0.25% claim, the mean MTP acceptance per
recipe beside V3's 85-90%, the corpus and the weights files, and a link to scripts/plot.py's
fp8_train_lm.png. A study row {"skipped"|"error"} is noted instead. Also the step-time table of the
fp8_train benchmarks (train_step_section).
"""
import math
import re

from bundle_io import finite


def _pct(v, decimals=3):
    f = finite(v)
    return "n/a" if f is None else f"{100 * f:+.{decimals}f}%"


def _fix(v, decimals):
    f = finite(v)
    return "n/a" if f is None else f"{f:.{decimals}f}"


def _mean_std(values):
    vals = [f for f in map(finite, values) if f is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    return m, (math.sqrt(sum((x - m) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0)


V3_GAP_BOUND = 0.0025          # V3-TR §3.3: the FP8 run's relative loss error stays below 0.25%
V3_ACCEPTANCE = (0.85, 0.90)   # V3-TR §5.4.3: second-token acceptance 85-90%


def _gap_verdict(mean, std):
    """The held-out gap against V3's bound, with the spread over seeds taken into account."""
    if mean is None:
        return "Verdict: no held-out gap was measured."
    where = f"{_pct(mean)} ± {_pct(std).lstrip('+')}"
    if abs(mean) + std < V3_GAP_BOUND:
        return f"Verdict: the held-out gap, {where}, is inside V3's 0.25% bound here, spread over seeds included."
    if abs(mean) - std > V3_GAP_BOUND:
        return f"Verdict: the held-out gap, {where}, is outside V3's 0.25% bound here."
    return f"Verdict: the held-out gap, {where}, straddles V3's 0.25% bound: these seeds do not decide it."


def _acceptance_verdict(greedy):
    if greedy is None:
        return ""
    lo, hi = V3_ACCEPTANCE
    side = "below" if greedy < lo else "above" if greedy > hi else "inside"
    return (f"Verdict: greedy acceptance {100 * greedy:.1f}% is {side} V3's range; this model has no attention "
            "(the main model predicts from one byte, the MTP head from two), so the figure compares the recipes, not V3's rate.")


def fp8_train_lm_table(rows, cell, table, plot_link):
    rows = [r for r in rows if isinstance(r, dict)]
    notes = [r for r in rows if r.get("skipped") is True or r.get("error")]
    runs = sorted((r for r in rows if r.get("kind") == "run"), key=lambda r: (str(r.get("recipe")), r.get("seed") or 0))
    if not runs:
        if notes:
            return [f"Not run: {cell(r.get('reason') or r.get('error'))}" + ("" if r.get("skipped") else " (error)")
                    for r in notes] + [""]
        return []
    gaps = sorted((r for r in rows if r.get("kind") == "gap"), key=lambda r: r.get("seed") or 0)
    summary = next((r for r in rows if r.get("kind") == "summary"), {})
    model = runs[0].get("model") or {}
    steps = summary.get("steps") or runs[0].get("steps")
    model = cell(', '.join(f'{k} {v}' for k, v in model.items())) if model else 'model n/a'
    out = [f"A tiny byte-level language model with one MTP module (docs/fp8-train.md; {model}), "
           f"trained {cell(steps)} steps in a BF16 and an FP8 recipe from the same seed (initial weights); the final "
           "held-out evaluation per run. MTP acceptance = speculative verification of the MTP's draft for byte "
           "i + 2 (made at i) against the main model's distribution at i + 1, teacher-forced on held-out text "
           "(reference/mtp_accept.hpp): greedy (argmax against argmax) and at temperature 1 (the expected "
           "acceptance sum min(p, q) of rejection sampling); accuracy = next-byte top-1. With no attention the main "
           "model is a bigram model, so the acceptance is not V3's setting.", ""]
    body = [[cell(r.get("recipe")), cell(r.get("seed")), _fix(r.get("heldout_main"), 4), _fix(r.get("heldout_mtp"), 4),
             _pct(r.get("mtp_acceptance"), 1).lstrip("+"), _pct(r.get("mtp_acceptance_t1_expected"), 1).lstrip("+"),
             _pct(r.get("main_accuracy"), 1).lstrip("+"),
             _fix(r.get("tokens_per_s"), 0), cell(r.get("skipped_steps"))] for r in runs]
    out += table(["recipe", "seed", "held-out loss", "MTP loss", "acceptance greedy", "acceptance T=1", "next-byte accuracy",
                  "tokens/s", "skipped steps"], body, "fp8_train_lm")

    claim = cell(summary.get("v3_loss_gap_claim") or "< 0.25% (V3-TR §3.3)")
    last = gaps[0].get("last_steps") if gaps else None
    if gaps:
        out += [f"Relative FP8 loss gap (FP8 − BF16) / BF16 per seed (V3 claim: {claim}); training = mean main loss "
                f"over the last {cell(last)} steps, held-out = the final evaluation:", ""]
        body = [[cell(g.get("seed")), _pct(g.get("train_gap_rel")), _pct(g.get("heldout_gap_rel"))] for g in gaps]
        mean_std = []
        for key in ("train_gap_rel", "heldout_gap_rel"):
            m, s = _mean_std([g.get(key) for g in gaps])
            m, s = summary.get(f"{key}_mean", m), summary.get(f"{key}_std", s)
            mean_std.append(f"{_pct(m)} ± {_pct(s).lstrip('+')}")
        body.append([f"mean ± std ({len(gaps)})"] + mean_std)
        out += table(["seed", "training gap", "held-out gap"], body)
        m, sd = _mean_std([g.get("heldout_gap_rel") for g in gaps])
        m, sd = summary.get("heldout_gap_rel_mean", m), summary.get("heldout_gap_rel_std", sd)
        out += [_gap_verdict(finite(m), finite(sd) or 0.0), ""]

    acc = []
    for recipe in dict.fromkeys(r.get("recipe") for r in runs):
        m, _ = _mean_std([r.get("mtp_acceptance") for r in runs if r.get("recipe") == recipe])
        m = m if m is not None else summary.get(f"mtp_acceptance_{recipe}")
        t, _ = _mean_std([r.get("mtp_acceptance_t1_expected") for r in runs if r.get("recipe") == recipe])
        acc.append(f"{cell(recipe)} {_pct(m, 1).lstrip('+')} greedy / {_pct(t, 1).lstrip('+')} at T=1")
    greedy, _ = _mean_std([r.get("mtp_acceptance") for r in runs])
    out += [f"MTP acceptance, mean over seeds: {', '.join(acc)} (V3 claim: "
            f"{cell(summary.get('v3_acceptance_claim') or '85-90% (V3-TR §5.4.3)')}). {_acceptance_verdict(greedy)}", ""]
    corpora = list(dict.fromkeys(r.get("corpus") for r in runs if r.get("corpus")))
    weights = [r.get("weights") for r in runs if r.get("weights")]
    out += [f"Corpus: {cell(corpora) if corpora else 'n/a'}.", "",
            f"Weights: {', '.join(f'`{w}`' for w in weights) if weights else 'none saved'}.", ""]
    for r in notes:
        out += [f"Note: {cell(r.get('reason') or r.get('error'))}", ""]
    link = plot_link("fp8_train_lm.png")
    if link:
        out += [f"Plot: [fp8_train_lm.png]({link}) (loss curves; relative FP8 gap per seed beside ±0.25%).", ""]
    return out


STEP_FAST = {"fp8": "cuda_fp8", "bf16": "cublas_bf16"}  # the tensor-core step of each recipe
STEP_CASE = re.compile(r"^(linear|swiglu) (fp8|bf16) (m=\d+ k=\d+ n=\d+)\b")


def train_step_section(bundle, rows, cell, table, labelled=False):
    """fp8_train benchmark rows: per layer shape, each variant's step time and tokens/s, and the FP8
    tensor-core step's speedup over the BF16 cuBLAS step measured in the same run (issue 7's target)."""
    times = {}
    for r in rows:
        m = STEP_CASE.match(r["case"])
        t = finite(r["time_ns"])
        if r["component"] != "fp8_train" or not m or t is None:
            continue
        times[(m.group(1) + " " + m.group(3), m.group(2), r["variant"])] = t
    if not times:
        return []
    body = []
    for shape in dict.fromkeys(k[0] for k in times):
        tokens = int(re.search(r"m=(\d+)", shape).group(1))
        fast = {rec: times.get((shape, rec, v)) for rec, v in STEP_FAST.items()}
        speedup = fast["bf16"] / fast["fp8"] if fast["fp8"] and fast["bf16"] else None
        for (s, rec, variant), t in times.items():
            if s == shape:
                body.append([cell(shape), rec, cell(variant), cell(t / 1e6), cell(tokens / (t * 1e-9)),
                             cell(speedup) if variant == STEP_FAST["fp8"] else ""])
    return ["## FP8 training step" + (f" — {bundle['_label']}" if labelled else ""), "",
            "One training step (Fprop, Dgrad, Wgrad, AdamW) per layer shape and recipe: time, tokens/s, and the FP8 "
            f"tensor-core step's (`{STEP_FAST['fp8']}`) speedup over the BF16 step (`{STEP_FAST['bf16']}`) in this run "
            "(docs/fp8-train.md).", ""] + \
        table(["layer shape", "recipe", "variant", "ms / step", "tokens/s", "FP8 speedup over BF16"], body)
