"""Helpers shared by the command-line tests (correctness/cli_*_test.py): run a command and demand
its exit status, and find lines by pattern in its output."""
import re
import subprocess
import sys


def run(cmd, expect_rc):
    """stdout + stderr of cmd; exits the test with both tails unless it exits expect_rc."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect_rc}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def expect_lines(out, patterns, what):
    """Exits the test unless every regex in patterns matches a line of out (re.M)."""
    for pattern in patterns:
        if not re.search(pattern, out, re.M):
            sys.exit(f"FAIL: {what}: no line matching {pattern!r} in:\n{out}")
