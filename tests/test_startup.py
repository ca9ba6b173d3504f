"""What a `countnet` process imports before its work (BENCHMARKS.md, "Start-up"): the light
verbs load neither torch nor fastai, and help does not load the generator's NumPy and Pillow
either. Seen in a fresh `countnet` process through Python's own import log
(PYTHONPROFILEIMPORTTIME), not timed."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import COUNTNET, assert_one_line_error

HEAVY = {"torch", "fastai", "torchvision", "matplotlib", "sklearn", "skimage", "onnx"}
GENERATOR = {"numpy", "PIL"}


def imported(*args: str, cwd=None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `countnet ARGS` (one process: gen with --workers 1) and the top-level packages
    it imported."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(
        [COUNTNET, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    proc.stderr = "\n".join(
        ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")
    )
    return proc, names


@pytest.mark.parametrize(
    "args", [["--help"], ["gen", "--help"], ["train", "--help"], ["report", "--help"]]
)
def test_help_loads_neither_torch_nor_the_generators_numpy(args):
    proc, names = imported(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert "typer" in names  # the log was read
    assert not names & (HEAVY | GENERATOR), sorted(names & (HEAVY | GENERATOR))


def test_gen_loads_no_torch(tmp_path):
    proc, names = imported(
        "gen", "--range", "1-2", "--per-class", "4", "--size", "32", "--radius", "3",
        "--workers", "1", "--out", str(tmp_path / "d"), "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "dataset.json").is_file()
    assert names >= GENERATOR
    assert not names & HEAVY, sorted(names & HEAVY)


def test_a_mistyped_train_option_is_reported_before_torch_loads(tmp_path):
    proc, names = imported("train", str(tmp_path), "--momentum", "2")
    assert_one_line_error(proc, "--momentum must be in [0, 1)")
    assert not names & HEAVY, sorted(names & HEAVY)
