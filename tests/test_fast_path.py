"""The fast training path: the decoded uint8 cache, batch augmentation on the device,
--precision and the CPU autocast callback. Behaviour on tiny sets, never timings (those are
in bench/train_throughput.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from countnet.tables import read_csv
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate
from tests.conftest import COUNTNET, assert_one_line_error, wait_until, written

FAST = ["--size", "32", "--bs", "8", "--lr-find-iters", "0", "--lr", "3e-3", "--quiet"]


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A folder-labeled set of odd sizes and modes (L, RGBA, P, RGB JPEG): the resize and
    the mode conversion both matter."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            w, h = 20 + 3 * i, 41 - 2 * i
            arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
            mode = ("L", "RGBA", "P", "RGB")[(i + c) % 4]
            if mode == "L":
                Image.fromarray(arr[..., 0], "L").save(root / cls / f"{i}.png")
            elif mode == "RGBA":
                Image.fromarray(arr, "RGBA").save(root / cls / f"{i}.png")
            elif mode == "P":
                Image.fromarray(arr[..., :3], "RGB").quantize(16).save(root / cls / f"{i}.png")
            else:
                Image.fromarray(arr[..., :3], "RGB").save(root / cls / f"{i}.jpg", quality=90)
    return root


def _screened(root, seed=0):
    from countnet_classify.screen import screen

    return screen(root, valid_pct=0.3, seed=seed)


def test_cache_holds_exactly_the_pil_paths_pixels_and_labels(mixed):
    from countnet_classify.cache import decoded_splits
    from countnet_classify.data import make_dataloaders

    sc = _screened(mixed)
    dec = decoded_splits(sc, 24, say=lambda m: None, progress=False)
    dls = make_dataloaders(
        sc, size=24, bs=4, transforms="none", workers=0, device=torch.device("cpu"), seed=0
    )
    for split, dl in (("train", dls.train), ("valid", dls.valid)):
        ds = dl.dataset
        assert dec.images[split].shape == (len(ds), 24, 24, 3)
        for i in range(len(ds)):
            x, y = dl.do_item(i)  # the file path's item pipeline: decode, Resize, ToTensor
            np.testing.assert_array_equal(dec.images[split][i], x.permute(1, 2, 0).numpy())
            assert dec.labels[split][i] == int(y)
    assert dec.classes == list(dls.vocab)


def test_cache_is_reused_and_rebuilt_when_files_change(mixed):
    from countnet_classify.cache import cache_entries, decoded_splits

    def build(**kw):
        return decoded_splits(_screened(mixed), 16, say=lambda m: None, progress=False, **kw)

    first = build()
    assert first.built
    again = build()
    assert not again.built and again.folder == first.folder

    # changed content (same size, new mtime): a new entry, and the stale one is gone
    f = mixed / "cat" / "1.png"
    data = f.read_bytes()
    f.write_bytes(data)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = build()
    assert changed.built and changed.folder != first.folder
    assert [e["folder"] for e in cache_entries()] == [str(changed.folder)]

    Image.new("RGB", (9, 9), "red").save(mixed / "dog" / "new.png")  # added
    added = build()
    assert added.built and sum(len(v) for v in added.labels.values()) == 21
    (mixed / "dog" / "new.png").unlink()  # removed
    removed = build()
    assert removed.built and sum(len(v) for v in removed.labels.values()) == 20
    # and a different size is a different entry
    assert decoded_splits(_screened(mixed), 20, say=lambda m: None, progress=False).built
    # another split of the same files is another entry, and both stay
    other = decoded_splits(_screened(mixed, seed=5), 20, say=lambda m: None, progress=False)
    again = decoded_splits(_screened(mixed), 20, say=lambda m: None, progress=False)
    assert other.built and not again.built


def test_interrupted_cache_build_is_never_used(tmp_path):
    """SIGKILL `countnet train` while it decodes, in a fresh process, as a user would."""
    from countnet_classify.cache import cache_entries, decoded_splits

    spec = DatasetSpec(counts=(1, 2), per_class=1500, size=48, radius=(2, 3), valid_pct=0.2)
    data = generate(spec, tmp_path / "big", workers=2)
    cache = Path(os.environ["COUNTNET_CACHE_DIR"]) / "decoded"
    proc = subprocess.Popen(
        [
            COUNTNET,
            "train",
            str(data),
            "--no-pretrained",
            "--runs-dir",
            str(tmp_path / "runs"),
            *FAST,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def building() -> bool:
        return cache.is_dir() and any(any(p.iterdir()) for p in cache.glob(".*partial*"))

    wait_until(building, proc, 120, "the cache build")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert cache_entries() == []  # the half-built entry is not an entry
    dec = decoded_splits(_screened(data), 32, say=lambda m: None, progress=False)
    assert dec.built and len(dec.labels["train"]) == 2400 and len(dec.labels["valid"]) == 600
    assert int(dec.images["valid"][-1].max()) > 0  # the last image was really decoded


def test_dihedral_on_the_batch_is_the_eight_symmetries():
    from countnet_classify.transforms import batch_transforms

    (tfm,) = batch_transforms("dihedral")
    torch.manual_seed(0)
    x = torch.rand(64, 3, 9, 9)
    from fastai.torch_core import TensorImage

    seen = set()
    for _ in range(4):
        out = tfm(TensorImage(x.clone()), split_idx=0)
        for src, got in zip(x, out, strict=True):
            syms = [torch.rot90(src, k, (1, 2)) for k in range(4)]
            syms += [torch.rot90(src.flip(2), k, (1, 2)) for k in range(4)]
            match = [i for i, s in enumerate(syms) if torch.allclose(s, got, atol=1e-5)]
            assert match, "an output that is not a symmetry of the square"
            seen.add(match[0])
    assert seen == set(range(8))
    # validation batches are never augmented
    assert torch.equal(tfm(TensorImage(x.clone()), split_idx=1), x)


def test_fast_path_matches_the_file_path(tiny_counts, tmp_path):
    """Same seed, same pixels, same batches: fp32 on the cache reproduces the file path's
    numbers; bf16 (the default here when the CPU has it) lands within noise."""
    from countnet_classify.spec import RunSpec
    from countnet_classify.train import train

    def run(name, **kw):
        spec = RunSpec(
            data=str(tiny_counts),
            pretrained=False,
            epochs=2,
            size=32,
            bs=8,
            lr=3e-3,
            lr_find_iters=0,
            quiet=True,
            runs_dir=str(tmp_path),
            name=name,
            transforms="none",
            **kw,
        )
        return train(spec, say=lambda m: None)

    files = run("files", loader="files", precision="fp32")
    cached = run("cache", loader="cache", precision="fp32")
    assert files.record["resolved"]["precision"] == "fp32"
    assert files.record["resolved"]["tiny_conv_grads"] is False
    for a, b in zip(files.metrics, cached.metrics, strict=True):
        assert float(a["error_rate"]) == pytest.approx(float(b["error_rate"]), abs=1e-6)
        assert float(a["valid_loss"]) == pytest.approx(float(b["valid_loss"]), rel=1e-3)
    bf16 = run("bf16", loader="cache", precision="bf16")
    assert bf16.record["resolved"]["precision"] == "bf16"
    from countnet_classify.devices import cpu_has_native_bf16

    assert bf16.record["resolved"]["tiny_conv_grads"] is cpu_has_native_bf16()
    n_valid = files.record["data"]["n_valid"]
    assert abs(float(bf16.metrics[-1]["error_rate"]) - float(files.metrics[-1]["error_rate"])) <= (
        4 / n_valid
    )
    cfg = read_csv(tmp_path / "cache" / "metrics.csv")
    assert len(cfg) == 2


@pytest.fixture(scope="module")
def tiny_counts(tmp_path_factory) -> Path:
    spec = DatasetSpec(
        counts=(1, 3), per_class=16, size=32, radius=(3, 4), valid_pct=0.25, no_overlap=True
    )
    return generate(spec, tmp_path_factory.mktemp("data") / "tiny", workers=1)


def test_cpu_autocast_runs_the_model_in_bf16_and_the_loss_in_fp32():
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from countnet_classify.callbacks.precision import CPUAutocast

    class Probe(Callback):
        order = 9  # before CPUAutocast (10) turns the prediction back to fp32

        def after_pred(self):
            self.pred_dtype = self.learn.pred.dtype

        def after_loss(self):
            self.loss_dtype = self.learn.loss_grad.dtype

    xs, ys = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
    ds = list(zip(xs, ys, strict=True))
    dls = DataLoaders.from_dsets(ds, ds, bs=8, device="cpu")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2)
    )
    probe = Probe()
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), cbs=[CPUAutocast(), probe])
    with learn.no_logging(), learn.no_bar():
        learn.fit(1, 1e-3)
    assert probe.pred_dtype == torch.bfloat16 and probe.loss_dtype == torch.float32
    assert not torch.is_autocast_cpu_enabled()  # nothing leaks out of the batch


def test_auto_precision_and_batch_size_rules(monkeypatch):
    from countnet_classify import devices as prec
    from countnet_classify.spec import auto_batch_size

    cpu = torch.device("cpu")
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    assert prec.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", cpu) == "fp32"
    assert prec.resolve_precision("bf16", cpu) == "bf16"
    assert [auto_batch_size(n) for n in (10, 150, 400, 1200, 4800)] == [8, 16, 32, 64, 64]


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--precision", "fp8"], ["--precision", "fp8", "auto, fp32, bf16, fp16"]),
        (["--precision", "fp16", "--device", "cpu"], ["fp16 needs a CUDA GPU"]),
        (["--loader", "ram"], ["--loader", "cache, files"]),
        (["--bs", "big"], ["--bs", "'auto' or a positive integer"]),
        (["--head-dropout", "1.5"], ["--head-dropout", "[0, 1)"]),
        (["--precise-bn", "-1"], ["--precise-bn", ">= 0"]),
        (["--head", "mlp"], ["--head", "'mlp'", "fastai, linear"]),
    ],
)
def test_bad_fast_path_options(cli, tiny_counts, tmp_path, extra, fragments):
    r = cli("train", tiny_counts, "--no-pretrained", "--runs-dir", tmp_path, *FAST[:6], *extra)
    assert_one_line_error(r, *fragments)
    assert written(tmp_path) == []  # nothing half-written


def test_cache_info_and_clear(cli, tiny_counts, tmp_path):
    r = cli("train", tiny_counts, "--no-pretrained", "--epochs", "1", "--runs-dir", tmp_path, *FAST)
    assert r.returncode == 0, r.stderr
    info = cli("cache", "info")
    assert info.returncode == 0 and "1 entry" in info.stdout and str(tiny_counts) in info.stdout
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0 and "cleared" in cleared.stderr
    assert "0 entries" in cli("cache", "info").stdout


def test_counting_classes_keep_natural_order_in_both_loaders(tmp_path):
    """fastai's CategoryBlock sorts its vocab again ('10' < '8') unless told not to."""
    from countnet_classify.cache import decoded_splits
    from countnet_classify.data import make_cached_dataloaders, make_dataloaders

    spec = DatasetSpec(counts=(8, 12), per_class=4, size=24, radius=(1, 2), valid_pct=0.25)
    data = generate(spec, tmp_path / "c812", workers=1)
    sc = _screened(data)
    cpu = torch.device("cpu")
    natural = ["8", "9", "10", "11", "12"]
    files = make_dataloaders(sc, size=24, bs=4, transforms="none", workers=0, device=cpu, seed=0)
    dec = decoded_splits(sc, 24, say=lambda m: None, progress=False)
    cached = make_cached_dataloaders(dec, bs=4, transforms="none", device=cpu, seed=0)
    assert list(files.vocab) == natural and list(cached.vocab) == natural
    _, y = files.valid.do_item(0)  # the first validation image is in folder 8
    assert files.vocab[int(y)] == "8" and cached.vocab[int(dec.labels["valid"][0])] == "8"


