"""Interrupting and resuming `countnet train` as a user does: `countnet` in a fresh process,
killed from outside with SIGKILL, resumed in another fresh process. A resumed run must be
the run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from countnet.tables import read_csv
from tests.conftest import (
    COUNTNET,
    assert_one_line_error,
    run_countnet,
    save_resnet_weights,
    wait_until,
)
from tests.test_train import FAST


def checkpoint_epoch(partial: Path) -> int:
    """The epoch a run's checkpoint holds (0 without one); memory-mapped: read in ms."""
    ckpt = partial / "checkpoint.pt"
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except FileNotFoundError:
        return 0


def kill_9_when(cmd: list, ready, scratch: Path, what: str, timeout: float = 600, before_kill=None):
    """Run ``cmd`` (countnet) in a fresh process and SIGKILL it from outside as soon as
    ``ready()`` is true, as a user's kill -9 would: nothing in the process knows. Returns
    the killed process, its output read from files (a chatty child never blocks on a full
    pipe). ``before_kill(pid)`` is called just before the kill."""
    out_path, err_path = scratch / "kill9.out", scratch / "kill9.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True)
    wait_until(ready, proc, timeout, f"{what} (to be killed)", detail=err_path.read_text)
    if before_kill is not None:
        before_kill(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    done = subprocess.CompletedProcess(
        cmd, proc.returncode, out_path.read_text(), err_path.read_text()
    )
    out_path.unlink()
    err_path.unlink()
    return done


def kill_9_after_checkpoint(cmd: list, partial: Path, epoch: int, before_kill=None):
    """``kill_9_when`` the run's checkpoint holds ``epoch``; also returns the epoch its
    checkpoint held when it died."""
    seen = [None]

    def ready() -> bool:
        try:  # checkpoint.pt is replaced atomically: whole whenever it exists
            stamp = (partial / "checkpoint.pt").stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if stamp == seen[0]:
            return False
        seen[0] = stamp
        return checkpoint_epoch(partial) >= epoch

    done = kill_9_when(cmd, ready, partial.parent, f"epoch {epoch}", before_kill=before_kill)
    return done, checkpoint_epoch(partial)


def test_resume_after_kill_9(cli, tiny, tmp_path):
    # 5 epochs, killed from outside once epoch 2 is checkpointed: wherever the kill lands
    # (during epoch 3, or rarely after it), the resumed run must continue from the checkpoint.
    n = 5

    def args(*extra: str, epochs: int = n) -> list:
        return ["train", tiny, "--no-pretrained", "--epochs", str(epochs), "--device", "cpu",
                "--runs-dir", tmp_path, "--name", "k", *extra, *FAST]  # fmt: skip

    proc, e = kill_9_after_checkpoint([COUNTNET, *args()], tmp_path / ".k.partial", epoch=2)
    assert proc.returncode == -9, proc.stderr
    printed = [ln.split()[1] for ln in proc.stdout.splitlines()]  # one clean line per epoch
    assert 2 <= e < n and printed[:e] == [f"{i}/{n}" for i in range(1, e + 1)], proc.stdout
    assert len(printed) in (e, e + 1)  # the next epoch's line may precede its checkpoint
    assert "\r" not in proc.stdout + proc.stderr
    assert not (tmp_path / "k").exists() and (tmp_path / ".k.partial").is_dir()

    # Refusals need no fresh process (they stop before any training): in-process, faster.
    assert_one_line_error(cli(*args()), "interrupted run", "--resume")
    assert_one_line_error(cli(*args("--resume", epochs=n + 1)), "different options")

    # A training image rewritten in place (same name, same size) is a changed dataset.
    img = next((tiny / "train").rglob("*.png"))
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert_one_line_error(cli(*args("--resume")), "changed since run 'k' started")
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))

    before = read_csv(tmp_path / ".k.partial" / "metrics.csv")
    r = run_countnet(*args("--resume"))  # a fresh process, as a user resumes
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {e}/{n}" in r.stderr
    resumed = [ln.split()[1] for ln in r.stdout.splitlines()]
    assert resumed == [f"{i}/{n}" for i in range(e + 1, n + 1)]  # only the missing epochs
    rows = read_csv(tmp_path / "k" / "metrics.csv")
    assert [r_["epoch"] for r_ in rows] == [str(i) for i in range(1, n + 1)]
    assert rows[:e] == before[:e]
    summary = yaml.safe_load((tmp_path / "k" / "config.yaml").read_text())["summary"]
    total = sum(float(r_["time"]) for r_ in rows)  # both sessions' epochs
    assert summary["train_seconds"] == pytest.approx(total, abs=0.02)
    # This session trained (at least) the resumed epochs, not the killed session's ones.
    resumed_s = sum(float(r_["time"]) for r_ in rows[e:])
    assert resumed_s - 0.05 <= summary["session_train_seconds"] < resumed_s + 60
    assert not (tmp_path / ".k.partial").exists()
    assert not (tmp_path / "k" / "checkpoint.pt").exists()
    assert_one_line_error(cli(*args("--resume")), "already finished")


