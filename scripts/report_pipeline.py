"""Pipeline-schedule sections for scripts/report.py: studies.pipeline_summary as V3-TR Table 2
(closed forms beside the simulated figures) and studies.pipeline_timeline as one line per schedule
with its makespan, bubbles and a link to scripts/plot.py's pipeline_<schedule>.png
(reference/pipeline.hpp; docs/pipeline.md).
"""


def _g(v):
    return "—" if v is None else f"{v:g}"


def pipeline_summary_table(rows, cell, table):
    rows = [r for r in rows if "schedule" in r and "table2_bubble" in r]
    if not rows:
        return []
    out = ["Pipeline schedules simulated against V3-TR Table 2 (§3.2.1; DualPipe README for DualPipeV; v3-facts §6), "
           "with the chunk times of each row (default F 1, B 2, W 1, F&B 3, no latency: every formula exact on "
           "every rank). Bubble = makespan − the rank's busy time; activations = peak micro-batches forwarded and "
           "not yet backwarded on the fullest device; params = stages' parameters per device (docs/pipeline.md).", ""]
    body = []
    for r in rows:
        bubbles = r.get("bubble_per_rank") or []
        copies = " (2 copies)" if r.get("param_copies") == 2 else ""
        body.append([cell(r["schedule"]), _g(r.get("pp")), _g(r.get("micro_batches")), _g(r.get("devices")),
                     cell(r.get("table2_formula")), _g(r["table2_bubble"]), _g(r.get("bubble_max")),
                     _g(min(bubbles) if bubbles else None), _g(r.get("table2_activations")),
                     _g(r.get("peak_activations_max")), f"{_g(r.get('params_per_device'))}×{copies}",
                     "/".join(_g(r.get(k)) for k in ("f", "b", "w", "fb", "latency"))])
    return out + table(["schedule", "PP", "m", "devices", "bubble formula", "Table 2", "sim max", "sim min",
                        "act. Table 2", "act. sim", "params/device", "F/B/W/F&B/latency"], body, "pipeline_summary")


def pipeline_timeline_table(rows, cell, table, plot_link):
    runs = {}
    for r in rows:
        if all(k in r for k in ("schedule", "rank", "start", "end")):
            runs.setdefault((r["schedule"], r.get("pp"), r.get("micro_batches")), []).append(r)
    if not runs:
        return []
    body = []
    for (schedule, pp, mb), mine in runs.items():
        ranks = 1 + max(r["rank"] for r in mine)
        makespan = max(r["end"] for r in mine)
        busy = [0.0] * ranks
        for r in mine:
            busy[r["rank"]] += r["end"] - r["start"]
        bubbles = ", ".join(f"{x:g}" for x in sorted({round(makespan - x, 6) for x in busy}))
        link = plot_link(f"pipeline_{schedule}.png")
        body.append([cell(schedule), _g(pp), _g(mb), _g(ranks), f"{makespan:g}", bubbles, str(len(mine)),
                     f"[pipeline_{schedule}.png]({link})" if link else "—"])
    out = ["Every executed chunk of one run per schedule (PP 8 as DualPipe's figure; DualPipeV as its figure: "
           "8 stages on 4 devices, 10 micro-batches); the PNGs draw them like DualPipe's figure.", ""]
    return out + table(["schedule", "PP", "m", "devices", "makespan", "bubble per rank", "chunks", "timeline"], body)