def test_precise_bn_re_estimates_statistics_before_validation():
    """After PreciseBN, a BatchNorm layer's running mean/var are those of the training
    images it saw (not a lagging average), its momentum is restored, and the model is in
    eval mode for validation."""
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from countnet_classify.callbacks.precise_bn import PreciseBN

    torch.manual_seed(0)
    xs = torch.randn(32, 3, 4, 4) * 3 + 5
    ys = torch.zeros(32, dtype=torch.long)
    ds = list(zip(xs, ys, strict=True))
    dls = DataLoaders.from_dsets(ds, ds, bs=8, shuffle=False, device="cpu")
    dls.train.shuffle = False
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(bn, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss())
    bn.running_mean.fill_(-100.0)  # stale statistics
    cb = PreciseBN(n_images=16)
    learn.add_cb(cb)
    cb.before_validate()
    seen = xs[:16]  # train loader, unshuffled: the first two batches
    torch.testing.assert_close(bn.running_mean, seen.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    # unbiased variance per batch, averaged over batches (BatchNorm's cumulative average)
    per_batch = torch.stack([xs[i : i + 8].var(dim=(0, 2, 3), unbiased=True) for i in (0, 8)])
    torch.testing.assert_close(bn.running_var, per_batch.mean(0), rtol=1e-4, atol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    learn.remove_cb(cb)
    off = PreciseBN(n_images=0)  # --precise-bn 0: the running averages stay as they are
    learn.add_cb(off)
    before = bn.running_mean.clone()
    off.before_validate()
    assert torch.equal(bn.running_mean, before)


def test_precise_bn_sees_the_pixels_training_sees_under_bf16_autocast():
    """PreciseBN draws its batches outside autocast, as training does: each image reaching
    the model is exactly one of the eight symmetries of a training image. Drawn under bf16
    autocast, the dihedral transform's sampling grid was bf16 and blurred them, which skewed
    the BatchNorm statistics of every bf16 run."""
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.torch_core import TensorImage

    from countnet_classify.callbacks.precise_bn import PreciseBN
    from countnet_classify.callbacks.precision import CPUAutocast
    from countnet_classify.transforms import batch_transforms

    torch.manual_seed(0)
    xs = torch.randint(0, 256, (16, 3, 24, 24)).float() / 255
    ds = list(zip((TensorImage(x) for x in xs), torch.zeros(16, dtype=torch.long), strict=True))
    dls = DataLoaders.from_dsets(
        ds, ds, bs=8, shuffle=False, device="cpu", after_batch=batch_transforms("dihedral")
    )
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )  # fmt: skip
    seen, autocast = [], []

    def record(module, args):
        seen.append(args[0].detach().clone())
        autocast.append(torch.is_autocast_enabled("cpu"))

    model.register_forward_pre_hook(record)
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), cbs=[CPUAutocast()])
    cb = PreciseBN(n_images=16)
    learn.add_cb(cb)
    cb.before_validate()
    got = torch.cat(seen)
    assert got.shape == xs.shape
    assert autocast == [True, True]  # the forwards themselves run as training's do: bf16
    for src, img in zip(xs, got, strict=True):
        syms = [torch.rot90(src, k, (1, 2)) for k in range(4)]
        syms += [torch.rot90(src.flip(2), k, (1, 2)) for k in range(4)]
        assert min((s - img).abs().max().item() for s in syms) < 1e-5