def test_resumed_run_equals_the_uninterrupted_run(cli, tiny, tmp_path):
    """fine_tune (2 frozen + 2 unfrozen epochs), killed after epoch 1 (within the frozen
    phase), after epoch 2 (the phase boundary) and after the last epoch (while its figures
    are drawn), each time resumed in a fresh process: the finished run is the one that was
    never interrupted — the same metrics table and the same weights — and its exported
    weights reproduce its final error rate."""
    wfile = tmp_path / "r18.pth"
    save_resnet_weights(wfile)

    def args(name: str) -> list:
        return ["train", tiny, "--arch", "resnet18", "--weights", wfile, "--freeze-epochs", "2",
                "--epochs", "2", "--lr", "2e-3", "--lr-find-iters", "0", "--device", "cpu",
                "--runs-dir", tmp_path, "--name", name, "--size", "32", "--bs", "8",
                "--quiet", "--workers", "0"]  # fmt: skip

    whole = run_countnet(*args("whole"))
    assert whole.returncode == 0, whole.stderr
    partial = tmp_path / ".cut.partial"
    for i, target in enumerate((1, 2, 4)):
        cmd = [COUNTNET, *args("cut"), *(["--resume"] if i else [])]
        proc, reached = kill_9_after_checkpoint(cmd, partial, epoch=target)
        # A resnet18 epoch takes a good part of a second here, the kill milliseconds after
        # the checkpoint appears: the run dies in the epoch after it (or in the figures).
        assert proc.returncode == -9 and reached == target, proc.stderr
        ckpt = torch.load(partial / "checkpoint.pt", weights_only=True)
        assert ckpt["phase"] == ("frozen" if target <= 2 else "unfrozen")
        assert {"rng", "opt", "model", "smooth_loss"} <= set(ckpt)
    assert read_csv(partial / "metrics.csv")[-1]["epoch"] == "4"
    r = run_countnet(*args("cut"), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch 4/4" in r.stderr and "already completed" in r.stderr

    want, got = (read_csv(tmp_path / n / "metrics.csv") for n in ("whole", "cut"))
    assert [m["epoch"] for m in got] == ["1", "2", "3", "4"]
    for w, g in zip(want, got, strict=True):
        assert g["error_rate"] == w["error_rate"], (want, got)
        for col in ("train_loss", "valid_loss"):
            assert float(g[col]) == pytest.approx(float(w[col]), abs=1e-5), (col, want, got)
    batch_losses = [[float(x["loss"]) for x in read_csv(tmp_path / n / "losses.csv")]
                    for n in ("whole", "cut")]  # fmt: skip
    assert batch_losses[1] == pytest.approx(batch_losses[0], abs=1e-5)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "cut"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    # The trained weights were exported (not a fresh model): predict reproduces the error.
    images = sorted((tiny / "valid").rglob("*.png"))
    out = tmp_path / "preds.csv"
    p = cli("predict", tmp_path / "cut", *images, "--out", out)
    assert p.returncode == 0, p.stderr
    wrong = sum(row["prediction"] != Path(row["path"]).parent.name for row in read_csv(out))
    # to one image: metrics come from the training precision's forwards (bf16 autocast where
    # the CPU has it), predict runs fp32
    assert abs(wrong / len(images) - float(got[-1]["error_rate"])) <= 1 / len(images) + 1e-5


def test_run_interrupted_before_its_first_epoch_starts_over(cli, tiny, tmp_path):
    """Killed while finding the LR (its partial folder exists, config.yaml not yet): nothing
    to resume. --resume in a fresh process starts over and says so; a new run is not
    blocked by such a folder either."""
    base = ["train", tiny, "--no-pretrained", "--epochs", "1", "--runs-dir", tmp_path,
            "--name", "b", *FAST]  # fmt: skip
    partial = tmp_path / ".b.partial"
    proc = kill_9_when(
        [COUNTNET, *base], lambda: (partial / "skipped.txt").is_file(), tmp_path, "the LR finder"
    )
    assert proc.returncode == -9 and not (partial / "config.yaml").exists()
    r = run_countnet(*base, "--resume")
    assert r.returncode == 0, r.stderr
    assert "was interrupted before its first epoch: starting over" in r.stderr
    assert (tmp_path / "b" / "config.yaml").is_file() and not partial.exists()

    (tmp_path / ".a.partial").mkdir()  # the same leftover, then a plain run: not in the way
    r = cli(*[a if a != "b" else "a" for a in base])
    assert r.returncode == 0, r.stderr
    assert "starting over" not in r.stderr and not (tmp_path / ".a.partial").exists()
