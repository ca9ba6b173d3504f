"""One run on several devices (`countnet train --gpus N`, or under torchrun), tested as CI
can: two CPU processes on the gloo backend. The run folder is written once, by rank 0, and
is the single-process run's: for a network without BatchNorm in fp32 without augmentation
the two ranks' half-batches make exactly the single process's batches, so the numbers
match too."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from countnet.tables import read_csv
from tests.conftest import COUNTNET, assert_one_line_error, process_alive, save_resnet_weights
from tests.test_resume import checkpoint_epoch, kill_9_after_checkpoint
from tests.test_train import FAST, RUN_FILES

PAGE = Path(__file__).parents[1] / "docs" / "data-parallel.md"


def _page_commands() -> list[str]:
    return [ln[2:] for ln in PAGE.read_text().splitlines() if ln.startswith("$ ")]


# LeNet has no BatchNorm and no dropout; fp32, no augmentation: nothing but the batch split
# differs between one process and two.
# The LR finder (5 steps; --lr still wins) draws rank 0's shuffling RNG alone: the ranks
# train one process's batches only if they really take rank 0's order.
EXACT = ["--arch", "lenet", "--size", "32", "--bs", "auto", "--lr", "2e-3", "--lr-find-iters",
         "5", "--precision", "fp32", "--transforms", "none", "--device", "cpu",
         "--quiet"]  # fmt: skip


def _files(run: Path) -> set[str]:
    return {p.name for p in run.iterdir()}


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _assert_same_numbers(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "valid_loss", "error_rate"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=2e-4), (key, ra, rb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the orphan check reads /proc")
def test_two_processes_killed_and_resumed_equal_one_process(cli, tiny, tmp_path, monkeypatch):
    n = 12
    one = cli("train", tiny, "--epochs", n, "--runs-dir", tmp_path, "--name", "one", *EXACT)
    assert one.returncode == 0, one.stderr

    # the data-parallel page's CPU --gpus line as written, on the tiny set, EXACT appended
    (line,) = [ln for ln in _page_commands() if " --gpus " in ln and " --device cpu" in ln]
    readme = shlex.split(line, comments=True)
    assert readme[:2] == ["countnet", "train"] and readme[readme.index("--gpus") + 1] == "2"
    readme[2] = str(tiny)
    args = [*readme[1:], "--epochs", str(n), "--runs-dir", tmp_path, "--name", "two", *EXACT]
    partial = tmp_path / ".two.partial"

    # SIGKILL reaches `countnet` alone, as a user's kill -9 of the command does: its two
    # training processes must die with it rather than train on (and hold the run's lock).
    workers: list[int] = []
    proc, e = kill_9_after_checkpoint(
        [COUNTNET, *args], partial, epoch=2, before_kill=lambda pid: workers.extend(_children(pid))
    )
    assert proc.returncode == -9, proc.stderr
    assert 2 <= e <= n
    assert len(workers) >= 2  # the two ranks (and multiprocessing's resource tracker)
    deadline = time.time() + 30
    while any(map(process_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(process_alive, workers)), "training processes outlived the killed countnet"

    # --bs auto is 8 here; 3 processes would round it to 6: not this run's batches
    from countnet_classify.parallel import group

    monkeypatch.setattr(group, "_group", group.Group(0, 3, 0, "gloo"))
    assert_one_line_error(cli(*args, "--resume"), "batches of 8", "3 process(es)", alone=False)
    monkeypatch.setattr(group, "_group", None)

    # Resumed in one process (fresh), killed again a checkpoint later: a run continues on
    # another number of processes, the batches being the run's whole batches either way.
    assert e + 1 < n  # killed within a few of its 12 epochs: room for the next stage
    proc, e1 = kill_9_after_checkpoint([COUNTNET, *args, "--resume", "--gpus", "1"],
                                       partial, epoch=e + 1)  # fmt: skip
    assert proc.returncode == -9 and f"resuming after epoch {e}/{n}" in proc.stderr
    assert e < e1 < n
    e = e1

    before = read_csv(partial / "metrics.csv")
    # Resumed from here: the training processes are fresh ones, and what rank 0 prints
    # comes back through this process's sys.stdout/sys.stderr (here pytest's capture; in the
    # workflow a job's log file), not the file descriptors it inherited.
    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {e}/{n}" in r.stderr
    # rank 0 alone prints and writes: each remaining epoch once, one summary line
    printed = [ln.split()[1] for ln in r.stdout.splitlines()]
    assert printed == [f"{i}/{n}" for i in range(e + 1, n + 1)], r.stdout
    assert r.stderr.count("done: final error_rate") == 1, r.stderr

    two, ref = tmp_path / "two", tmp_path / "one"
    assert _files(two) == _files(ref)
    assert not partial.exists()
    rows = read_csv(two / "metrics.csv")
    assert rows[:e] == before[:e]
    _assert_same_numbers(rows, read_csv(ref / "metrics.csv"))
    losses, ref_losses = read_csv(two / "losses.csv"), read_csv(ref / "losses.csv")
    assert len(losses) == len(ref_losses) == n * 3  # 27 images: 3 whole batches of 8 an epoch
    for a, b in zip(losses, ref_losses, strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=2e-4)
    # the weights of one model, not DDP's ("module." keys)
    w, w_ref = load_file(two / "model.safetensors"), load_file(ref / "model.safetensors")
    assert set(w) == set(w_ref)
    for k in w:
        assert (w[k] - w_ref[k]).abs().max() < 1e-3, k
    rec = yaml.safe_load((two / "config.yaml").read_text())
    assert rec["resolved"]["processes"] == 2 and rec["run"]["gpus"] == 2
    assert rec["resolved"]["batch_size"] == 8  # the run's whole batch, 4 per process
    assert yaml.safe_load((ref / "config.yaml").read_text())["resolved"]["processes"] == 1

    # rank 0's refusal comes back through the launching process as one line
    assert_one_line_error(cli(*args), "already exists")
    assert _files(two) == _files(ref)

    # A training process killed from outside (as the out-of-memory killer does) stops the
    # run with one line naming it, and the other process with it.
    err = tmp_path / "force.err"
    with open(err, "w") as f:
        cmd = [COUNTNET, *map(str, args), "--force"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.time() + 300
    while checkpoint_epoch(partial) < 1:
        assert proc.poll() is None and time.time() < deadline, err.read_text()
        time.sleep(0.005)
    ranks = [p for p in _children(proc.pid) if b"spawn_main" in _cmdline(p)]
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    code = proc.wait(timeout=120)
    stopped = subprocess.CompletedProcess(cmd, code, "", err.read_text())
    assert_one_line_error(stopped, "training process", "died (signal SIGKILL)", alone=False)
    assert not any(map(process_alive, ranks))
    assert checkpoint_epoch(partial) >= 1  # resumable


def test_under_torchrun_fine_tuning_in_two_phases(cli, tiny, tmp_path, monkeypatch):
    """The data-parallel page's torchrun line as written (on a tiny set at 32 px, 2 epochs):
    torchrun starts the processes itself; ResNet-18 fine-tuned from (random, ImageNet-shaped)
    weights on the default path — fastai's two phases, frozen then unfrozen, each its own DDP
    wrapper; decoded cache, channels_last, dihedral augmentation, the LR finder, BatchNorm
    re-estimated on every rank and averaged: one complete run folder, written by rank 0,
    whose weights give the error rate it recorded."""
    (line,) = [ln for ln in _page_commands() if ln.startswith("torchrun ")]
    args = shlex.split(line, comments=True)
    at = args.index("--no-python") + 1
    assert args[at : at + 2] == ["countnet", "train"]
    args[at] = COUNTNET
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny, args[at + 2])
    save_resnet_weights(tmp_path / "r18.pth")
    cmd = [sys.executable, "-m", "torch.distributed.run", *args[1:], "--arch", "resnet18",
           "--pretrained", "--weights", tmp_path / "r18.pth", "--freeze-epochs", "1",
           "--epochs", "1", "--device", "cpu", "--precision", "fp32", "--runs-dir", "runs",
           *FAST]  # fmt: skip
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("done: final error_rate") == 1, r.stderr
    assert [ln.split()[1] for ln in r.stdout.splitlines()] == ["1/2", "2/2"], r.stdout
    name = args[args.index("--name") + 1]
    run = tmp_path / "runs" / name
    assert _files(run) == RUN_FILES
    assert [p.name for p in run.parent.iterdir() if not p.name.endswith(".lock")] == [name]
    rec = yaml.safe_load((run / "config.yaml").read_text())
    assert rec["resolved"]["processes"] == 2 and rec["resolved"]["batch_size"] == 8
    assert rec["lr"]["source"].startswith("LR finder")
    assert [p["name"] for p in rec["resolved"]["phases"]] == ["frozen", "unfrozen"]
    last = read_csv(run / "metrics.csv")[-1]

    # fp32, so `countnet predict` (fp32) computes what validation did, to float rounding
    from countnet_classify.predict import predict

    valid = sorted((tiny / "valid").rglob("*.png"))
    preds = predict(run, valid)
    wrong = sum(p.label != f.parent.name for p, f in zip(preds, valid, strict=True))
    assert wrong / len(valid) == pytest.approx(float(last["error_rate"]), abs=1e-6)
    nll = -sum(math.log(p.probs[f.parent.name]) for p, f in zip(preds, valid, strict=True))
    assert nll / len(valid) == pytest.approx(float(last["valid_loss"]), abs=1e-4)

    # the report says how many processes trained it
    assert cli("report", run, "--out", "rep").returncode == 0
    summary = Path("rep/report.md").read_text().split("## Summary", 1)[1].split("\n## ")[0]
    (row,) = [ln for ln in summary.splitlines() if ln.startswith(f"| {name} |")]
    assert "| cpu x 2 (" in row, row


def test_bad_data_parallel_options_stop_in_one_line(cli, tiny, tmp_path, monkeypatch):
    base = ["train", tiny, "--runs-dir", tmp_path, "--no-pretrained", *FAST]
    if not torch.cuda.is_available():
        assert_one_line_error(cli(*base, "--gpus", "2"), "no CUDA device", "--device cpu")
    assert_one_line_error(cli(*base, "--gpus", "0"), "--gpus must be an integer >= 1")
    assert_one_line_error(
        cli(*base, "--gpus", "2", "--device", "cpu", "--bs", "7"), "split evenly over 2"
    )
    # under a launcher that started 2 processes, --gpus 3 contradicts it
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert_one_line_error(cli(*base, "--gpus", "3", "--device", "cpu"), "started 2 processes")
    assert_one_line_error(cli(*base, "--bs", "7", "--device", "cpu"), "split evenly over 2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # one process here, one elsewhere
    assert_one_line_error(cli(*base, "--device", "cpu"), "on one machine")
    # sweeps and transform selection run whole trainings: each process would run them all
    assert_one_line_error(
        cli("sweep", tiny, "--param", "lr=0.01,0.02", "--out", tmp_path / "sw"), "torchrun"
    )
    assert_one_line_error(
        cli("select-transforms", tiny, "--out", tmp_path / "sel.json", "--lr", "0.01"), "torchrun"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_ranks_shards_make_the_single_process_batches(monkeypatch):
    """Each rank's k-th batch is bs/N images, the ranks' never overlap, and together they
    are exactly the k-th batch one process draws with the same shuffling RNG."""
    from fastai.data.load import DataLoader

    from countnet_classify.parallel import group, shard

    monkeypatch.setattr(shard.dist, "broadcast", lambda t, src: None)  # one process
    monkeypatch.setattr(group, "_group", group.Group(0, 2, 0, "gloo"))
    whole = DataLoader(list(range(27)), bs=8, shuffle=True, drop_last=True)
    whole.rng.seed(3)
    expected = [b.tolist() for b in whole]
    assert [len(b) for b in expected] == [8, 8, 8]
    shards = []
    for rank in (0, 1):
        whole.rng.seed(3)
        dl = shard.shard(whole, group.Group(rank, 2, 0, "gloo"))
        assert len(dl) == 3 and dl.bs == 4
        shards.append([b.tolist() for b in dl])
    for k, batch in enumerate(expected):
        assert not set(shards[0][k]) & set(shards[1][k])
        assert sorted(shards[0][k] + shards[1][k]) == sorted(batch)
    # the loader's RNG is the source's: what a checkpoint saves
    assert dl.rng is whole.rng
    # every (seed, epoch, rank) its own augmentation stream, the same one when resumed
    seeds = {shard.rank_seed(0, e, r) for e in range(3) for r in range(1, 4)}
    assert len(seeds) == 9
    assert shard.rank_seed(0, 2, 1) == 3943393202  # not the process's: a resume's too