def test_head_dropout_reaches_the_head(tiny_counts):
    from countnet_classify.cache import decoded_splits
    from countnet_classify.data import make_cached_dataloaders
    from countnet_classify.model import make_learner

    dec = decoded_splits(_screened(tiny_counts), 32, say=lambda m: None, progress=False)
    dls = make_cached_dataloaders(dec, bs=8, transforms="none", device=torch.device("cpu"), seed=0)

    def head_dropouts(p):
        learn = make_learner(dls, "resnet18", None, pretrained=False, head_dropout=p)
        return sorted(m.p for m in learn.model[1].modules() if isinstance(m, torch.nn.Dropout))

    assert head_dropouts(0.3) == pytest.approx([0.15, 0.3])  # fastai halves the first one
    assert head_dropouts(0.0) == []  # p = 0: fastai leaves the layers out


def test_linear_head_is_avg_pool_and_one_linear_layer(tiny_counts):
    from countnet_classify.cache import decoded_splits
    from countnet_classify.data import make_cached_dataloaders
    from countnet_classify.model import build_model, make_learner

    dec = decoded_splits(_screened(tiny_counts), 32, say=lambda m: None, progress=False)
    dls = make_cached_dataloaders(dec, bs=8, transforms="none", device=torch.device("cpu"), seed=0)

    def layers(head):
        learn = make_learner(dls, "resnet18", None, pretrained=False, head=head, head_dropout=0)
        model = learn.model
        return [type(m).__name__ for m in model[1].modules() if not list(m.children())]

    assert layers("linear") == ["AdaptiveAvgPool2d", "Flatten", "Linear"]
    fastai = layers("fastai")
    assert "AdaptiveMaxPool2d" in fastai and fastai.count("Linear") == 2
    assert "BatchNorm1d" in fastai
    # predict rebuilds the same layout from model.json's head and head dropout (fastai drops
    # p = 0 dropout layers, which shifts the layer indices of the fastai head)
    for p in (0.0, 0.5):
        trained = make_learner(dls, "resnet18", None, pretrained=False, head_dropout=p).model
        assert list(trained.state_dict()) == list(
            build_model("resnet18", 3, "fastai", p).state_dict()
        )
    trained = make_learner(dls, "resnet18", None, pretrained=False, head="linear").model
    rebuilt = build_model("resnet18", 3, "linear")
    assert {k: v.shape for k, v in trained.state_dict().items()} == {
        k: v.shape for k, v in rebuilt.state_dict().items()
    }


