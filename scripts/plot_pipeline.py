"""Pipeline timelines for scripts/plot.py: one PNG per schedule from studies.pipeline_timeline
(reference/pipeline.hpp; docs/pipeline.md), drawn like DualPipe's README figure: one row per rank,
one cell per chunk (F, B, Bi = input-grad backward, W, and F&B as a boxed cell, forward half over
backward half), micro-batch numbers in the cells (reverse-direction micro-batches primed), the
bubble per rank in the title beside Table 2's formula (from studies.pipeline_summary when it has
the same run).
"""
import matplotlib.patches as mpatches

# (face colour, hatch) per kind and direction; direction 1 exists only for DualPipe.
STYLE = {
    ("F", 0): ("#f6b26b", None), ("F", 1): ("#ffe599", None),
    ("B", 0): ("#6fa8dc", None), ("B", 1): ("#93c47d", None),
    ("Bi", 0): ("#9fc5e8", "///"), ("Bi", 1): ("#b6d7a8", "///"),
    ("W", 0): ("#b4a7d6", None), ("W", 1): ("#d5a6bd", None),
}


def _runs(rows):
    """(schedule, pp, micro_batches) -> that run's rows, in first-seen order."""
    runs = {}
    for r in rows:
        if all(k in r for k in ("schedule", "rank", "start", "end", "kind")):
            runs.setdefault((r["schedule"], r.get("pp"), r.get("micro_batches")), []).append(r)
    return runs


def _label(mb, d, v):
    return f"{mb}'" if d == 1 and not v else f"{mb}"


def _tone(r, ranks, v, second=False):
    """Colour family: DualPipe's reverse direction, or DualPipeV's return leg (stages PP/2..PP-1)."""
    if v:
        return 1 if r.get("stage_b" if second else "stage", 0) >= ranks else 0
    return r.get("dir_b" if second else "dir", 0)


def _cell(ax, x0, x1, y, kind, d, text, half=None, border=False):
    face, hatch = STYLE.get((kind, d), ("#cccccc", None))
    h = 0.8 if half is None else 0.4
    y0 = y if half == "top" else y - 0.4  # rank rows are centred on y; "top" is the upper half
    ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, h, facecolor=face, hatch=hatch,
                                    edgecolor="black" if border else "#555555", linewidth=0.4))
    if text and x1 - x0 >= 0.6:
        ax.text((x0 + x1) / 2, y0 + h / 2, text, ha="center", va="center", fontsize=5.5 if half else 6.5)


def plot_pipeline_timeline(bundles, out_dir, written, save, plt):
    drawn = set()
    for b in bundles:
        studies = b.get("studies") or {}
        summary = {(r.get("schedule"), r.get("pp"), r.get("micro_batches")): r
                   for r in studies.get("pipeline_summary") or [] if isinstance(r, dict)}
        for (schedule, pp, mb), rows in _runs(studies.get("pipeline_timeline") or []).items():
            if schedule in drawn:  # one PNG per schedule: the first bundle that has it
                continue
            drawn.add(schedule)
            ranks = 1 + max(r["rank"] for r in rows)
            makespan = max(r["end"] for r in rows)
            busy = [0.0] * ranks
            for r in rows:
                busy[r["rank"]] += r["end"] - r["start"]
            bubbles = sorted({round(makespan - x, 6) for x in busy})
            fig, ax = plt.subplots(figsize=(max(8.0, min(26.0, makespan * 0.16)), 0.5 * ranks + 1.6))
            v = schedule == "dualpipev"
            for r in rows:
                y = -r["rank"]
                t = _tone(r, ranks, v)
                if r["kind"] == "F&B":
                    tb = _tone(r, ranks, v, second=True)
                    _cell(ax, r["start"], r["end"], y, "F", t, _label(r["mb"], t, v), "top")
                    _cell(ax, r["start"], r["end"], y, "B", tb, _label(r.get("mb_b", 0), tb, v), "bottom")
                    ax.add_patch(mpatches.Rectangle((r["start"], y - 0.4), r["end"] - r["start"], 0.8, fill=False,
                                                    edgecolor="black", linewidth=1.4))
                else:
                    _cell(ax, r["start"], r["end"], y, r["kind"], t, _label(r["mb"], t, v))
            ax.set_xlim(0, makespan)
            ax.set_ylim(-ranks + 0.4, 0.6)
            ax.set_yticks([-i for i in range(ranks)], [f"rank {i}" for i in range(ranks)], fontsize=8)
            ax.set_xlabel("time (chunk-time units)")
            s = summary.get((schedule, pp, mb)) or {}
            formula = (f"; Table 2 {s['table2_formula']} = {s['table2_bubble']:g}"
                       if "table2_formula" in s and "table2_bubble" in s else "")
            bub = ", ".join(f"{x:g}" for x in bubbles)
            ax.set_title(f"{schedule}: PP {pp}, {mb} micro-batches, {ranks} devices; makespan {makespan:g}, "
                         f"bubble per rank {bub}{formula}", fontsize=9)
            kinds = set()
            for r in rows:
                t = _tone(r, ranks, v)
                if r["kind"] == "F&B":
                    kinds |= {("F", t), ("B", _tone(r, ranks, v, second=True))}
                else:
                    kinds.add((r["kind"], t))
            other = " (return leg of the V)" if v else " (reverse dir, primed)"
            names = {"F": "forward", "B": "backward (full)", "Bi": "backward (input grad)", "W": "weight grad"}
            handles = [mpatches.Patch(facecolor=STYLE[k][0], hatch=STYLE[k][1], edgecolor="#555555",
                                      label=names[k[0]] + (other if k[1] == 1 else ""))
                       for k in STYLE if k in kinds]
            if any(r["kind"] == "F&B" for r in rows):
                handles.append(mpatches.Patch(fill=False, edgecolor="black", linewidth=1.4,
                                              label="F&B: forward (top) overlapped with backward (bottom)"))
            ax.legend(handles=handles, fontsize=7, ncol=min(5, len(handles)), loc="upper center",
                      bbox_to_anchor=(0.5, -0.1 - 0.4 / max(ranks, 1)), frameon=False)
            save(fig, out_dir, f"pipeline_{schedule}.png", written)
    if not drawn:
        print("note: no studies.pipeline_timeline in any bundle; skipping pipeline_<schedule>.png")
