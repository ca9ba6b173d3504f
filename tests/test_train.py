"""`countnet train` / `predict` / `weights import` on tiny sets (32 px, 1-2 epochs, CPU):
behaviour, not accuracy."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

from countnet_classify.callbacks import read_rows
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate
from tests.conftest import COUNTNET, assert_one_line_error, written

FAST = ["--size", "32", "--bs", "8", "--lr-find-iters", "30", "--quiet", "--workers", "0"]
RUN_FILES = {
    "config.yaml",
    "metrics.csv",
    "metrics.md",
    "losses.csv",
    "lr_find.png",
    "losses.png",
    "confusion_matrix.png",
    "top_losses.png",
    "batch.png",
    "model.safetensors",
    "model.json",
    "skipped.txt",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """3 classes x 12 images (9 train / 3 valid each), 32 px: countnet gen's layout."""
    spec = DatasetSpec(counts=(1, 3), per_class=12, size=32, radius=(3, 5), valid_pct=0.25)
    return generate(spec, tmp_path_factory.mktemp("data") / "tiny", workers=1)


def save_resnet_weights(path: Path, arch: str = "resnet18") -> dict:
    """What a user would download: a torchvision ImageNet-shaped state dict (random here)."""
    torch.manual_seed(1)
    sd = getattr(torchvision.models, arch)(weights=None).state_dict()
    torch.save(sd, path)
    return sd


def test_run_folder_and_predict_agrees_with_learner(cli, tiny, tmp_path):
    from countnet_classify.config import RunSpec
    from countnet_classify.predict import predict
    from countnet_classify.train import train

    spec = RunSpec(
        data=str(tiny),
        pretrained=False,
        epochs=2,
        size=32,
        bs=8,
        lr_find_iters=30,
        quiet=True,
        workers=0,
        runs_dir=str(tmp_path),
        name="r1",
        seed=3,
    )
    res = train(spec, say=lambda m: None)
    run = tmp_path / "r1"
    assert res.run_dir == run and {p.name for p in run.iterdir()} == RUN_FILES
    assert [p.name for p in tmp_path.glob(".r1*")] == [".r1.lock"]  # no partial folder left

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert abs(float(r["error_rate"]) + float(r["accuracy"]) - 1) < 1e-5
    md = (run / "metrics.md").read_text().splitlines()
    assert md[0] == "| epoch | train_loss | valid_loss | error_rate | accuracy | time |"
    assert len(md) == 4 and md[2].startswith("| 1 | ")

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["seed"] == 3 and cfg["run"]["epochs"] == 2 and cfg["status"] == "complete"
    assert cfg["resolved"]["device"] == "cpu" and cfg["resolved"]["pretrained"] is False
    assert len(cfg["data"]["fingerprint"]) == 64 and cfg["data"]["n_valid"] == 9
    assert {"torch", "fastai", "numpy"} <= set(cfg["versions"])
    # --lr auto from scratch: the slide suggestion (BENCHMARKS.md), or valley when a short
    # sweep gives no slide, said in the source either way
    rule = cfg["lr"]["rule"]
    assert rule in ("slide", "valley") and cfg["lr"]["used"] == cfg["lr"]["suggestions"][rule]
    assert cfg["lr"]["source"].startswith(f"LR finder, {rule} suggestion (--lr auto")
    assert rule == "slide" or "no slide suggestion" in cfg["lr"]["source"]
    assert cfg["dataset_params"]["counts"] == "1-3"
    meta = json.loads((run / "model.json").read_text())
    assert meta["classes"] == ["1", "2", "3"] and meta["arch"] == "resnet34"

    # predict (weights only) == the learner's own predictions on the same images
    images = sorted((tiny / "valid").rglob("*.png"))
    learn = res.learner
    # predict runs in fp32: compare with the learner's fp32 forward (trained under bf16
    # autocast where the CPU has it, the learner's own bf16 outputs differ by bf16 rounding)
    from countnet_classify.precision import CPUAutocast

    with learn.removed_cbs([cb for cb in learn.cbs if isinstance(cb, CPUAutocast)]):
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(images))
    preds = predict(run, images)
    ours = torch.tensor([[p.probs[c] for c in meta["classes"]] for p in preds])
    assert torch.allclose(ours, probs, atol=1e-4)
    assert [p.label for p in preds] == [meta["classes"][i] for i in probs.argmax(1)]

    out = tmp_path / "preds.csv"
    r = cli("predict", run / "model.safetensors", *images[:4], "--out", out)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and set(table[0]) >= {"path", "prediction", "probability", "p_1"}
    r = cli("predict", run, images[0])
    assert r.returncode == 0 and r.stdout.split("\t")[1] in meta["classes"]


