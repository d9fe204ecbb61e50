#!/usr/bin/env python3
"""`dsv3 forward` with a checkpoint directory (docs/mtp.md): the seeded tiny checkpoint with its MTP
layer is written as two shards (--save-checkpoint) and read back, giving the same top tokens and
the MTP draft; with the MTP shard removed, the main model still runs (exit 0, the same top tokens)
and one note line says the MTP layer is absent, also in --json; --layers 1 says the MTP layer is
not loaded.

Usage: cli_forward_test.py <path to dsv3> <scratch dir>
"""
import json
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in correctness/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_util import expect_lines, run  # noqa: E402


def top_tokens(out):
    m = re.search(r"top tokens after the prompt: ([0-9 ]+)$", out, re.M)
    if not m:
        sys.exit(f"FAIL: no top-tokens line in:\n{out}")
    return m.group(1)


def main(dsv3, scratch):
    shutil.rmtree(scratch, ignore_errors=True)
    ckpt = os.path.join(scratch, "tiny-mtp")
    base = [dsv3, "forward", "--model", "tiny-test", "--mtp", "--prompt", "6"]
    random = run(base + ["--save-checkpoint", ckpt], 0)
    expect_lines(random, [r"^wrote \d+ tensors to .*tiny-mtp \([1-9]\d* in the MTP shard\)$", r"^MTP at position 4 "], "save")

    full = run(base + [ckpt], 0)
    expect_lines(full, [r"^model tiny-test: 2 of 2 layers \+ MTP from ", r"^MTP at position 4 "], "checkpoint with the MTP shard")
    if top_tokens(full) != top_tokens(random):
        sys.exit(f"FAIL: the saved checkpoint gives other top tokens:\n{random}\n{full}")
    if "note:" in full:
        sys.exit(f"FAIL: a note although the MTP layer is there:\n{full}")

    os.remove(os.path.join(ckpt, "model-00002-of-00002.safetensors"))
    out_json = os.path.join(scratch, "no_mtp.json")
    absent = run(base + [ckpt, "--json", out_json], 0)
    notes = [line for line in absent.splitlines() if line.startswith("note:")]
    if len(notes) != 1 or not re.match(r"^note: MTP layer absent: the checkpoint has no tensor model\.layers\.2\.\*", notes[0]):
        sys.exit(f"FAIL: expected one note line saying the MTP layer is absent:\n{absent}")
    expect_lines(absent, [r"^model tiny-test: 2 of 2 layers from ", r"the main model runs, MTP outputs are unavailable$"], "no MTP shard")
    if "MTP at position" in absent:
        sys.exit(f"FAIL: an MTP draft without the MTP layer:\n{absent}")
    if top_tokens(absent) != top_tokens(full):
        sys.exit(f"FAIL: the main model's top tokens changed without the MTP shard:\n{full}\n{absent}")
    with open(out_json) as f:
        row = json.load(f)
    if "MTP layer absent" not in row.get("mtp_note", ""):
        sys.exit(f"FAIL: --json has no mtp_note: {row}")

    partial = run(base + [ckpt, "--layers", "1"], 0)
    expect_lines(partial, [r"^note: MTP layer model\.layers\.2\.\* not loaded: only 1 of 2 main layers"], "--layers 1")
    print("cli forward: checkpoint round trip, missing MTP layer note, partial-load note: ok")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
