#!/usr/bin/env python3
"""Golden FP8 1x128 quantization from torch on the CPU, one entry per quantizer convention.

  generate [--out FILE]   write the golden file (default datasets/golden/fp8_quant_torch.json)
  verify [--golden FILE]  re-run torch and compare: exit 0 with a one-line summary when equal,
                          exit 1 naming the first differences otherwise, exit 2 for an
                          unreadable file or a missing torch

torch is needed only here (to regenerate or re-verify); the C++ test
Golden/TorchQuant.* (correctness/fp8_quant_golden_test.cpp) reads the file without it.

Each convention is computed with torch exactly as the code it is named after writes it
(x bf16 [M, K], tiles of 1x128, x_amax = x.view(M, -1, 128).abs().float().amax(2).clamp(1e-4)):
  divide       sf = x_amax / 448.0; codes = (x.float() / sf)           inference/kernel.py act_quant (y = x / s)
  reciprocal   sf = x_amax / 448.0; codes = (x * (1.0 / sf))           DeepGEMM deep_gemm/utils/math.py
                                                                       per_token_cast_to_fp8
  fused_torch  codes = (x * (448.0 / x_amax)); sf = x_amax / 448.0     DeepEP tests/utils.py per_token_cast_to_fp8
  fused        codes = (x * (full(448.0) / x_amax))  (a tensor-by-tensor IEEE quotient, which torch
               computes as one division; the form of DeepEP's CUDA kernels, kFP8Amax / amax)
with ue8m0 scales sf = DeepGEMM's ceil_to_ue8m0(x_amax / 448.0) and every convention but divide
computes x * (1.0 / sf) (1/sf is exact then, so all four agree). Codes are .to(torch.float8_e4m3fn).
`448.0 / t` with a Python scalar is Tensor.__rtruediv__ = t.reciprocal() * 448.0, two roundings;
the file's "torch_semantics" records that check on every tile amax of the data.

Data: bf16 tensors [32, 1024] (256 tiles each), seeded torch.Generator per distribution,
including "ties" sets whose x / s lands exactly on an E4M3 rounding midpoint. Stored as base64
little-endian arrays: x (bf16 bits), per scale format the scales (f32) and the divide codes, and
for each convention the [flat index, code] pairs where its codes differ from divide's.
"""
import argparse
import base64
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import UserError, atomic_write, main_guard  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: {e.name} is not installed (torch is needed only to regenerate or verify this golden file; "
          "a CPU build is enough: pip install torch numpy)", file=sys.stderr)
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GOLDEN = os.path.join(REPO, "datasets", "golden", "fp8_quant_torch.json")
GENERATOR = "scripts/crosscheck_torch_quant.py"
CONVENTIONS = ("divide", "reciprocal", "fused", "fused_torch")
SCALE_FMTS = ("f32", "ue8m0")
ROWS, COLS = 32, 1024
FMAX = 448.0


def e4m3_positive_values():
    """All finite positive E4M3 values, ascending, as float64."""
    codes = torch.arange(1, 0x7F, dtype=torch.uint8)  # 0x7f is NaN
    return codes.view(torch.float8_e4m3fn).double().numpy()


