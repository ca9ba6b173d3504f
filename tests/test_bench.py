"""The README's generator before/after bench runs as documented (tiny sizes; no timing is
asserted: speed lives in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gen_before_after_compares_a_revision_with_the_working_tree():
    r = subprocess.run(
        [sys.executable, "bench/gen_before_after.py", "--rev", "HEAD", "--images", "6",
         "--repeats", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("# gen_before_after") and "HEAD vs working tree" in lines[0]
    rows = [line for line in lines[1:] if "after/before" in line]
    assert [row.split()[0] for row in rows] == ["fixed", "r4-12"]
    for row in rows:
        ratio = float(row.split("after/before ")[1].split()[0])
        assert ratio > 0
