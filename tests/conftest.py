"""Shared helpers: run the real `countnet` console script, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COUNTNET = shutil.which("countnet") or str(Path(sys.executable).with_name("countnet"))


def run_countnet(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("COUNTNET_DEBUG", None)
    proc = subprocess.run(
        [COUNTNET, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"countnet {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def assert_one_line_error(proc, *fragments: str) -> None:
    """Bad input: non-zero exit, exactly one line on stderr starting 'error:', no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture
def countnet():
    return run_countnet
