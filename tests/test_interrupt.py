"""Stopping `countnet train` as users and schedulers do — Ctrl-C (SIGINT), kill/systemd/
SLURM (SIGTERM) — and resuming with the hint it prints, run as printed in a fresh process;
and partial runs damaged as they are in the wild (a deleted or truncated checkpoint, an
empty or missing config.yaml, a temp file left by a kill during a write)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from countnet.tables import read_csv
from tests.conftest import COUNTNET, assert_one_line_error, run_countnet
from tests.test_resume import checkpoint_epoch

OPTIONS = ["--no-pretrained", "--arch", "resnet18", "--size", "32", "--epochs", "3", "--lr",
           "0.01", "--lr-find-iters", "0", "--bs", "8", "--workers", "0", "--device", "cpu",
           "--quiet"]  # fmt: skip


def signal_after_checkpoint(cmd: list, partial: Path, epoch: int, sig: int, cwd=None):
    """Run ``cmd`` in a fresh process and send it ``sig`` from outside once its checkpoint
    holds ``epoch``, as a user's Ctrl-C or a scheduler's SIGTERM would; wait for it."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = partial.parent / "sig.out", partial.parent / "sig.err"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, cwd=cwd, env=env)
    deadline = time.time() + 600
    while not ((partial / "checkpoint.pt").is_file() and checkpoint_epoch(partial) >= epoch):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"never reached epoch {epoch}: {err_path.read_text()}")
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    proc.wait(timeout=120)
    done = subprocess.CompletedProcess(cmd, proc.returncode, out_path.read_text(),
                                       err_path.read_text())  # fmt: skip
    out_path.unlink()
    err_path.unlink()
    return done


