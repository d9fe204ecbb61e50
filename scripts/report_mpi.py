"""The MPI section of scripts/report.py, from the bundle's "mpi" object (dsv3 run's MPI phase,
tools/run_mpi.cpp; docs/bundle-schema.md): the ep case over one process per rank (times, the busiest
rank's bytes per link on the V3 path and in nccl-tests' all-to-all terms, identity with the
simulated execution and the order-free checks) and the MPI all-to-all sweep. The formulas are in
docs/ep.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import fixed  # noqa: E402


def _mb(v):
    return fixed(v, 1, 1e-6)


def _gbs(v):
    return f"{v:.3g}" if isinstance(v, (int, float)) else "n/a"


def _ep_rows(jobs, cell):
    rows = []
    for j in jobs:
        r = j.get("result") or {}
        if "dispatch" not in r:
            continue
        verdict = "identical, checks pass" if r.get("identical") and not j.get("error") else "**FAILED**"
        for phase in ("dispatch", "combine"):
            p = r[phase]

            def busiest(link):  # rank -1: no rank sent over this link
                rank = p.get(f"{link}_rank")
                return f"{_mb(p.get(f'{link}_bytes'))} (rank {cell(rank)})" if isinstance(rank, int) and rank >= 0 else "0"

            rows.append([cell(r.get("case")), cell(r.get("processes")), phase, verdict, fixed(p.get("seconds"), 1, 1e3),
                         busiest("ib"), _gbs(p.get("ib_gbs")), busiest("nvlink"), _gbs(p.get("nvlink_gbs")),
                         _gbs(p.get("algbw_gbs")), _gbs(p.get("busbw_gbs"))])
    return rows


def mpi_section(bundle, cell, table, label=""):
    mpi = bundle.get("mpi")
    if mpi is None:
        return []
    out = ["## Expert parallelism over MPI processes" + (f" — {label}" if label else ""), ""]
    if mpi.get("skipped"):
        return out + [f"Not run: {cell(mpi['skipped'])}", ""]
    jobs = mpi.get("jobs") or []
    if not jobs:
        return out + ["No MPI job matched the run's --filter.", ""]
    out += ["One process per rank under mpirun, on this machine only: the processes share its cores and memory, so the "
            "times are the reference's costs (packing, quantization, the experts' FP64 arithmetic) and the MPI "
            "library's shared-memory path, not a network's. Bytes are the busiest rank's: on the V3 path (IB = sends "
            "to another node, NVLink = sends inside the node, forwards included) and in nccl-tests' all-to-all terms "
            "(algbw, busbw). Formulas: docs/ep.md.", ""]
    rows = _ep_rows(jobs, cell)
    if rows:
        out += table(["case", "processes", "phase", "result", "ms", "IB MB", "IB GB/s", "NVLink MB", "NVLink GB/s",
                      "algbw GB/s", "busbw GB/s"], rows, "ep over MPI")
    for j in jobs:
        if j.get("error"):
            out += [f"- **{cell(j.get('item'))} failed**: {cell(j['error'])} (log: `{cell(j.get('log'))}`)"]
    if any(j.get("error") for j in jobs):
        out += [""]
    for j in jobs:
        r = j.get("result") or {}
        if r.get("bench") != "mpi_alltoall":
            continue
        sweep = r.get("rows") or []
        wrong = sum(x.get("wrong", 0) for x in sweep)
        n = sweep[0].get("ranks") if sweep else j.get("processes")
        out += [f"MPI all-to-all over {cell(n)} processes (nccl-tests' alltoall_perf form; size = bytes each rank sends "
                f"in total; every received byte checked: {wrong} wrong):", ""]
        out += table(["size (B)", "per peer (B)", "time (µs)", "algbw GB/s", "busbw GB/s", "#wrong"],
                     [[cell(x.get("size_bytes")), cell(x.get("bytes_per_peer")), fixed(x.get("time_us"), 2),
                       _gbs(x.get("algbw_gbs")), _gbs(x.get("busbw_gbs")), cell(x.get("wrong"))] for x in sweep],
                     "mpi_alltoall")
    return out
