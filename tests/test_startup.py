"""What a `countnet` process does before its work (BENCHMARKS.md, "Start-up"): the light
verbs load neither torch nor fastai, and help does not load the generator's NumPy and Pillow
either (seen in a fresh `countnet` process through Python's own import log,
PYTHONPROFILEIMPORTTIME); a run on files an earlier run screened does not decode them again
(seen through an audit hook on open). Nothing here is timed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import COUNTNET, assert_one_line_error

TRAIN = ("--no-pretrained", "--arch", "lenet", "--lr", "0.01", "--lr-find-iters", "0",
         "--size", "32", "--epochs", "1", "--quiet")  # fmt: skip
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


OPENED: list[str] | None = None  # the image files opened while a test records, else None


def _record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and str(args[0]).endswith(".png"):
        OPENED.append(str(args[0]))


def test_a_run_on_screened_files_does_not_decode_them_again(cli, tiny, tmp_path):
    """The workflow trains several runs on one set: the second run and later ones take the
    first one's screening (and its decoded cache) instead of decoding every image again; a
    file changed since is screened afresh. Screening opens each image twice (its header,
    then a full decode), the cache build once more; what else opens images (the figures'
    file loaders) opens the same in every run."""
    global OPENED
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    n = len([p for p in data.rglob("*.png")])
    sys.addaudithook(_record_opens)  # for the rest of this process: idle unless OPENED is set

    def train(name: str) -> tuple[object, list[str]]:
        global OPENED
        OPENED = []
        try:
            r = cli("train", data, *TRAIN, "--runs-dir", tmp_path / "runs", "--name", name)
        finally:
            opened, OPENED = OPENED, None
        assert r.returncode == 0, r.stderr
        return r, [p for p in opened if p.startswith(str(data))]

    _, first = train("a")
    assert set(first) == {str(p) for p in data.rglob("*.png")}
    r, second = train("b")
    assert len(second) <= len(first) - 3 * n, (len(first), len(second))
    assert "skipped 0 unreadable" in r.stderr
    damaged = data / "train" / "2" / sorted(os.listdir(data / "train" / "2"))[0]
    damaged.write_bytes(damaged.read_bytes()[:40])
    r, third = train("c")
    assert len(third) >= len(second) + 2 * (n - 1)  # the changed set is screened again
    assert "skipped 1 unreadable" in r.stderr
