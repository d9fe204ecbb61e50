"""Shared helpers for plot.py and report.py: load and check result bundles
(docs/bundle-schema.md, schema "dsv3bench.bundle/1"), pick benchmark rows,
write files atomically, and turn user errors into a one-line message + exit 2.

Not a command of its own; import it from a script in this directory.
"""
import json
import math
import os
import sys
import tempfile

SCHEMA = "dsv3bench.bundle/1"
STATUSES = ("pass", "fail", "skip")
TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class UserError(Exception):
    """Bad input or unwritable output: reported as 'error: ...', exit status 2."""


def main_guard(main):
    """Run main(); print UserError / OSError as one line on stderr and exit 2."""
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def atomic_write(path, data):
    """Write str or bytes to path via a temp file in the same directory + os.replace."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- checking

def _is_num(v):
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, field, msg):
        raise UserError(f"{self.path}: field '{field}': {msg}")

    def obj(self, v, field):
        if not isinstance(v, dict):
            self.fail(field, f"expected an object, got {type(v).__name__}")
        return v

    def lst(self, v, field):
        if not isinstance(v, list):
            self.fail(field, f"expected an array, got {type(v).__name__}")
        return v

    def str_(self, d, key, field, required=True):
        if key not in d or d[key] is None:
            if required:
                self.fail(f"{field}.{key}", "missing")
            return
        if not isinstance(d[key], str):
            self.fail(f"{field}.{key}", f"expected a string, got {type(d[key]).__name__}")

    def num(self, d, key, field, required=False):
        if key not in d:
            if required:
                self.fail(f"{field}.{key}", "missing")
            return
        if not _is_num(d[key]):
            self.fail(f"{field}.{key}", f"expected a number or null, got {json.dumps(d[key])[:40]}")


def check_bundle(b, path):
    """Raise UserError naming the file and field if b does not follow the schema."""
    c = _Checker(path)
    c.obj(b, "(top level)")
    if b.get("schema") != SCHEMA:
        c.fail("schema", f"expected {SCHEMA!r}, got {b.get('schema')!r}")
    c.str_(b, "created_utc", "", required=False)
    for key in ("git", "host", "device", "toolchain", "config", "benchmark_context"):
        if b.get(key) is not None:
            c.obj(b[key], key)
    dev = b.get("device") or {}
    if "present" in dev and not isinstance(dev["present"], bool):
        c.fail("device.present", "expected true or false")
    for i, row in enumerate(c.lst(b.get("ceilings", []), "ceilings")):
        f = f"ceilings[{i}]"
        c.obj(row, f)
        c.str_(row, "name", f)
        c.str_(row, "unit", f)
        c.num(row, "value", f, required=True)
    for i, row in enumerate(c.lst(b.get("correctness", []), "correctness")):
        f = f"correctness[{i}]"
        c.obj(row, f)
        for key in ("component", "variant", "case"):
            c.str_(row, key, f)
        if row.get("status") not in STATUSES:
            c.fail(f"{f}.status", f"expected one of {'/'.join(STATUSES)}, got {row.get('status')!r}")
        c.str_(row, "reason", f, required=False)
        for j, out in enumerate(c.lst(row.get("outputs", []), f"{f}.outputs")):
            fo = f"{f}.outputs[{j}]"
            c.obj(out, fo)
            c.str_(out, "name", fo)
            c.str_(out, "tolerance", fo, required=False)
            if "pass" in out and not isinstance(out["pass"], bool):
                c.fail(f"{fo}.pass", "expected true or false")
            for key in ("n", "mismatches", "nan_mismatches", "inf_mismatches", "max_abs", "max_rel", "cos_dist", "nmse"):
                c.num(out, key, fo)
            if out.get("worst") is not None:
                w = c.obj(out["worst"], f"{fo}.worst")
                c.num(w, "got", f"{fo}.worst")
                c.num(w, "ref", f"{fo}.worst")
    for i, row in enumerate(c.lst(b.get("benchmarks", []), "benchmarks")):
        f = f"benchmarks[{i}]"
        c.obj(row, f)
        c.str_(row, "name", f)
        c.num(row, "real_time", f, required=not (row.get("error_occurred") or row.get("skipped")))
        if "time_unit" in row and row["time_unit"] not in TIME_UNIT_NS:
            c.fail(f"{f}.time_unit", f"expected one of {'/'.join(TIME_UNIT_NS)}, got {row['time_unit']!r}")
        for key in ("GBps", "frac_ceiling", "TFLOPps"):
            c.num(row, key, f)
    studies = b.get("studies") or {}
    c.obj(studies, "studies")
    for name, rows in studies.items():
        for i, row in enumerate(c.lst(rows, f"studies.{name}")):
            c.obj(row, f"studies.{name}[{i}]")
    for name, keys in (("fp8_scaling", ("distribution", "scheme", "format")),
                       ("fp8_equal_bits", ("distribution", "format"))):
        for i, row in enumerate(studies.get(name, [])):
            f = f"studies.{name}[{i}]"
            for key in keys:
                c.str_(row, key, f)
            for key in ("rel_l2", "max_rel", "sqnr_db", "bits"):
                c.num(row, key, f)
    for i, row in enumerate(studies.get("kv_cache", [])):
        f = f"studies.kv_cache[{i}]"
        if row.get("skipped") or row.get("error"):
            continue
        for key in ("model", "format"):
            c.str_(row, key, f)
        for key in ("context", "bytes", "bytes_per_token"):
            c.num(row, key, f, required=True)
        for key in ("bytes_per_token_per_layer", "elems_per_token_per_layer", "ratio_to_baseline", "ratio_to_bf16"):
            c.num(row, key, f)


def load_bundle(path):
    """Read and check one bundle; adds '_path' and '_label' keys."""
    try:
        with open(path, encoding="utf-8") as f:
            b = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file")
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a bundle.json file")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})")
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}")
    check_bundle(b, path)
    b["_path"] = path
    dev = b.get("device") or {}
    name = dev.get("name") if dev.get("present") else None
    b["_label"] = f"{name or 'cpu-only'} {(b.get('created_utc') or '')[:10]}".strip()
    return b


def load_bundles(paths):
    """Load several bundles; labels that repeat get ' #2', ' #3', ..."""
    bundles = [load_bundle(p) for p in paths]
    seen = {}
    for b in bundles:
        n = seen[b["_label"]] = seen.get(b["_label"], 0) + 1
        if n > 1:
            b["_label"] += f" #{n}"
    return bundles


# --------------------------------------------------------------------------- benchmarks

def benchmark_rows(bundle):
    """Google Benchmark rows reduced to one per benchmark name.

    When a benchmark has aggregate rows (repetitions), only its "median" aggregate is
    kept; otherwise its plain row. Returns dicts with name, component, variant, case,
    time, unit, time_ns, GBps, frac_ceiling, TFLOPps, frac_gemm_ceiling, error (message or None).
    """
    rows = bundle.get("benchmarks", [])

    def base(r):
        return r.get("run_name") or r["name"]

    with_aggregates = {base(r) for r in rows if "aggregate_name" in r}
    out, seen = [], set()
    for r in rows:
        name = base(r)
        if name in with_aggregates and r.get("aggregate_name") != "median":
            continue
        if name in seen:  # repeated iteration rows without aggregates: keep the first
            continue
        seen.add(name)
        parts = name.split("/", 2)
        unit = r.get("time_unit", "ns")
        time = r.get("real_time")
        err = r.get("error_message") or (r.get("skipped") if isinstance(r.get("skipped"), str) else None) or ("error" if r.get("error_occurred") else None)
        if r.get("error_occurred") or r.get("skipped"):
            time = None
            err = err or "skipped"
        out.append({
            "name": name,
            "component": parts[0],
            "variant": parts[1] if len(parts) > 1 else "",
            "case": parts[2] if len(parts) > 2 else "",
            "time": time, "unit": unit,
            "time_ns": None if time is None else time * TIME_UNIT_NS[unit],
            "GBps": r.get("GBps"), "frac_ceiling": r.get("frac_ceiling"), "TFLOPps": r.get("TFLOPps"),
            "frac_gemm_ceiling": r.get("frac_gemm_ceiling"),
            "error": err,
        })
    return out


def finite(v):
    """v as float if it is a finite number, else None."""
    if _is_num(v) and v is not None and math.isfinite(v):
        return float(v)
    return None


def fixed(v, decimals, scale=1.0):
    """v * scale with a fixed number of decimals (the calculators' tables compare against printed figures), 'n/a' when not finite."""
    f = finite(v)
    return "n/a" if f is None else f"{f * scale:.{decimals}f}"


def fmt_num(v):
    """3 significant digits, plain notation for 0.001 <= |v| < 1e6, 'n/a' for null/non-finite."""
    if isinstance(v, bool) or v is None:
        return "n/a" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return str(v)
    f = finite(v)
    if f is None:
        return "n/a"
    a = abs(f)
    if a == 0:
        return "0"
    if a < 1e-3 or a >= 1e6:
        return f"{f:.2e}"
    if a >= 100:
        return f"{f:.0f}"
    return f"{f:.3g}"