def test_linear_head_run_predicts_its_own_validation_error(tiny_counts, tmp_path):
    """A --head linear run, then `countnet predict` on the validation images, each in a fresh
    process as a user runs them: the weights-only predictions reproduce the last epoch's
    error_rate (to one image)."""
    import csv
    import json

    from tests.conftest import run_countnet

    r = run_countnet(
        "train", tiny_counts, "--no-pretrained", "--head", "linear", "--head-dropout", "0",
        "--epochs", "2", "--runs-dir", tmp_path, "--name", "lin", *FAST,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "lin"
    assert json.loads((run / "model.json").read_text())["head"] == "linear"
    images = sorted((tiny_counts / "valid").rglob("*.png"))
    p = run_countnet("predict", run, *images, "--out", tmp_path / "preds.csv")
    assert p.returncode == 0, p.stderr
    with open(tmp_path / "preds.csv") as f:
        preds = list(csv.DictReader(f))
    wrong = sum(Path(row["path"]).parent.name != row["prediction"] for row in preds)
    final = float(read_csv(run / "metrics.csv")[-1]["error_rate"])
    assert abs(wrong / len(images) - final) <= 1 / len(images) + 1e-5  # csv: 6 decimals


def test_head_dropout_default_follows_the_head_and_resume_sees_the_value_used():
    from countnet_classify.spec import RunSpec

    assert RunSpec(data="d", head="linear").dropout == 0.0
    assert RunSpec(data="d").dropout == 0.5  # fastai's own ps
    assert RunSpec(data="d", head="linear", head_dropout=0.25).dropout == 0.25
    # the same run whether the default was written out or not: --resume must accept both
    assert (
        RunSpec(data="d", head="linear").resume_key()
        == RunSpec(data="d", head="linear", head_dropout=0).resume_key()
    )
    assert RunSpec(data="d").resume_key() == RunSpec(data="d", head_dropout=0.5).resume_key()
    assert RunSpec(data="d").resume_key() != RunSpec(data="d", head="linear").resume_key()


def test_predict_reads_a_model_json_without_head_fields(tmp_path):
    """Runs exported before --head: no head or head_dropout in model.json. A fastai head
    trained with dropout 0 has no dropout layers (shifted layer names); predict finds it."""
    import json

    from safetensors.torch import save_file

    from countnet_classify.artifact import load_predictor
    from countnet_classify.model import build_model

    model = build_model("resnet18", 3, "fastai", 0.0)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    meta = {"arch": "resnet18", "classes": ["1", "2", "3"], "size": 32, "normalize": None}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded, _ = load_predictor(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_full_config_is_complete_on_its_own():
    """`--configfile config/full.yaml` replaces config/config.yaml (the Snakefile loads the
    default only without --configfile), so full.yaml must carry everything itself."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "full.yaml").read_text())
    names = ("count-1-5", "count-45-50", "count-45-50-var", "count-45-50-distract",
             "count-45-50-regression")  # fmt: skip
    for name in names:
        opts = {**config["train"], **config["experiments"][name]}
        assert (opts["epochs"], opts["size"], opts["transforms"]) == (15, 224, "select"), name
        assert (opts["head"], opts["head_dropout"], opts["precise_bn"]) == ("fastai", 0.5, 1024)
        assert config["datasets"][opts["data"]]["size"] == 224
