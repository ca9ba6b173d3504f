"""Small edges of the command line (issue 27, item 10): help as the docs write it, `-h`,
defaults that agree across verbs, Ctrl-C during `gen`, lock files of failed calls, a
weights file that is no weights file, and 0 circles as a count."""

from __future__ import annotations

import csv
import os
import signal
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COUNTNET, assert_one_line_error, run_countnet, staged_pngs, wait_until

COMMANDS = [
    [], ["gen"], ["train"], ["sweep"], ["predict"], ["export"], ["weights"],
    ["weights", "import"], ["select-transforms"], ["cache"], ["cache", "info"],
    ["cache", "clear"], ["cost"], ["report"],
]  # fmt: skip


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # help lines unwrapped


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "countnet")
def test_h_is_help_with_plain_usage_and_untyped_flags(cli, wide, command):
    long, short = cli(*command, "--help"), cli(*command, "-h")
    assert long.returncode == 0 and short.returncode == 0, short.stdout + short.stderr
    assert short.stdout == long.stdout and "Usage: countnet" in long.stdout
    assert "<bool>" not in long.stdout  # a flag takes no value: no type beside it
    usage = next(ln for ln in long.stdout.splitlines() if "Usage:" in ln)
    assert "{" not in usage, usage


@pytest.mark.parametrize(
    "command, usage",
    [
        (["train"], "Usage: countnet train [OPTIONS] [DATA]"),
        (["predict"], "Usage: countnet predict [OPTIONS] RUN IMAGES..."),
        (["cost"], "Usage: countnet cost [OPTIONS] [ARCHS]..."),
        (["weights", "import"], "Usage: countnet weights import [OPTIONS] FILE"),
    ],
)
def test_usage_lines_name_arguments_as_the_docs_do(cli, wide, command, usage):
    assert usage in cli(*command, "--help").stdout


def test_lr_and_weights_help_say_what_they_take(cli, wide):
    text = " ".join(cli("train", "--help").stdout.replace("│", " ").split())  # rich's box
    lr = text[text.index("--lr ") : text.index("--lr-policy")]
    assert "valley when fine-tuning" in lr and "slide on a countnet counting set" in lr, lr
    assert "no LR finder" in lr
    weights = text[text.index("--weights") : text.index("--epochs")]
    assert ".safetensors" in weights, weights


def test_cost_defaults_to_trains_head(tmp_path):
    from countnet_classify.spec import RunSpec

    out = tmp_path / "cost.csv"
    proc = run_countnet(
        "cost", "resnet18", "--size", "32", "--classes", "3", "--no-timing", "--out", out
    )
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    assert row["head"] == RunSpec.head == "fastai"


def test_ctrl_c_during_gen_is_reported_once_by_the_parent(tmp_path):
    """Ctrl-C reaches the terminal's whole process group: the pool's workers as well."""
    out = tmp_path / "big"
    args = ["gen", "--range", "1-5", "--per-class", "3000", "--size", "64", "--workers", "2"]
    proc = subprocess.Popen(
        [COUNTNET, *args, "--quiet", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell's foreground job
    )
    wait_until(staged_pngs(tmp_path, "big"), proc, 120, "generation")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip() == "error: interrupted", err  # no "Process SpawnPoolWorker-1:"
    assert list(tmp_path.iterdir()) == []  # no partial folder, no lock file of its own


def test_a_failed_call_leaves_no_lock_file(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "0003.png")
    runs = tmp_path / "runs"
    proc = run_countnet("train", tmp_path / "d" / "0003.png", "--no-pretrained", "--runs-dir", runs)
    assert_one_line_error(proc, "not a folder of class folders")
    assert not runs.exists()  # was: .0003.png_resnet34.lock, then an empty runs/


def test_a_failed_call_keeps_a_runs_dir_it_did_not_make(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = run_countnet("train", tmp_path / "absent", "--no-pretrained", "--runs-dir", runs)
    assert_one_line_error(proc, "does not exist")
    assert runs.is_dir() and list(runs.iterdir()) == []


def test_weights_import_of_a_csv_says_what_it_expected(tmp_path):
    bad = tmp_path / "some.csv"
    bad.write_text("a,b\n1,2\n")
    proc = run_countnet("weights", "import", bad)
    assert_one_line_error(proc, "not a readable weights file", ".pth", ".safetensors")
    assert "pop from empty list" not in proc.stderr


def test_zero_circles_is_a_count(tmp_path):
    out = tmp_path / "z"
    proc = run_countnet(
        "gen", "--range", "0-2", "--per-class", "4", "--size", "32", "--radius", "3",
        "--valid-pct", "0.25", "--quiet", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0", "1", "2"]
    blank = [np.asarray(Image.open(p).convert("RGB")) for p in (out / "train" / "0").iterdir()]
    assert len(blank) == 3 and all((im == 255).all() for im in blank)  # the background only
    with open(out / "manifest.csv") as f:
        zeros = [r for r in csv.DictReader(f) if r["count"] == "0"]
    assert len(zeros) == 4 and all(r["circles"] == "[]" for r in zeros)
