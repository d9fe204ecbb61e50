#!/usr/bin/env python3
"""Golden FP8/BF16/FP16 codec vectors from ml_dtypes, for cross-checking the C++ codecs.

  generate [--out FILE]   write the golden file (default datasets/golden/fp8_codecs_ml_dtypes.json)
  verify [--golden FILE]  regenerate with the installed ml_dtypes/numpy and compare:
                          exit 0 with a one-line summary when equal, exit 1 naming the
                          first differing entries otherwise, exit 2 for an unreadable file

Formats: e4m3 = ml_dtypes.float8_e4m3fn, e5m2 = ml_dtypes.float8_e5m2,
bf16 = ml_dtypes.bfloat16, f16 = numpy.float16.
  decode: [code, float32 bits of the decoded value] (null when it decodes to NaN);
          8-bit formats: all 256 codes; 16-bit: every 32nd code plus edge/special codes.
  encode: [float32 input bits, output code] for a deterministic float32 sweep: every
          decoded finite value, each exact midpoint between adjacent representable values
          (the ties) and its float32 neighbours, the subnormal region, values around the
          max, +/-Inf, NaN, +/-0, the negatives of all of these, and 2000 values from
          numpy.random.default_rng(1234), log-uniform over 2^-20..2^20 with random sign.
"""
import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_io import UserError, atomic_write, main_guard  # noqa: E402

try:
    import ml_dtypes
    import numpy as np
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: {e.name} is not installed: pip install -r scripts/requirements.txt", file=sys.stderr)
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GOLDEN = os.path.join(REPO, "datasets", "golden", "fp8_codecs_ml_dtypes.json")
GENERATOR = "scripts/crosscheck_ml_dtypes.py"
FORMATS = {  # name -> (dtype, unsigned view of its codes)
    "e4m3": (ml_dtypes.float8_e4m3fn, np.uint8),
    "e5m2": (ml_dtypes.float8_e5m2, np.uint8),
    "bf16": (ml_dtypes.bfloat16, np.uint16),
    "f16": (np.float16, np.uint16),
}
NOTES = (
    "Conversions are ml_dtypes' (numpy's for f16): float32 -> format rounds to nearest, ties to even, "
    "and does NOT saturate: a finite input at or beyond the tie above the largest finite value becomes "
    "NaN for e4m3 (float8_e4m3fn has no Inf: 0x7f/0xff; e.g. 464 -> 448 (tie to even) but 464.00003 -> NaN) "
    "and +/-Inf for e5m2 (0x7c/0xfc), bf16 and f16; +/-Inf input -> NaN for e4m3. "
    "decode: [code, float32 bits], null when the code decodes to NaN; 8-bit formats list all 256 codes, "
    "16-bit formats every 32nd code plus edge and special codes. "
    "encode: [float32 input bits, output code]; inputs: every decoded finite value of the format "
    "(for 16-bit formats those of the decode list), exact midpoints between adjacent representable values "
    "and their float32 nextafter neighbours, subnormal region, around the max, +/-Inf, NaN, +/-0, negatives, "
    "and 2000 values from numpy.random.default_rng(1234) log-uniform over 2^-20..2^20 with random sign."
)
# 16-bit codes always included in the decode list (edges of f16 and bf16; harmless for the other)
SPECIAL16 = [0x0000, 0x8000, 0x03FF, 0x0400, 0x83FF, 0x8400, 0x7BFF, 0xFBFF, 0x7C00, 0x7C01, 0x7E00, 0x7FFF,
             0xFC00, 0xFC01, 0xFE00, 0xFFFF, 0x007F, 0x0080, 0x807F, 0x8080, 0x7F7F, 0xFF7F, 0x7F80, 0x7F81,
             0x7FC0, 0xFF80, 0xFF81, 0xFFC0, 0x3C00, 0x3F80, 0xBC00, 0xBF80]


def f32_bits(values):
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def decode_codes(name):
    dtype, utype = FORMATS[name]
    if utype == np.uint8:
        return np.arange(256, dtype=np.uint8)
    codes = set(range(0, 0x10000, 32)) | set(range(0x0001, 0x0011)) | set(range(0x8001, 0x8011)) | set(SPECIAL16)
    return np.array(sorted(codes), dtype=np.uint16)


