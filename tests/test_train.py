"""`countnet train` / `predict` / `weights import` on tiny sets (32 px, 1-2 epochs, CPU):
behaviour, not accuracy."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from countnet.tables import read_csv
from tests.conftest import assert_one_line_error, save_resnet_weights, written

FAST = ["--size", "32", "--bs", "8", "--lr-find-iters", "30", "--quiet", "--workers", "0"]
RUN_FILES = {
    "config.yaml",
    "cost.json",
    "metrics.csv",
    "metrics.md",
    "losses.csv",
    "lr_find.png",
    "losses.png",
    "confusion_matrix.png",
    "top_losses.png",
    "batch.png",
    "maps.png",
    "model.safetensors",
    "model.json",
    "skipped.txt",
}


def test_run_folder_and_predict_agrees_with_learner(cli, tiny, tmp_path):
    from countnet_classify.predict import predict
    from countnet_classify.spec import RunSpec
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
    assert cfg["resolved"]["optimizer"] == {
        "name": "FusedAdam", "mom": "one-cycle: 0.95 -> 0.85 -> 0.95", "sqr_mom": 0.99,
        "eps": 1e-5, "wd": 0.01,
    }  # fmt: skip
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
    from countnet_classify.callbacks.precision import CPUAutocast

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
    from countnet_classify.model import make_learner
    from countnet_classify.weights import (
        expected_weights_path,
        file_sha256,
        imagenet_state_dict,
        published_sha256_prefix,
    )

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
    assert cfg["resolved"]["weights_sha256"] == file_sha256(wfile)
    assert cfg["resolved"]["pretrained"] is True
    assert "fine_tune" in cfg["resolved"]["schedule"]
    assert [int(m["epoch"]) for m in read_csv(tmp_path / "ft" / "metrics.csv")] == [1, 2]
    from countnet_classify.devices import cpu_has_native_bf16

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
    # Random weights are not torchvision's published file: filed, but not silently.
    assert "is not torchvision's published resnet18 weights" in r.stderr
    assert published_sha256_prefix("resnet18") in r.stderr  # resnet18-f37072fd.pth
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


def test_a_download_that_is_not_torchvisions_file_is_refused(tmp_path, monkeypatch):
    """The downloaded file's sha256 must start with the prefix in torchvision's file name
    (torch.hub's check_hash); otherwise nothing lands in the cache. Served from a local
    file: URL, as a mirror would serve it (no network here)."""
    from countnet.errors import CountnetError
    from countnet_classify.weights import download as _download
    from countnet_classify.weights import expected_weights_path

    monkeypatch.delenv("COUNTNET_OFFLINE")
    fake = tmp_path / "resnet18-f37072fd.pth"
    save_resnet_weights(fake)
    dest = expected_weights_path("resnet18")
    with pytest.raises(CountnetError, match="is not torchvision's f37072fd"):
        _download("resnet18", dest, url=fake.as_uri())
    assert not dest.exists() and not list(dest.parent.glob(".*tmp"))


def test_offline_without_weights_fails_fast_with_guidance(cli, tiny, tmp_path):
    r = cli("train", tiny, "--runs-dir", tmp_path, *FAST)
    assert_one_line_error(r, "resnet34", "hub/checkpoints", "--weights", "--no-pretrained")
    assert written(tmp_path) == []


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
    from countnet_classify.images import open_rgb

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


@pytest.mark.parametrize("policy", ["step", "inv"])
def test_caffe_policies_drive_the_optimizer(tiny, tmp_path, policy):
    """The LR the optimizer used at every iteration (fastai's Recorder) is Caffe's formula
    of that iteration: step drops exactly at multiples of --lr-step, inv decays."""
    from countnet_classify.spec import RunSpec
    from countnet_classify.train import train

    spec = RunSpec(
        data=str(tiny), arch="lenet", lr_policy=policy, lr=0.01, lr_step=2, lr_gamma=0.5,
        epochs=2, size=32, bs=8, lr_find_iters=0, quiet=True, workers=0,
        runs_dir=str(tmp_path), name=policy,
    )  # fmt: skip
    said = []
    res = train(spec, say=said.append, figures=False)
    # --pretrained, the default, cannot apply to LeNet: said, not silently dropped
    assert "weights: none, lenet has no ImageNet weights: trained from scratch" in said
    lrs = res.learner.recorder.lrs
    assert len(lrs) == 6  # 27 training images in batches of 8 (last dropped), 2 epochs
    if policy == "step":
        assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
    else:
        assert lrs == pytest.approx([0.01 * (1 + 0.5 * i) ** -0.75 for i in range(6)])
    cfg = res.record
    assert cfg["resolved"]["schedule"] == f"{policy} for 2 epoch(s)"
    assert cfg["resolved"]["pretrained"] is False  # lenet has no ImageNet weights
    assert cfg["resolved"]["phases"] == [
        {"name": "main", "epochs": 2, "frozen": None, "policy": policy, "lr": 0.01}
    ]


def test_the_seeds_sgd_recipe_runs_as_written(cli, tiny, tmp_path):
    """--opt sgd --momentum --wd with Caffe's inv policy (seed 001's LeNet solver): the
    optimizer is SGD with that momentum at every iteration (not cycled, not Adam), the LR
    follows inv, config.yaml records what ran; with one-cycle a --momentum is held too."""
    from countnet_classify.spec import RunSpec
    from countnet_classify.train import train

    base = dict(
        data=str(tiny), arch="lenet", opt="sgd", lr=0.01, epochs=2, size=32, bs=8,
        lr_find_iters=0, quiet=True, workers=0, runs_dir=str(tmp_path),
    )  # fmt: skip
    seen = []

    class Hypers(__import__("fastai.callback.core").callback.core.Callback):
        def before_step(self):
            pg = self.learn.opt.opt.param_groups[-1]
            seen.append((type(self.learn.opt.opt).__name__, pg["momentum"], pg["lr"]))

    spec = RunSpec(**base, lr_policy="inv", momentum=0.8, wd=1e-3, name="inv")
    res = train(spec, say=lambda m: None, figures=False, cbs=(Hypers(),))
    assert [s[:2] for s in seen] == [("SGD", 0.8)] * 6
    assert [s[2] for s in seen] == pytest.approx([0.01 * (1 + 1e-4 * i) ** -0.75 for i in range(6)])
    assert res.record["run"]["opt"] == "sgd"
    assert res.record["resolved"]["optimizer"] == {"name": "FusedSGD", "mom": 0.8, "wd": 1e-3}
    seen.clear()
    spec = RunSpec(**base, momentum=0.7, name="cycle")  # one-cycle, momentum held at 0.7
    res = train(spec, say=lambda m: None, figures=False, cbs=(Hypers(),))
    assert [s[:2] for s in seen] == [("SGD", 0.7)] * 6
    assert len({s[2] for s in seen}) == 6  # while the LR does cycle
    assert res.record["resolved"]["phases"][0]["moms"] == [0.7, 0.7, 0.7]
    assert res.record["resolved"]["optimizer"] == {"name": "FusedSGD", "mom": 0.7, "wd": 5e-4}
    for extra, frag in (
        (["--opt", "rmsprop"], "unknown --opt 'rmsprop'"),
        (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
        (["--wd", "-1"], "--wd must be a number >= 0"),
    ):
        r = cli("train", tiny, "--no-pretrained", "--runs-dir", tmp_path / "bad", *extra, *FAST)
        assert_one_line_error(r, frag, alone=False)
    assert written(tmp_path / "bad") == []


def test_fine_tune_phases_and_natural_class_order(tmp_path):
    """fine_tune: in phase 1 only BatchNorm and the head train (the body's weights do not
    move); each phase's per-group peak LRs are the ones config.yaml records. Classes 8-12
    keep natural order in config.yaml, model.json, predictions and the confusion matrix,
    and predict on the validation images reproduces the final error_rate."""
    from fastai.callback.core import Callback
    from fastai.callback.schedule import combined_cos
    from fastai.interpret import ClassificationInterpretation

    from countnet_classify.callbacks.precision import ChannelsLast, CPUAutocast
    from countnet_classify.predict import predict
    from countnet_classify.spec import RunSpec
    from countnet_classify.train import train
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import generate

    data = generate(
        DatasetSpec(counts=(8, 12), per_class=8, size=32, radius=(1, 2), valid_pct=0.25),
        tmp_path / "c812", workers=1,
    )  # fmt: skip
    wfile = tmp_path / "r18.pth"
    save_resnet_weights(wfile)

    class Watch(Callback):
        """Per fit: trainable parameters, the body's weights before and after, peak LRs."""

        def __init__(self):
            self.fits = []

        def before_fit(self):
            body = self.learn.model[0]
            self.fits.append(
                {
                    "trainable": {n: p.requires_grad for n, p in body.named_parameters()},
                    "before": {n: p.detach().clone() for n, p in body.named_parameters()},
                    "lrs": [],
                }
            )

        def after_batch(self):
            if self.training:
                self.fits[-1]["lrs"].append([h["lr"] for h in self.opt.hypers])

        def after_fit(self):
            body = self.learn.model[0]
            self.fits[-1]["after"] = {n: p.detach().clone() for n, p in body.named_parameters()}

    watch = Watch()
    spec = RunSpec(
        data=str(data), arch="resnet18", weights=str(wfile), freeze_epochs=1, epochs=1,
        lr=2e-3, lr_find_iters=0, size=32, bs=8, quiet=True, workers=0, device="cpu",
        runs_dir=str(tmp_path), name="ft",
    )  # fmt: skip
    res = train(spec, say=lambda m: None, cbs=(watch,))
    phases = res.record["resolved"]["phases"]
    assert [(p["name"], p["frozen"]) for p in phases] == [("frozen", True), ("unfrozen", False)]
    assert phases[1]["lr"] == pytest.approx([1e-5, 1e-4, 1e-3])  # slice(lr/200, lr/2)
    assert phases[0]["lr"] == pytest.approx([2e-4, 2e-4, 2e-3])  # slice(lr)
    assert len(watch.fits) == 2
    for fit, phase in zip(watch.fits, phases, strict=True):
        # Every batch's per-group LR is fastai's one-cycle curve over the recorded peaks.
        n = len(fit["lrs"])
        div = phase.get("div", 25.0)
        for i, used in enumerate(fit["lrs"]):
            want = [combined_cos(phase["pct_start"], lr / div, lr, lr / 1e5)(i / n)
                    for lr in phase["lr"]]  # fmt: skip
            assert used == pytest.approx(want, rel=1e-6), (phase["name"], i)
    frozen = watch.fits[0]
    is_bn = {n: ".bn" in n or "downsample.1" in n or n.startswith("1.") for n in frozen["before"]}
    assert any(is_bn.values()) and not all(is_bn.values())
    moved = {n: not torch.equal(frozen["before"][n], frozen["after"][n]) for n in is_bn}
    for n, trainable in frozen["trainable"].items():
        assert trainable == is_bn[n], n  # BatchNorm trains, nothing else in the body
        assert is_bn[n] or not moved[n], n
    assert any(moved[n] for n in is_bn if is_bn[n])
    assert all(watch.fits[1]["trainable"].values())  # phase 2: everything trains

    natural = ["8", "9", "10", "11", "12"]
    run = tmp_path / "ft"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["classes"] == natural
    assert json.loads((run / "model.json").read_text())["classes"] == natural
    learn = res.learner
    # fp32 forwards in NCHW memory, as predict's: this near-chance model's logits are
    # near-ties, which bf16 or channels_last rounding can flip for an image. fastai's
    # confusion_matrix() predicts again when called, so it is called in here too.
    layout = [cb for cb in learn.cbs if isinstance(cb, CPUAutocast | ChannelsLast)]
    learn.model.to(memory_format=torch.contiguous_format)
    with learn.removed_cbs(layout):
        interp = ClassificationInterpretation.from_learner(learn)
        matrix = interp.confusion_matrix().tolist()
    assert list(interp.vocab) == natural
    images = sorted((data / "valid").rglob("*.png"))
    preds = predict(run, images)
    assert all(list(p.probs) == natural for p in preds)
    # The confusion matrix, rows actual and columns predicted in natural order, is the one
    # predict's own labels give (a scrambled order would move its entries).
    want = np.zeros((5, 5), dtype=int)
    for p in preds:
        want[natural.index(Path(p.path).parent.name), natural.index(p.label)] += 1
    assert matrix == want.tolist()
    assert not np.array_equal(want, np.diag(np.diag(want)))  # some mistakes: order shows
    wrong = sum(p.label != Path(p.path).parent.name for p in preds)
    final = float(read_csv(run / "metrics.csv")[-1]["error_rate"])
    assert abs(wrong / len(images) - final) <= 1 / len(images) + 1e-5  # one image (bf16)


def test_caffe_schedules_match_their_formulas():
    from countnet_classify.schedules import sched_inv, sched_step

    inv = sched_inv(0.01, 1e-4, 0.75)
    for it in (0, 1, 500, 9999):
        assert inv(it) == pytest.approx(0.01 * (1 + 1e-4 * it) ** -0.75)
    step = sched_step(0.1, 0.1, stepsize=100)
    assert [step(i) for i in (0, 99, 100, 199, 200, 250)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


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


def test_transforms_that_can_change_a_count_are_warned_about(cli, tiny, tmp_path):
    base = ["train", tiny, "--no-pretrained", "--epochs", "1", "--runs-dir", tmp_path, *FAST]
    r = cli(*base, "--transforms", "aug", "--name", "aug")
    assert r.returncode == 0, r.stderr
    assert "warning: --transforms aug can change the count of" in r.stderr
    # A selection made on another dataset is used, but not silently; flips never change a
    # count, so no label warning. (The same function train() calls, without a second run.)
    from countnet_classify.transforms import transform_warnings

    sel = tmp_path / "sel.json"
    sel.write_text(json.dumps({"data": "/elsewhere/set", "chosen": "flips"}))
    (warning,) = transform_warnings(str(sel), "flips", tiny)
    assert "was chosen on /elsewhere/set" in warning and "flips" in warning
    # A selection made on this very set, or one that does not say where: nothing to say.
    for made_on in (str(tiny.resolve()), None, ["not", "a", "path"]):
        sel.write_text(json.dumps({"data": made_on, "chosen": "flips"}))
        assert transform_warnings(str(sel), "flips", tiny) == []


def test_alexnet_trains_and_a_size_it_cannot_take_is_refused(cli, tiny, tmp_path):
    """AlexNet (the seeds' ImageNet network) is an --arch: its stride-4 stem and three
    pools need >= 63 px, so --size 32 is refused in one line before anything is written;
    at 64 px it trains through fastai like the ResNets and predicts."""
    runs = tmp_path / "runs"
    common = ["train", tiny, "--arch", "alexnet", "--no-pretrained", "--runs-dir", runs]
    fast = [a if a != "32" else "64" for a in FAST]
    r = cli(*common, *FAST, "--epochs", "1")
    assert_one_line_error(r, "--size 32 is too small", alone=False)
    assert written(runs) == []
    r = cli(*common, *fast, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    run = runs / "tiny_alexnet"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["run"]["arch"] == "alexnet" and cfg["run"]["size"] == 64
    assert len(read_csv(run / "metrics.csv")) == 1
    cost = json.loads((run / "cost.json").read_text())
    assert cost["arch"] == "alexnet" and cost["size"] == 64
    r = cli("predict", run, *sorted((tiny / "valid" / "1").glob("*.png"))[:2])
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()]) >= 2


@pytest.mark.parametrize("env", ["TORCH_HOME", "XDG_CACHE_HOME", None])
def test_the_workflows_weights_path_is_torchvisions(env, tmp_path, monkeypatch):
    """hub.cached_weights_path (no torch import: the Snakefile asks it in every job) names
    the file weights.expected_weights_path (torchvision's own URL and torch.hub's folder)
    does, for every arch with weights, wherever the torch hub cache is configured."""
    import subprocess
    import sys

    from countnet_classify.hub import cached_weights_path
    from countnet_classify.spec import ARCHS, SCRATCH_ONLY
    from countnet_classify.weights import expected_weights_path

    for var in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    if env:
        monkeypatch.setenv(env, str(tmp_path / env))
    for arch in (a for a in ARCHS if a not in SCRATCH_ONLY):
        assert cached_weights_path(arch) == expected_weights_path(arch), arch
    code = "import sys, countnet_classify.hub; print('torch' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert light.stdout.strip() == "False", light.stderr
