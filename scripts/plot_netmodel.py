"""Network-model plots for scripts/plot.py (docs/netmodel.md), from the first bundle with rows:

  node_limit.png    studies.node_limit: per token, over the node limit M (the last point is
                    unrestricted routing): (a) IB bytes with V3's forwarding (one IB send per
                    remote node) and without it (one per remote GPU), NVLink bytes; (b) the mean
                    nodes per token and the share of the unrestricted top-K score kept. The
                    config's M (V3: 4) is marked.
  topology.png      studies.topology: cost per endpoint against endpoints (log scale) per topology,
                    this model's figures filled, ISCA Table 3's hollow (FT2, MPFT, FT3 from the
                    formulas with fitted prices; Slim Fly and Dragonfly from the paper's counts).
  decode_limit.png  studies.decode_limit: decode tokens/s limit (ISCA §2.3.2) per case and link,
                    log scale, with the paper's printed figures as markers; scale-up rows whose EP
                    group does not fit one NVLink domain are hatched (the limit needs the whole
                    group on NVLink).
"""
from bundle_io import finite


def _rows(bundles, name, key, png):
    """(bundle, rows) of the first bundle whose studies.<name> has rows with a number at `key`; else
    prints that `png` is skipped and returns (None, None)."""
    for b in bundles:
        rows = [r for r in (b.get("studies") or {}).get(name) or [] if isinstance(r, dict) and finite(r.get(key)) is not None]
        if rows:
            return b, rows
    print(f"note: no studies.{name} rows in any bundle; skipping {png}")
    return None, None


def plot_node_limit(bundles, out_dir, written, save, plt):
    b, rows = _rows(bundles, "node_limit", "ib_bytes_per_token", "node_limit.png")
    if not rows:
        return
    rows = sorted(rows, key=lambda r: r["node_limit"])
    m = [r["node_limit"] for r in rows]
    labels = [f"{r['node_limit']}" + ("\n(unrestricted)" if r.get("unrestricted") else "") for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(m, [r["ib_bytes_per_token"] / 1e3 for r in rows], marker="o", label="IB, V3 path (one send per remote node)")
    ax.plot(m, [r["ib_bytes_per_token_no_forwarding"] / 1e3 for r in rows], marker="s", ls="--",
            label="IB without forwarding (one send per remote GPU)")
    ax.plot(m, [r["nvlink_bytes_per_token"] / 1e3 for r in rows], marker="^", label="NVLink")
    ax.set_ylabel("kB per token (dispatch + combine)")
    ax2 = axes[1]
    ax2.plot(m, [r["mean_nodes_per_token"] for r in rows], marker="o", label="mean nodes per token")
    ax2.set_ylabel("nodes per token")
    twin = ax2.twinx()
    twin.plot(m, [100 * r["score_kept"] for r in rows], marker="s", color="#d62728", label="top-K score kept (%)")
    twin.set_ylabel("share of the unrestricted top-K score (%)", color="#d62728")
    config = rows[0].get("config_limit")
    for a in axes:
        a.set_xticks(m)
        a.set_xticklabels(labels, fontsize=7)
        a.set_xlabel("node limit M")
        a.grid(True, alpha=0.3)
        if config is not None:
            a.axvline(config, color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=7)
    ax2.legend(loc="center right", fontsize=7)
    twin.legend(loc="lower right", fontsize=7)
    r0 = rows[0]
    fig.suptitle(f"Node-limited routing, {r0.get('model')}: {r0.get('ranks')} ranks, {r0.get('ranks_per_node')} per node, "
                 f"skew {r0.get('skew')}, {r0.get('tokens')} tokens (config M = {config}, dotted) — {b['_label']}", fontsize=9)
    fig.tight_layout()
    save(fig, out_dir, "node_limit.png", written)


def plot_decode_limit(bundles, out_dir, written, save, plt):
    b, rows = _rows(bundles, "decode_limit", "tokens_per_s", "decode_limit.png")
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = list(range(len(rows)))
    colors = ["#1f77b4" if r.get("link") == "scale_out" else "#ff7f0e" for r in rows]
    bars = ax.bar(x, [r["tokens_per_s"] for r in rows], color=colors)
    for bar, r in zip(bars, rows):
        if r.get("fits_nvlink_domain") is False:
            bar.set_hatch("//")
            bar.set_edgecolor("k")
    paper = [(i, r["paper"]["tokens_per_s"]) for i, r in enumerate(rows) if isinstance(r.get("paper"), dict)
             and finite(r["paper"].get("tokens_per_s")) is not None]
    if paper:
        ax.scatter([i for i, _ in paper], [v for _, v in paper], marker="D", color="k", zorder=3, label="paper (ISCA §2.3.2)")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r.get('hardware') or str(r.get('case')).replace('paper-', 'ISCA ')}\n{r.get('link')}\n{r.get('bandwidth_gbs'):g} GB/s" for r in rows],
                       fontsize=6)
    ax.set_ylabel("decode tokens/s limit (computation hidden)")
    handles = [plt.Rectangle((0, 0), 1, 1, color="#1f77b4"), plt.Rectangle((0, 0), 1, 1, color="#ff7f0e"),
               plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="k", hatch="//")]
    labels = ["scale-out (network)", "scale-up (NVLink)", "EP group larger than the NVLink domain"]
    if paper:
        handles.append(ax.collections[0])
        labels.append("paper (ISCA §2.3.2)")
    ax.legend(handles, labels, fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    r0 = rows[0]
    ax.set_title(f"Decode speed limit from EP all-to-all time: {r0.get('tokens_per_device')} tokens/device, "
                 f"{r0.get('experts_per_token')} experts/token, hidden {r0.get('hidden')}, {r0.get('n_layers')} layers — "
                 f"{b['_label']}", fontsize=9)
    fig.tight_layout()
    save(fig, out_dir, "decode_limit.png", written)


def plot_topology(bundles, out_dir, written, save, plt):
    b, rows = _rows(bundles, "topology", "cost_per_endpoint_usd", "topology.png")
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, r in enumerate(rows):
        color = f"C{i}"
        ax.scatter([r["endpoints"]], [r["cost_per_endpoint_usd"] / 1e3], color=color, s=40, zorder=3,
                   label=f"{r.get('topology')}: {r.get('name')}")
        paper = r.get("paper") if isinstance(r.get("paper"), dict) else {}
        if finite(paper.get("cost_per_endpoint_kusd")) is not None and finite(paper.get("endpoints")) is not None:
            ax.scatter([paper["endpoints"]], [paper["cost_per_endpoint_kusd"]], facecolors="none", edgecolors=color, s=120, zorder=2)
    ax.scatter([], [], facecolors="none", edgecolors="k", s=120, label="ISCA Table 3")
    ax.set_xscale("log")
    ax.set_xlabel("endpoints (GPUs)")
    ax.set_ylabel("cost per endpoint (k$)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    r0 = rows[0]
    ax.set_title(f"Network topologies at radix {r0.get('radix')}, prices fitted to ISCA Table 3 (docs/netmodel.md) — {b['_label']}",
                 fontsize=8)
    fig.tight_layout()
    save(fig, out_dir, "topology.png", written)