def decode(codes, name):
    dtype, utype = FORMATS[name]
    return codes.astype(utype).view(dtype).astype(np.float32)


def encode(x32, name):
    dtype, utype = FORMATS[name]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x32, dtype=np.float32).astype(dtype).view(utype)


def random_inputs():
    rng = np.random.default_rng(1234)
    mags = np.exp2(rng.uniform(-20.0, 20.0, 2000))
    signs = np.where(rng.integers(0, 2, 2000) == 1, -1.0, 1.0)
    return (mags * signs).astype(np.float32)


def sweep(name):
    """The float32 inputs of the encode list for one format, sorted by bit pattern, unique."""
    dtype, utype = FORMATS[name]
    fi = ml_dtypes.finfo(dtype)
    sel = decode(decode_codes(name), name).astype(np.float64)
    sel = sel[np.isfinite(sel)]
    every = decode(np.arange(1 << (8 * np.dtype(utype).itemsize)), name).astype(np.float64)
    grid = np.unique(every[np.isfinite(every)])  # all representable finite values, ascending (+/-0 merged)
    lo, hi = grid[:-1], grid[1:]
    if utype != np.uint8:  # 16-bit: only the pairs next to a selected value
        keep = np.isin(lo, sel) | np.isin(hi, sel)
        lo, hi = lo[keep], hi[keep]
    mids = (lo + hi) / 2.0
    mids = mids[mids.astype(np.float32).astype(np.float64) == mids].astype(np.float32)  # exact ties only
    inf32 = np.float32(np.inf)
    vmax, min_sub, min_norm = float(fi.max), float(fi.smallest_subnormal), float(fi.smallest_normal)
    step = vmax - float(grid[-2])  # spacing just below the max
    tie_over = np.float32(vmax + step / 2)
    extra = np.array([
        0.0, vmax, vmax * 1.03, vmax + step, 2 * vmax, 1e10, 1e30, float(np.finfo(np.float32).max),
        min_sub / 2, min_sub / 4, 0.75 * min_sub, 1.5 * min_sub, min_norm, min_norm - min_sub / 2,
        float(np.finfo(np.float32).smallest_subnormal), float(np.finfo(np.float32).smallest_normal),
    ] + [k * min_sub / 4 for k in range(65)], dtype=np.float32)
    near = np.concatenate([mids, extra, [tie_over, np.float32(min_sub / 2), np.float32(min_norm)]]).astype(np.float32)
    nbrs = np.concatenate([np.nextafter(near, inf32), np.nextafter(near, -inf32)])
    xs = np.concatenate([sel.astype(np.float32), near, nbrs, [inf32]]).astype(np.float32)
    xs = np.concatenate([xs, -xs, random_inputs()])
    bits = np.unique(np.concatenate([f32_bits(xs), np.array([0x7FC00000, 0xFFC00000], np.uint32)]))
    return bits


def generate_doc():
    np.seterr(over="ignore", invalid="ignore")  # overflow to Inf/NaN is part of the sweep
    formats = {}
    for name in FORMATS:
        codes = decode_codes(name)
        vals = decode(codes, name)
        dec = [[int(c), None if np.isnan(v) else int(b)] for c, v, b in zip(codes, vals, f32_bits(vals))]
        ins = sweep(name)
        outs = encode(ins.view(np.float32), name)
        formats[name] = {"decode": dec, "encode": [[int(i), int(o)] for i, o in zip(ins, outs)]}
    return {"generator": GENERATOR, "ml_dtypes_version": ml_dtypes.__version__, "numpy_version": np.__version__,
            "notes": NOTES, "formats": formats}


def dumps(doc):
    """Compact JSON with one [a,b] entry per line, so that diffs of the golden file stay readable."""
    head = {k: v for k, v in doc.items() if k != "formats"}
    parts = [json.dumps(head, separators=(",", ":"))[:-1] + ',"formats":{']
    for i, (name, sections) in enumerate(doc["formats"].items()):
        parts.append(("," if i else "") + json.dumps(name) + ":{")
        for j, (sec, rows) in enumerate(sections.items()):
            body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
            parts.append(("," if j else "") + json.dumps(sec) + ":[\n" + body + "]")
        parts.append("}")
    return "\n".join(parts) + "}}\n"


