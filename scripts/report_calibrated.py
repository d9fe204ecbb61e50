"""Sections for scripts/report.py from the models `dsv3 run` calibrates with its own benchmarks
after the bench phase (reference/netmodel.hpp calibrated_study_rows): studies.decode_limit_calibrated
(ISCA §2.3.2's decode limit with the compute time measured in the bundle, docs/netmodel.md) and
studies.pipeline_overlap (the communication-overlap view per hardware profile, compute modelled from
the profile's peaks beside compute measured in the bundle, docs/pipeline.md).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import fixed  # noqa: E402


def _skipped(rows):
    return [f"Not computed: {r.get('reason')}" for r in rows if r.get("skipped") or r.get("table") == "skipped"]


def decode_limit_calibrated_table(rows, cell, table):
    out = _skipped(rows)
    rows = [r for r in rows if "case" in r and "compute_us" in r]
    if not rows:
        return out + [""] if out else []
    r0 = rows[0]
    out += ["The decode limit with computation measured, not assumed hidden (docs/netmodel.md, \"Calibrated\"): "
            f"{cell(r0.get('model') or 'V3')} sizes ({cell(r0.get('tokens_per_device'))} tokens per device, "
            f"{cell(r0.get('experts_per_token'))} experts, hidden {cell(r0.get('hidden'))}); per layer = "
            f"{cell(r0.get('micro_batches'))} micro-batches x max(both all-to-alls, compute). Compute per micro-batch "
            f"and layer, measured on {cell(r0.get('compute_device'))}:", ""]
    out += table(["term", "variant", "µs", "how"],
                 [[cell(t.get("what")), cell(t.get("variant")), fixed(t.get("us"), 3), cell(t.get("how"))]
                  for t in r0.get("compute_terms") or []], "compute_terms")
    body = [[cell(r["case"]), cell(r.get("hardware") or "paper"), cell(r.get("link")), fixed(r.get("step_us"), 3),
             fixed(r.get("compute_us"), 3), fixed(r.get("layer_us"), 3), cell(r.get("bound")), fixed(r.get("tpot_ms"), 4),
             f"{r.get('tokens_per_s'):.4g}" if isinstance(r.get("tokens_per_s"), (int, float)) else "n/a"]
            for r in rows]
    out += table(["case", "hardware", "link", "all-to-alls µs", "compute µs", "layer µs", "bound", "TPOT ms",
                  "tokens/s"], body, "decode_limit_calibrated")
    if r0.get("compute_device") == "cpu-only":
        out += ["Compute measured by the CPU FP64 references: every case is compute-bound by orders of magnitude. "
                "A GPU bundle gives the machine's own figure.", ""]
    return out


def pipeline_overlap_table(rows, cell, table):
    out = _skipped(rows)
    chunks = [r for r in rows if r.get("table") == "chunk"]
    if not chunks:
        return out + [""] if out else []
    steps = {}
    for r in rows:
        if r.get("table") == "step":
            steps.setdefault((r.get("hardware"), r.get("compute")), {})[r.get("schedule")] = r
    c0 = chunks[0]
    pp = next((r.get("pp") for r in rows if r.get("table") == "step"), None)
    out = ["The communication-overlap view (V3-TR §3.2.1, Figure 4; docs/pipeline.md) on each hardware profile: "
           f"{cell(c0.get('model'))}'s training step, {cell(c0.get('tokens'))} tokens per micro-batch and device, "
           f"{cell(c0.get('layers'))} layers per stage, per layer forward times in µs. compute \"profile\": FLOPs at "
           f"{cell(c0.get('compute_efficiency'))} of the profile's peaks; \"bundle\": attention (MLA prefill + projections) and experts measured in this "
           "run; dispatch and combine always from the profile's IB and NVLink. F&B hidden: the all-to-all time of one "
           "overlapped chunk run under compute; step hidden: over every chunk of the step (DualPipe, PP "
           f"{cell(pp)}).", ""] + out
    body = []
    for c in chunks:
        key = (c.get("hardware"), c.get("compute"))
        s = steps.get(key, {})
        comp, comm = c.get("attn", 0) + c.get("mlp", 0), c.get("dispatch", 0) + c.get("combine", 0)
        dp, f1 = s.get("dualpipe", {}), s.get("1f1b", {})
        fb_hidden = c.get("fb_hidden", 0) / c["fb_comm"] if c.get("fb_comm") else None
        body.append([cell(key[0]), cell(key[1]), fixed(c.get("attn"), 1), fixed(c.get("mlp"), 1), fixed(c.get("dispatch"), 1),
                     fixed(c.get("combine"), 1), fixed(comp / comm, 2) if comm else "n/a",
                     fixed(100 * fb_hidden, 1) if fb_hidden is not None else "n/a",
                     fixed(100 * dp["hidden_fraction"], 1) if "hidden_fraction" in dp else "n/a",
                     fixed(dp.get("makespan", 0) / 1e6, 3) if dp else "n/a", fixed(f1.get("makespan", 0) / 1e6, 3) if f1 else "n/a"])
    return out + table(["hardware", "compute", "attn", "mlp", "dispatch", "combine", "compute : comm", "F&B hidden %",
                        "step hidden % (DualPipe)", "DualPipe step s", "1F1B step s"], body, "pipeline_overlap")