def test_pretrained_weights_from_file_and_from_cache(cli, tiny, tmp_path):
    from countnet_classify.model import expected_weights_path, imagenet_state_dict, make_learner

    wfile = tmp_path / "resnet18-imagenet.pth"
    sd = save_resnet_weights(wfile)
    r = cli(
        "train",
        tiny,
        "--arch",
        "resnet18",
        "--weights",
        wfile,
        "--epochs",
        "1",
        "--runs-dir",
        tmp_path,
        "--name",
        "ft",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert cfg["resolved"]["weights_source"] == str(wfile.resolve())
    assert cfg["resolved"]["pretrained"] is True
    assert "fine_tune" in cfg["resolved"]["schedule"]
    assert [int(m["epoch"]) for m in read_rows(tmp_path / "ft" / "metrics.csv")] == [1, 2]
    from countnet_classify.precision import cpu_has_native_bf16

    assert cfg["resolved"]["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")

    # The learner's body really starts from the file's tensors.
    loaded, _ = imagenet_state_dict("resnet18", str(wfile))
    from countnet_classify.data import make_dataloaders
    from countnet_classify.screen import screen

    dls = make_dataloaders(
        screen(tiny, valid_pct=0.2, seed=0),
        size=32,
        bs=8,
        transforms="none",
        workers=0,
        device=torch.device("cpu"),
        seed=0,
    )
    learn = make_learner(dls, "resnet18", loaded, pretrained=True)
    assert torch.equal(learn.model[0][0].weight, sd["conv1.weight"])
    assert torch.equal(learn.model[0][4][0].conv1.weight, sd["layer1.0.conv1.weight"])

    # `weights import` verifies and caches; training then finds the file without --weights.
    r = cli("weights", "import", wfile, "--arch", "resnet18")
    assert r.returncode == 0, r.stderr
    cached = expected_weights_path("resnet18")
    assert cached.is_file() and str(cached).startswith(os.environ["TORCH_HOME"])
    r = cli(
        "train",
        tiny,
        "--arch",
        "resnet18",
        "--epochs",
        "1",
        "--freeze-epochs",
        "0",
        "--runs-dir",
        tmp_path,
        "--name",
        "cache",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "cache" / "config.yaml").read_text())
    assert cfg["resolved"]["weights_source"] == str(cached)
    cached.unlink()


def test_offline_without_weights_fails_fast_with_guidance(cli, tiny, tmp_path):
    r = cli("train", tiny, "--runs-dir", tmp_path, *FAST)
    assert_one_line_error(r, "resnet34", "hub/checkpoints", "--weights", "--no-pretrained")
    assert written(tmp_path) == []


def checkpoint_epoch(partial: Path) -> int:
    """The epoch a run's checkpoint holds (0 without one); memory-mapped: read in ms."""
    ckpt = partial / "checkpoint.pt"
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except FileNotFoundError:
        return 0


def kill_9_after_checkpoint(cmd: list, partial: Path, epoch: int, timeout: float = 600):
    """Run ``cmd`` (countnet) in a fresh process and SIGKILL it from outside as soon as its
    checkpoint holds ``epoch``, as a user's kill -9 would: nothing in the process knows.
    Returns the killed process (its output read from files, so a chatty child never blocks
    on a full pipe) and the epoch its checkpoint held when it died."""
    out_path, err_path = partial.parent / "kill9.out", partial.parent / "kill9.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True)
    seen, deadline = None, time.time() + timeout
    while True:
        try:  # checkpoint.pt is replaced atomically: whole whenever it exists
            stamp = (partial / "checkpoint.pt").stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            if checkpoint_epoch(partial) >= epoch:
                os.kill(proc.pid, signal.SIGKILL)
                break
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"never reached epoch {epoch} to be killed: {err_path.read_text()}")
        time.sleep(0.005)
    proc.wait(timeout=60)
    done = subprocess.CompletedProcess(
        cmd, proc.returncode, out_path.read_text(), err_path.read_text()
    )
    out_path.unlink()
    err_path.unlink()
    return done, checkpoint_epoch(partial)