def ties_data(g, kind):
    """x whose x / s is an E4M3 value ('exact'), a midpoint between two ('mid'), with s = m
    (m from {1.25, 1.5, 1.75, 3, 5, 7} x 2^j) or s a power of two ('pow2'); one element per tile is
    +-448 m, so amax = 448 m and s = m exactly. Every value is a bf16 value (checked)."""
    vals = e4m3_positive_values()
    pts = (vals[:-1] + vals[1:]) / 2 if kind in ("mid", "pow2") else vals
    idx = torch.randint(0, len(pts), (ROWS, COLS), generator=g).numpy()
    x = pts[idx]
    if kind == "pow2":
        m = np.exp2(torch.randint(-20, 10, (ROWS, COLS // 128), generator=g).double().numpy())
    else:
        base = np.array([1.25, 1.5, 1.75, 3.0, 5.0, 7.0])
        m = base[torch.randint(0, len(base), (ROWS, COLS // 128), generator=g).numpy()]
        m = m * np.exp2(torch.randint(-12, 6, (ROWS, COLS // 128), generator=g).double().numpy())
    x = x.reshape(ROWS, -1, 128) * m[:, :, None]
    pos = torch.randint(0, 128, (ROWS, COLS // 128), generator=g).numpy()
    r, t = np.meshgrid(np.arange(ROWS), np.arange(COLS // 128), indexing="ij")
    x[r, t, pos] = FMAX * m
    sign = torch.randint(0, 2, (ROWS, COLS), generator=g).numpy().reshape(ROWS, -1, 128) * 2 - 1
    x = torch.from_numpy((x * sign).reshape(ROWS, COLS))
    xb = x.to(torch.bfloat16)
    if not torch.equal(xb.double(), x):
        raise AssertionError(f"ties_{kind}: a value is not representable in bf16")
    return xb


def datasets():
    """(name, x bf16 [ROWS, COLS]) for every distribution; seeds are fixed per name."""
    out = []
    specs = [
        ("normal", lambda g: torch.randn(ROWS, COLS, generator=g)),
        ("uniform", lambda g: torch.rand(ROWS, COLS, generator=g) * 2 - 1),
        ("small_2^-12", lambda g: torch.randn(ROWS, COLS, generator=g) * 2.0 ** -12),
        ("floor_1e-6", lambda g: torch.randn(ROWS, COLS, generator=g) * 1e-6),  # amax below the 1e-4 floor
        ("lognormal_wide", lambda g: torch.exp(torch.randn(ROWS, COLS, generator=g) * 3)
            * (torch.randint(0, 2, (ROWS, COLS), generator=g) * 2 - 1)),
        ("outliers", lambda g: torch.randn(ROWS, COLS, generator=g)
            * torch.where(torch.rand(ROWS, COLS, generator=g) < 0.01, 100.0, 1.0)),
        ("ties_mid", lambda g: ties_data(g, "mid")),
        ("ties_exact", lambda g: ties_data(g, "exact")),
        ("ties_pow2", lambda g: ties_data(g, "pow2")),
    ]
    for seed, (name, fn) in enumerate(specs):
        g = torch.Generator().manual_seed(1000 + seed)
        out.append((name, fn(g).to(torch.bfloat16).contiguous()))
    return out


def ceil_to_ue8m0(x):
    """DeepGEMM deep_gemm/utils/math.py ceil_to_ue8m0 (exponent + 1 unless the mantissa is zero)."""
    bits = x.abs().float().view(torch.int)
    exp = ((bits >> 23) & 0xFF) + (bits & 0x7FFFFF).bool().int()
    return (exp.clamp(1, 254) << 23).view(torch.float)


def quantize(x, conv, fmt):
    """(scales f32 [M, K/128], codes uint8 [M, K]) as the code named by `conv` computes them."""
    m, k = x.shape
    x_view = x.view(m, -1, 128)
    x_amax = x_view.abs().float().amax(dim=2).view(m, -1).clamp(1e-4)
    sf = x_amax / 448.0
    if fmt == "ue8m0":
        sf = ceil_to_ue8m0(sf)
    if conv == "divide":
        y = x_view.float() / sf.unsqueeze(2)
    elif conv == "reciprocal" or fmt == "ue8m0":
        y = x_view * (1.0 / sf.unsqueeze(2))
    elif conv == "fused_torch":
        y = x_view * (448.0 / x_amax.unsqueeze(2))
    elif conv == "fused":
        y = x_view * (torch.full_like(x_amax, 448.0) / x_amax).unsqueeze(2)
    else:
        raise ValueError(conv)
    assert y.dtype == torch.float32
    return sf.contiguous(), y.to(torch.float8_e4m3fn).view(m, k).view(torch.uint8).contiguous()


def b64(t):
    return base64.b64encode(t.contiguous().numpy().tobytes()).decode("ascii")


def torch_semantics(xs):
    """Bit counts over every tile amax: how torch evaluates the scalar-by-tensor forms."""
    a = torch.cat([x.view(x.shape[0], -1, 128).abs().float().amax(dim=2).clamp(1e-4).flatten() for x in xs])
    an = a.numpy()
    f32 = np.float32
    rdiv = (448.0 / a).numpy()
    one = (1.0 / a).numpy()
    by = (a / 448.0).numpy()
    with np.errstate(all="ignore"):
        recip_times = (f32(1) / an).astype(f32) * f32(448)
        quotient = f32(448) / an
    return {
        "amax_values": int(a.numel()),
        "rdiv_448_equals_reciprocal_times_448": int((rdiv.view(np.uint32) == recip_times.view(np.uint32)).sum()),
        "rdiv_448_equals_ieee_quotient": int((rdiv.view(np.uint32) == quotient.view(np.uint32)).sum()),
        "rdiv_1_equals_ieee_reciprocal": int((one.view(np.uint32) == (f32(1) / an).view(np.uint32)).sum()),
        "div_448_equals_ieee_quotient": int((by.view(np.uint32) == (an / f32(448)).view(np.uint32)).sum()),
    }


def generate_doc():
    sets, counts = [], {f: {} for f in SCALE_FMTS}
    data = datasets()
    for name, x in data:
        entry = {"name": name, "rows": x.shape[0], "cols": x.shape[1], "x_bf16": b64(x.view(torch.int16))}
        for fmt in SCALE_FMTS:
            res = {c: quantize(x, c, fmt) for c in CONVENTIONS}
            base_s, base_c = res["divide"]
            for c in CONVENTIONS:
                if not torch.equal(res[c][0].view(torch.int), base_s.view(torch.int)):
                    raise AssertionError(f"{name} {fmt}: {c} scales differ from divide's")
            diffs = {}
            for c in CONVENTIONS:
                idx = torch.nonzero(res[c][1].flatten() != base_c.flatten()).flatten()
                diffs[c] = [[int(i), int(res[c][1].flatten()[i])] for i in idx]
            for i, a in enumerate(CONVENTIONS):
                for b in CONVENTIONS[i + 1:]:
                    n = int((res[a][1] != res[b][1]).sum())
                    counts[fmt].setdefault(f"{a} vs {b}", {})[name] = n
            entry[fmt] = {"scales_f32": b64(base_s), "codes_divide": b64(base_c), "code_diffs_from_divide": diffs}
        sets.append(entry)
    per_set = ROWS * COLS
    summary = {}
    for fmt in SCALE_FMTS:
        summary[fmt] = {}
        for pair, by_set in counts[fmt].items():
            rnd = sum(v for k, v in by_set.items() if not k.startswith("ties"))
            n_rnd = sum(1 for k in by_set if not k.startswith("ties"))
            summary[fmt][pair] = {"per_set": by_set,
                                  "fraction_non_ties": rnd / (n_rnd * per_set),
                                  "fraction_all": sum(by_set.values()) / (len(by_set) * per_set)}
    return {"generator": GENERATOR, "torch_version": torch.__version__, "numpy_version": np.__version__,
            "elem": "e4m3", "tile": "1x128", "conventions": list(CONVENTIONS), "scale_fmts": list(SCALE_FMTS),
            "torch_semantics": torch_semantics([x for _, x in data]),
            "differing_codes": summary, "sets": sets}


def dumps(doc):
    """One data set per line, so that diffs of the golden file stay readable."""
    head = {k: v for k, v in doc.items() if k != "sets"}
    body = ",\n".join(json.dumps(s, separators=(",", ":")) for s in doc["sets"])
    return json.dumps(head, indent=1)[:-2] + ',\n "sets": [\n' + body + "]}\n"


def load_golden(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (make it with: generate --out {path})")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: malformed JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("sets"), list):
        raise UserError(f"{path}: field 'sets': missing or not an array")
    return doc


def compare(golden, fresh, limit=10):
    """Human-readable differences (at most `limit`), their number, and the data sets compared."""
    diffs = []
    g_sets = {s.get("name"): s for s in golden["sets"]}
    f_sets = {s["name"]: s for s in fresh["sets"]}
    for name in sorted(set(g_sets) | set(f_sets)):
        if name not in g_sets or name not in f_sets:
            diffs.append(f"set {name}: only in the {'golden file' if name in g_sets else 'regenerated data'}")
            continue
        g, f = g_sets[name], f_sets[name]
        for key in ("rows", "cols", "x_bf16"):
            if g.get(key) != f[key]:
                diffs.append(f"set {name}: {key} differs (inputs changed: regenerate)")
        for fmt in SCALE_FMTS:
            gf, ff = g.get(fmt, {}), f[fmt]
            for key in ("scales_f32", "codes_divide"):
                if gf.get(key) != ff[key]:
                    diffs.append(f"set {name} {fmt}: {key} differs")
            for c in CONVENTIONS:
                a = {i: v for i, v in gf.get("code_diffs_from_divide", {}).get(c, [])}
                b = {i: v for i, v in ff["code_diffs_from_divide"][c]}
                for i in sorted(set(a) | set(b)):
                    if a.get(i) != b.get(i):
                        diffs.append(f"set {name} {fmt} {c}: element {i}: golden {a.get(i, 'same as divide')}, "
                                     f"installed torch gives {b.get(i, 'same as divide')}")
    for key in ("torch_semantics",):
        if golden.get(key) != fresh[key]:
            diffs.append(f"{key}: golden {golden.get(key)}, installed torch gives {fresh[key]}")
    return diffs[:limit], len(diffs), len(g_sets)


def summary_line(doc):
    s = doc["differing_codes"]["f32"]
    return ", ".join(f"{pair}: {v['fraction_non_ties'] * 100:.3f}%" for pair, v in s.items())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True, metavar="{generate,verify}")
    g = sub.add_parser("generate", help="write the golden file from the installed torch")
    g.add_argument("--out", default=DEFAULT_GOLDEN, metavar="FILE", help="golden file to write (default: %(default)s)")
    v = sub.add_parser("verify", help="compare a golden file with the installed torch (exit 1 on a difference)")
    v.add_argument("--golden", default=DEFAULT_GOLDEN, metavar="FILE", help="golden file to check (default: %(default)s)")
    args = p.parse_args()

    torch.set_num_threads(1)  # elementwise results do not depend on it; keeps the run quiet on shared cores
    fresh = generate_doc()
    tiles = sum(s["rows"] * s["cols"] // 128 for s in fresh["sets"])
    if args.mode == "generate":
        if os.path.isdir(args.out):
            raise UserError(f"{args.out}: --out is a folder, expected a file name")
        text = dumps(fresh)
        atomic_write(args.out, text)
        print(f"wrote {args.out}: {len(fresh['sets'])} sets, {tiles} tiles, {len(text) / 1e6:.2f} MB "
              f"(torch {torch.__version__}); f32 codes differing (non-ties sets): {summary_line(fresh)}")
        return 0
    golden = load_golden(args.golden)
    diffs, total, compared = compare(golden, fresh)
    versions = f"golden from torch {golden.get('torch_version', '?')}, installed torch {torch.__version__}"
    if total:
        print(f"MISMATCH {args.golden}: {total} difference{'' if total == 1 else 's'} ({versions}); first:")
        for d in diffs:
            print(f"  {d}")
        return 1
    print(f"OK {args.golden}: {compared} sets, {tiles} tiles, {len(CONVENTIONS)} conventions x "
          f"{len(SCALE_FMTS)} scale formats equal ({versions})")
    return 0


if __name__ == "__main__":
    main_guard(main)
