"""FP8 training study for scripts/plot.py: fp8_train_lm.png from studies.fp8_train_lm (a tiny
byte-level language model with an MTP head, trained in a BF16 and an FP8 recipe per seed).
Two panels:
  (a) main (next-byte) loss over steps: training loss as thin lines (centred moving average of SMOOTH steps)
      and held-out loss as markers, one colour per recipe; seed 1 (or the first seed) dark, the other
      seeds lighter;
  (b) the relative gap (FP8 - BF16) / BF16 in percent over steps, one colour per seed: held-out
      evaluations as markers joined by a line, the smoothed training gap as a thin line, and V3's
      claim (< 0.25%, V3-TR §3.3) as dashed lines at +-0.25%.
The first bundle with step rows is drawn; a study row {"skipped"|"error"} is noted and skipped.
"""
import numpy as np

from bundle_io import finite

SMOOTH = 10
COLORS = {"bf16": "#1f77b4", "fp8": "#d62728"}
SEED_COLORS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _smooth(y, n=SMOOTH):
    """Centred moving average over n points (fewer at the ends), so that it does not lag the held-out markers."""
    c = np.cumsum(np.insert(np.asarray(y, dtype=float), 0, 0.0))
    i = np.arange(len(y))
    lo, hi = np.maximum(i - n // 2, 0), np.minimum(i + (n + 1) // 2, len(y))
    return (c[hi] - c[lo]) / (hi - lo)


def _curves(steps):
    """(recipe, seed) -> (train: {step: main loss}, held-out: {step: main loss})."""
    out = {}
    for r in steps:
        train, held = out.setdefault((r.get("recipe"), r.get("seed")), ({}, {}))
        if finite(r.get("train_main")) is not None and not r.get("skipped"):
            train[r["step"]] = r["train_main"]
        if finite(r.get("heldout_main")) is not None:
            held[r["step"]] = r["heldout_main"]
    return out


def _steps(b):
    return [r for r in (b.get("studies") or {}).get("fp8_train_lm") or []
            if isinstance(r, dict) and r.get("kind") == "step" and finite(r.get("step")) is not None]


def _note_absent(bundles):
    why = [f"{b['_label']}: {r.get('reason') or r.get('error')}" for b in bundles
           for r in (b.get("studies") or {}).get("fp8_train_lm") or []
           if isinstance(r, dict) and (r.get("skipped") or r.get("error"))]
    print("note: no studies.fp8_train_lm step rows in any bundle" + (f" ({'; '.join(why)})" if why else "")
          + "; skipping fp8_train_lm.png")


def plot_fp8_train_lm(bundles, out_dir, written, save, plt):
    b, steps = next(((b, s) for b in bundles for s in [_steps(b)] if s), (None, None))
    if not steps:
        _note_absent(bundles)
        return
    curves = _curves(steps)
    seeds = sorted({s for _, s in curves}, key=lambda s: (s != 1, s))
    recipes = [r for r in ("bf16", "fp8") if any(k[0] == r for k in curves)]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(13, 4.8))
    for seed in reversed(seeds):  # the first seed drawn last, on top
        main = seed == seeds[0]
        for recipe in recipes:
            train, held = curves.get((recipe, seed), ({}, {}))
            tag = f"{recipe} seed {seed}" if main else None
            if train:
                xs = sorted(train)
                ax_a.plot(xs, _smooth([train[x] for x in xs]), color=COLORS[recipe], linewidth=1.0,
                          alpha=0.9 if main else 0.3, label=tag and f"{tag} train (avg {SMOOTH} steps)")
            if held:
                xs = sorted(held)
                ax_a.plot(xs, [held[x] for x in xs], linestyle="none", marker="o" if recipe == "bf16" else "x",
                          markersize=6 if main else 4, color=COLORS[recipe], alpha=1.0 if main else 0.4,
                          label=tag and f"{tag} held-out")
    if len(seeds) > 1:
        ax_a.plot([], [], color="grey", alpha=0.3, label=f"seeds {', '.join(map(str, seeds[1:]))} (lighter)")
    ax_a.set_xlabel("step")
    ax_a.set_ylabel("main (next-byte) loss, nats")
    ax_a.set_title(f"(a) loss curves — {b['_label']}", fontsize=9)
    ax_a.grid(True, alpha=0.3)
    ax_a.legend(fontsize=7)

    for i, seed in enumerate(seeds):
        color = SEED_COLORS[i % len(SEED_COLORS)]
        (tb, hb), (tf, hf) = curves.get(("bf16", seed), ({}, {})), curves.get(("fp8", seed), ({}, {}))
        xs = sorted(set(tb) & set(tf))
        if xs:
            sb, sf = _smooth([tb[x] for x in xs]), _smooth([tf[x] for x in xs])
            ax_b.plot(xs, 100 * (sf - sb) / sb, color=color, linewidth=0.8, alpha=0.6,
                      label=f"seed {seed} train (avg {SMOOTH} steps)")
        xs = sorted(set(hb) & set(hf))
        if xs:
            ax_b.plot(xs, [100 * (hf[x] - hb[x]) / hb[x] for x in xs], color=color, marker="o", markersize=5,
                      linewidth=1.6, label=f"seed {seed} held-out")
    for y in (0.25, -0.25):
        ax_b.axhline(y, color="black", linestyle="--", linewidth=1.0, label="V3 claim: < 0.25%" if y > 0 else None)
    ax_b.axhline(0.0, color="grey", linewidth=0.6)
    ax_b.set_xlabel("step")
    ax_b.set_ylabel("(FP8 − BF16) / BF16 main loss, %")
    ax_b.set_title(f"(b) FP8 relative loss gap per seed — {b['_label']}", fontsize=9)
    ax_b.grid(True, alpha=0.3)
    ax_b.legend(fontsize=7, ncol=min(len(seeds), 3) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    save(fig, out_dir, "fp8_train_lm.png", written)