def test_resume_after_kill_9(cli, tiny, tmp_path):
    # 5 epochs, killed from outside once epoch 2 is checkpointed: wherever the kill lands
    # (during epoch 3, or rarely after it), the resumed run must continue from the checkpoint.
    n = 5
    args = [COUNTNET, "train", tiny, "--no-pretrained", "--epochs", str(n), "--device", "cpu",
            "--runs-dir", tmp_path, "--name", "k", *FAST]  # fmt: skip
    proc, e = kill_9_after_checkpoint(args, tmp_path / ".k.partial", epoch=2)
    assert proc.returncode == -9, proc.stderr
    printed = [ln.split()[1] for ln in proc.stdout.splitlines()]  # one clean line per epoch
    assert 2 <= e < n and printed[:e] == [f"{i}/{n}" for i in range(1, e + 1)], proc.stdout
    assert len(printed) in (e, e + 1)  # the next epoch's line may precede its checkpoint
    assert "\r" not in proc.stdout + proc.stderr
    assert not (tmp_path / "k").exists() and (tmp_path / ".k.partial").is_dir()

    def again(*extra: str, epochs: int = n):
        return cli("train", tiny, "--no-pretrained", "--epochs", str(epochs), "--device", "cpu",
                   "--runs-dir", tmp_path, "--name", "k", *extra, *FAST)  # fmt: skip

    assert_one_line_error(again(), "interrupted run", "--resume")
    assert_one_line_error(again("--resume", epochs=n + 1), "different options", "epochs")

    before = read_rows(tmp_path / ".k.partial" / "metrics.csv")
    r = again("--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {e}/{n}" in r.stderr
    resumed = [ln.split()[1] for ln in r.stdout.splitlines()]
    assert resumed == [f"{i}/{n}" for i in range(e + 1, n + 1)]  # only the missing epochs
    rows = read_rows(tmp_path / "k" / "metrics.csv")
    assert [r_["epoch"] for r_ in rows] == [str(i) for i in range(1, n + 1)]
    assert rows[:e] == before[:e]
    summary = yaml.safe_load((tmp_path / "k" / "config.yaml").read_text())["summary"]
    total = sum(float(r_["time"]) for r_ in rows)  # both sessions' epochs
    assert summary["train_seconds"] == pytest.approx(total, abs=0.02)
    assert summary["session_train_seconds"] < summary["train_seconds"]
    assert not (tmp_path / ".k.partial").exists()
    assert not (tmp_path / "k" / "checkpoint.pt").exists()
    assert_one_line_error(again("--resume"), "already finished")


def _write_odd_images(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = (rng.random((20, 24)) * 255).astype(np.uint8)
    Image.fromarray(base, "L").save(folder / "gray.png")
    Image.fromarray(np.dstack([base] * 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(base, "L").convert("P").save(folder / "palette.gif")
    deep = Image.fromarray(base.astype(np.uint16) * 257)  # 16-bit grayscale
    assert deep.mode.startswith("I;16")
    deep.save(folder / "deep16.png")
    Image.fromarray(np.dstack([base] * 3), "RGB").save(folder / "photo.jpg")


def test_screening_skips_broken_files_and_converts_modes(cli, tmp_path):
    from countnet_classify.screen import open_rgb

    rng = np.random.default_rng(0)
    data = tmp_path / "paintings"
    for cls in ("impressionist", "modernist"):
        for i in range(4):
            _write_odd_images(data / cls / f"set{i}", rng)
    bad = data / "modernist"
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.txt").write_text("not an image")
    (bad / "fake.jpg").write_text("<html>not really a jpeg</html>")
    good = (data / "impressionist" / "set0" / "photo.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])

    for f in ("gray.png", "rgba.png", "palette.gif", "deep16.png"):
        im = open_rgb(data / "impressionist" / "set0" / f)
        assert im.mode == "RGB" and im.size == (24, 20)
    deep = np.asarray(open_rgb(data / "impressionist" / "set0" / "deep16.png"))
    assert deep.max() > 200  # 16-bit scaled down, not clipped to white or black

    r = cli(
        "train",
        data,
        "--no-pretrained",
        "--epochs",
        "1",
        "--valid-pct",
        "0.25",
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "p",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert "skipped 4 unreadable file(s)" in r.stderr
    skipped = (tmp_path / "runs" / "p" / "skipped.txt").read_text().splitlines()
    assert sorted(s.split("\t")[0] for s in skipped) == [
        "modernist/empty.png",
        "modernist/fake.jpg",
        "modernist/notes.txt",
        "modernist/truncated.jpg",
    ]
    cfg = yaml.safe_load((tmp_path / "runs" / "p" / "config.yaml").read_text())
    assert cfg["data"]["layout"] == "class folders"
    assert cfg["data"]["class_counts"] == {"impressionist": 20, "modernist": 20}
    assert cfg["data"]["n_valid"] == 10 and cfg["data"]["skipped"] == 4


def test_imbalance_is_flagged(cli, tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "lopsided"
    for i in range(6):
        _write_odd_images(data / "many" / f"s{i}", rng)
    _write_odd_images(data / "few", rng)
    r = cli(
        "train",
        data,
        "--no-pretrained",
        "--epochs",
        "1",
        "--valid-pct",
        "0.2",
        "--arch",
        "lenet",
        "--runs-dir",
        tmp_path / "runs",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert "imbalanced" in r.stderr
    cfg = yaml.safe_load((tmp_path / "runs" / "lopsided_lenet" / "config.yaml").read_text())
    assert cfg["data"]["imbalanced"] is True


def test_lenet_with_caffe_step_policy(cli, tiny, tmp_path):
    r = cli(
        "train",
        tiny,
        "--arch",
        "lenet",
        "--lr-policy",
        "step",
        "--lr",
        "0.01",
        "--lr-step",
        "2",
        "--epochs",
        "2",
        "--runs-dir",
        tmp_path,
        "--name",
        "le",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "le" / "config.yaml").read_text())
    assert cfg["lr"]["used"] == 0.01 and cfg["lr"]["source"] == "--lr"
    assert cfg["resolved"]["schedule"] == "step for 2 epoch(s)"
    assert cfg["resolved"]["pretrained"] is False  # lenet has no ImageNet weights


def test_caffe_schedules_match_their_formulas():
    from countnet_classify.schedules import sched_inv, sched_step

    inv = sched_inv(0.01, 1e-4, 0.75, total_iters=10000)
    for it in (0, 1, 500, 9999):
        assert inv(it / 10000) == pytest.approx(0.01 * (1 + 1e-4 * it) ** -0.75)
    step = sched_step(0.1, 0.1, stepsize=100, total_iters=300)
    assert step(0.0) == pytest.approx(0.1)
    assert step(99 / 300) == pytest.approx(0.1)
    assert step(100 / 300) == pytest.approx(0.01)
    assert step(250 / 300) == pytest.approx(0.001)


def _one_class(tmp_path):
    d = tmp_path / "one"
    _write_odd_images(d / "only", np.random.default_rng(0))
    return d


def _empty_class(tmp_path):
    d = tmp_path / "emptycls"
    _write_odd_images(d / "a", np.random.default_rng(0))
    (d / "b").mkdir()
    (d / "b" / "broken.png").write_bytes(b"\x89PNG nope")
    return d


def _nothing_readable(tmp_path):
    d = tmp_path / "junk"
    for c in ("a", "b"):
        (d / c).mkdir(parents=True)
        (d / c / "x.png").write_text("junk")
    return d


def _tiny_class(tmp_path):
    d = tmp_path / "small"
    _write_odd_images(d / "a", np.random.default_rng(0))
    (d / "b").mkdir()
    Image.new("RGB", (8, 8)).save(d / "b" / "lonely.png")
    return d


def _no_valid(tmp_path):
    d = tmp_path / "novalid"
    for c in ("a", "b"):
        _write_odd_images(d / "train" / c, np.random.default_rng(0))
    _write_odd_images(d / "valid" / "a", np.random.default_rng(0))
    return d


@pytest.mark.parametrize(
    "make, extra, fragments",
    [
        (lambda t: t / "missing", [], ["does not exist"]),
        (_one_class, [], ["at least two class folders"]),
        (_empty_class, [], ["no readable images: b"]),
        (_nothing_readable, [], ["no readable images"]),
        (_tiny_class, [], ["without validation images"]),
        (_no_valid, [], ["without validation images", "b"]),
        (_one_class, ["--arch", "vgg99"], ["unknown --arch"]),
        (_one_class, ["--lr", "fast"], ["--lr"]),
        (_one_class, ["--transforms", "sideways"], ["unknown --transforms"]),
        (_one_class, ["--device", "tpu"], ["--device"]),
    ],
)
def test_bad_training_input(cli, tmp_path, make, extra, fragments):
    data = make(tmp_path)
    runs = tmp_path / "runs"
    r = cli("train", data, "--no-pretrained", "--runs-dir", runs, *extra, *FAST)
    assert_one_line_error(r, *fragments, alone=False)
    assert written(runs) == []  # no half-written run folder


def test_force_replaces_only_a_run(cli, tiny, tmp_path):
    from filelock import FileLock

    runs = tmp_path / "runs"
    mine = runs / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    r = cli(
        "train", tiny, "--no-pretrained", "--runs-dir", runs, "--name", "mine", "--force", *FAST
    )
    assert_one_line_error(r, "--force replaces only a countnet run", alone=False)
    assert (mine / "notes.txt").read_text() == "keep me"
    # A run another process is writing (it holds the run's lock) is not touched either.
    with FileLock(runs / ".busy.lock"):
        r = cli("train", tiny, "--no-pretrained", "--runs-dir", runs, "--name", "busy", *FAST)
        assert_one_line_error(r, "being written by another process", alone=False)
    assert not (runs / "busy").exists() and not (runs / ".busy.partial").exists()


def test_bad_weights_files(cli, tiny, tmp_path):
    runs = tmp_path / "runs"

    def train_with(w, arch="resnet34"):
        return cli("train", tiny, "--arch", arch, "--weights", w, "--runs-dir", runs, *FAST)

    assert_one_line_error(train_with(tmp_path / "nope.pth"), "does not exist")
    txt = tmp_path / "weights.pth"
    txt.write_text("definitely not torch")
    assert_one_line_error(train_with(txt), "not a readable weights file")
    torch.save({"epoch": 3, "note": "a checkpoint, not weights"}, tmp_path / "meta.pth")
    assert_one_line_error(train_with(tmp_path / "meta.pth"), "not a state dict")
    r18 = tmp_path / "r18.pth"
    save_resnet_weights(r18, "resnet18")
    assert_one_line_error(train_with(r18, "resnet50"), "does not fit", "shape mismatch")
    assert_one_line_error(cli("weights", "import", txt), "not a readable weights file")
    assert written(runs) == []


def test_pickled_objects_are_refused(cli, tmp_path):
    """A weights file carrying arbitrary pickled objects is never unpickled."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"conv1.weight": Evil()}, f)
    r = cli("weights", "import", bad)
    assert_one_line_error(r, "not a readable weights file")
    assert not (tmp_path / "pwned").exists()


def test_resume_and_predict_bad_input(cli, tiny, tmp_path):
    r = cli(
        "train",
        tiny,
        "--no-pretrained",
        "--runs-dir",
        tmp_path,
        "--name",
        "ghost",
        "--resume",
        *FAST,
    )
    assert_one_line_error(r, "no interrupted run", "ghost")
    r = cli("predict", tmp_path / "no-such-run", tiny / "valid" / "1")
    assert_one_line_error(r, "does not exist")
    (tmp_path / "fake-run").mkdir()
    r = cli("predict", tmp_path / "fake-run", "x.png")
    assert_one_line_error(r, "missing")


def test_resume_fine_tune_between_frozen_and_unfrozen_phases(cli, tiny, tmp_path):
    wfile = tmp_path / "r18.pth"
    save_resnet_weights(wfile)
    args = [
        "train",
        str(tiny),
        "--arch",
        "resnet18",
        "--weights",
        str(wfile),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "ft",
        *FAST,
    ]
    # Killed from outside once the frozen epoch is checkpointed (during the unfrozen one).
    proc, reached = kill_9_after_checkpoint([COUNTNET, *args], tmp_path / ".ft.partial", epoch=1)
    assert proc.returncode == -9, proc.stderr
    ckpt = torch.load(tmp_path / ".ft.partial" / "checkpoint.pt", weights_only=True)
    # ResNet-18's unfrozen epoch takes seconds here, the kill milliseconds after the frozen
    # epoch's checkpoint appears: the run dies at the phase boundary.
    assert reached == 1 and ckpt["epoch"] == 1 and ckpt["phase"] == "frozen"

    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch 1/2" in r.stderr
    assert [ln.split()[1] for ln in r.stdout.splitlines()] == ["2/2"]
    assert [m["epoch"] for m in read_rows(tmp_path / "ft" / "metrics.csv")] == ["1", "2"]


def test_transforms_that_can_change_a_count_are_warned_about(cli, tiny, tmp_path):
    base = ["train", tiny, "--no-pretrained", "--epochs", "1", "--runs-dir", tmp_path, *FAST]
    r = cli(*base, "--transforms", "aug", "--name", "aug")
    assert r.returncode == 0, r.stderr
    assert "warning: --transforms aug can change the count of" in r.stderr
    # A selection made on another dataset is used, but not silently; flips never change a
    # count, so no label warning. (The same function train() calls, without a second run.)
    from countnet_classify.select import transform_warnings

    sel = tmp_path / "sel.json"
    sel.write_text(json.dumps({"data": "/elsewhere/set", "chosen": "flips"}))
    (warning,) = transform_warnings(str(sel), "flips", tiny)
    assert "was chosen on /elsewhere/set" in warning and "flips" in warning
    # A selection made on this very set, or one that does not say where: nothing to say.
    for made_on in (str(tiny.resolve()), None, ["not", "a", "path"]):
        sel.write_text(json.dumps({"data": made_on, "chosen": "flips"}))
        assert transform_warnings(str(sel), "flips", tiny) == []