def load_golden(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (make it with: generate --out {path})")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: malformed JSON: {e}")

    def bad(field, msg):
        raise UserError(f"{path}: field '{field}': {msg}")

    if not isinstance(doc, dict) or not isinstance(doc.get("formats"), dict):
        bad("formats", "missing or not an object")
    for name, sections in doc["formats"].items():
        if not isinstance(sections, dict):
            bad(f"formats.{name}", "not an object")
        for sec in ("decode", "encode"):
            rows = sections.get(sec)
            if not isinstance(rows, list):
                bad(f"formats.{name}.{sec}", "missing or not an array")
            for k, r in enumerate(rows):
                if not (isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                        and (isinstance(r[1], int) or (r[1] is None and sec == "decode"))):
                    bad(f"formats.{name}.{sec}[{k}]", f"expected [int, int{' or null' if sec == 'decode' else ''}], got {r!r}")
    return doc


def hexes(v, width):
    return "NaN" if v is None else "no entry" if v is ... else f"0x{v:0{width}x}"


def compare(golden, fresh, limit=10):
    """Human-readable differences, at most `limit`, and the number of entries compared."""
    diffs, compared = [], 0
    for name in sorted(set(golden["formats"]) | set(fresh["formats"])):
        if name not in fresh["formats"] or name not in golden["formats"]:
            diffs.append(f"format {name}: only in the {'golden file' if name in golden['formats'] else 'regenerated data'}")
            continue
        for sec, (kw, vw) in (("decode", (4, 8)), ("encode", (8, 4))):
            g = {k: v for k, v in golden["formats"][name][sec]}
            f = {k: v for k, v in fresh["formats"][name][sec]}
            compared += len(g)
            for k in sorted(set(g) | set(f)):
                gv, fv = g.get(k, ...), f.get(k, ...)
                if gv != fv:
                    what = "code" if sec == "decode" else "float32 input"  # "no entry": the sweep changed
                    diffs.append(f"{name} {sec} {what} {hexes(k, kw)}: golden {hexes(gv, vw)}, "
                                 f"installed ml_dtypes gives {hexes(fv, vw)}")
    return diffs[:limit], len(diffs), compared


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True, metavar="{generate,verify}")
    g = sub.add_parser("generate", help="write the golden file from the installed ml_dtypes")
    g.add_argument("--out", default=DEFAULT_GOLDEN, metavar="FILE", help="golden file to write (default: %(default)s)")
    v = sub.add_parser("verify", help="compare a golden file with the installed ml_dtypes (exit 1 on a difference)")
    v.add_argument("--golden", default=DEFAULT_GOLDEN, metavar="FILE", help="golden file to check (default: %(default)s)")
    args = p.parse_args()

    fresh = generate_doc()
    n_dec = sum(len(f["decode"]) for f in fresh["formats"].values())
    n_enc = sum(len(f["encode"]) for f in fresh["formats"].values())
    if args.mode == "generate":
        if os.path.isdir(args.out):
            raise UserError(f"{args.out}: --out is a folder, expected a file name")
        text = dumps(fresh)
        atomic_write(args.out, text)
        print(f"wrote {args.out}: {n_dec} decode + {n_enc} encode entries over {len(fresh['formats'])} formats, "
              f"{len(text) / 1e6:.2f} MB (ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__})")
        return 0
    golden = load_golden(args.golden)
    diffs, total, compared = compare(golden, fresh)
    versions = (f"golden from ml_dtypes {golden.get('ml_dtypes_version', '?')} / numpy {golden.get('numpy_version', '?')}, "
                f"installed ml_dtypes {ml_dtypes.__version__} / numpy {np.__version__}")
    if total:
        print(f"MISMATCH {args.golden}: {total} differing entr{'y' if total == 1 else 'ies'} ({versions}); first:")
        for d in diffs:
            print(f"  {d}")
        return 1
    print(f"OK {args.golden}: {compared} entries over {len(golden['formats'])} formats equal ({versions})")
    return 0


if __name__ == "__main__":
    main_guard(main)