def printed_hint(stderr: str) -> list[str]:
    """The resume command of the one error line, split as a shell would split it."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    hint = re.search(r"continue with `([^`]+)`", errors[0])
    assert hint, errors[0]
    argv = shlex.split(hint.group(1))
    assert argv[:3] == ["countnet", "train", "--resume"], argv
    return argv[1:]


def assert_same_metrics(run: Path, whole: Path) -> None:
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in read_csv(run / "metrics.csv")]
    want = [{k: v for k, v in r.items() if k != "time"} for r in read_csv(whole / "metrics.csv")]
    assert drop_time == want


def files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory) -> Path:
    """The uninterrupted run every resumed one must equal."""
    runs = tmp_path_factory.mktemp("whole")
    r = run_countnet("train", tiny, *OPTIONS, "--runs-dir", runs, "--name", "whole")
    assert r.returncode == 0, r.stderr
    return runs / "whole"


@pytest.fixture(scope="module")
def terminated(tiny, tmp_path_factory):
    """A run stopped by SIGTERM once epoch 2 is checkpointed (so checkpoint.pt and the one
    before it exist); returns the process, its runs dir and a pristine copy of its partial
    folder for the damaged-folder tests."""
    runs = tmp_path_factory.mktemp("term") / "my runs"  # a space: the hint must quote it
    partial = runs / ".t.partial"
    runs.mkdir()
    cmd = [COUNTNET, "train", tiny, *OPTIONS, "--runs-dir", runs, "--name", "t"]
    proc = signal_after_checkpoint(cmd, partial, 2, signal.SIGTERM)
    pristine = tmp_path_factory.mktemp("pristine") / ".t.partial"
    if partial.is_dir():
        shutil.copytree(partial, pristine)
    return proc, runs, pristine


def test_sigterm_stops_with_a_hint_that_resumes(terminated, whole):
    proc, runs, _ = terminated
    assert proc.returncode == 143, proc.stderr
    assert_one_line_error(proc, "terminated (SIGTERM)", "--runs-dir", alone=False)
    partial = runs / ".t.partial"
    assert not (runs / "t").exists() and (partial / "checkpoint.prev.pt").is_file()
    # a kill during a checkpoint write leaves its temp file: never carried into the run
    (partial / ".checkpoint.pt.x1y2.tmp").write_bytes(b"\0" * 4096)
    r = run_countnet(*printed_hint(proc.stderr))  # as printed, in a fresh process
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (runs / "t").glob(".*")] == []
    assert not list((runs / "t").glob("checkpoint*"))
    assert_same_metrics(runs / "t", whole)


def test_ctrl_c_stops_with_a_hint_that_resumes(tiny, whole, tmp_path):
    # the default runs dir: the hint has no --runs-dir and runs from the same folder
    cmd = [COUNTNET, "train", tiny, *OPTIONS, "--name", "intr"]
    proc = signal_after_checkpoint(cmd, tmp_path / "runs" / ".intr.partial", 1, signal.SIGINT,
                                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert_one_line_error(proc, "interrupted", alone=False)
    argv = printed_hint(proc.stderr)
    assert "--runs-dir" not in argv
    r = run_countnet(
        *argv, "--epochs", "4", cwd=tmp_path
    )  # a different option beside --resume: refused
    assert_one_line_error(r, "different options", "epochs: 3 -> 4")
    r = run_countnet(*argv, "--quiet", "--workers", "0", cwd=tmp_path)  # resume-free ones: fine
    assert r.returncode == 0, r.stderr
    assert_same_metrics(tmp_path / "runs" / "intr", whole)


def damaged(terminated, tmp_path: Path) -> Path:
    """A copy of the SIGTERM'd run's partial folder to damage."""
    partial = tmp_path / ".t.partial"
    shutil.copytree(terminated[2], partial)
    return partial


def resume(tmp_path: Path, *extra):
    return run_countnet("train", "--resume", "--name", "t", "--runs-dir", tmp_path, *extra)


def test_resume_refuses_a_run_without_checkpoints(terminated, tmp_path):
    partial = damaged(terminated, tmp_path)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (partial / name).unlink()
    before = files(partial)
    r = resume(tmp_path)
    assert r.returncode == 2
    assert_one_line_error(r, "no checkpoint", "--force")
    assert files(partial) == before


@pytest.mark.parametrize("text", ["", "run: [unclosed\n"], ids=["empty", "unparsable"])
def test_resume_reports_a_damaged_config(terminated, tmp_path, text):
    partial = damaged(terminated, tmp_path)
    (partial / "config.yaml").write_text(text)
    before = files(partial)
    r = resume(tmp_path)
    assert r.returncode == 2
    assert_one_line_error(r, "config.yaml is damaged", "--force")
    assert files(partial) == before


def test_resume_keeps_a_checkpoint_without_config(terminated, tiny, tmp_path):
    partial = damaged(terminated, tmp_path)
    (partial / "config.yaml").unlink()
    before = files(partial)
    for args in ([], [tiny, *OPTIONS]):  # with and without its options: never deleted
        r = resume(tmp_path, *args)
        assert r.returncode == 2
        assert_one_line_error(r, "no config.yaml", "--force")
        assert files(partial) == before


def test_resume_reports_an_empty_checkpoint(terminated, tmp_path):
    partial = damaged(terminated, tmp_path)
    (partial / "checkpoint.prev.pt").unlink()
    (partial / "checkpoint.pt").write_bytes(b"")
    before = files(partial)
    r = resume(tmp_path)
    assert r.returncode == 2  # not 130 ("interrupted"): nobody pressed Ctrl-C
    assert_one_line_error(r, "checkpoint.pt is empty", "--force")
    assert files(partial) == before


def test_resume_falls_back_to_the_previous_checkpoint(terminated, whole, tmp_path):
    partial = damaged(terminated, tmp_path)
    ckpt = partial / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated
    r = resume(tmp_path)
    assert r.returncode == 0, r.stderr
    used = [ln for ln in r.stderr.splitlines() if "checkpoint.prev.pt" in ln]
    assert len(used) == 1 and "checkpoint.pt is unreadable" in used[0], r.stderr
    assert "Traceback" not in r.stderr
    assert_same_metrics(tmp_path / "t", whole)
