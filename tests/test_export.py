"""`countnet export --format onnx` and `countnet predict FILE.onnx`: the same classes, and
probabilities within 1e-4, as the PyTorch weights, for every --arch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from countnet_classify.model import build_model
from countnet_classify.run_folder import export_weights
from countnet_classify.spec import ARCHS, RunSpec
from tests.conftest import assert_one_line_error

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def fake_run(
    folder: Path, arch: str, size: int, normalize: dict | None, regression: bool = False
) -> Path:
    """A run folder as training leaves it (model.json + model.safetensors), random weights
    with the last layer scaled up, so the classes' probabilities are far apart (a
    regression run's counts: spread around 47, as a 45-50 set's standardisation gives)."""
    from countnet_classify.regression import Rescale

    torch.manual_seed(0)
    # model.json's head and dropout as training writes them (LeNet's: none)
    layout = RunSpec(data="d", arch=arch, head="linear" if arch == "resnet18" else "fastai")
    layout = layout.head_layout
    model = build_model(arch, 3, layout["head"] or "fastai", layout["head_dropout"], regression)
    model.eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(30)
        for m in model.modules():
            if isinstance(m, Rescale):
                m.mean.fill_(47.5)
                m.std.fill_(1.7)
    meta = {"arch": arch, **layout, "classes": ["1", "2", "3"], "size": size,
            "resize": "squish", "normalize": normalize, "n_in": 3}  # fmt: skip
    if regression:
        meta.update(task="regression", target={"mean": 47.5, "std": 1.7})
    folder.mkdir(parents=True)
    export_weights(folder, model, meta)
    return folder


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_exports_and_predicts_as_its_weights(arch, tiny, tmp_path):
    from countnet_classify.export import export
    from countnet_classify.predict import predict

    size = 64 if arch == "alexnet" else 32  # AlexNet needs >= 63 px
    norm = IMAGENET if arch in ("resnet34", "alexnet") else None  # as pretrained runs have
    run = fake_run(tmp_path / arch, arch, size, norm)
    onnx_file = export(run)
    assert onnx_file == run / "model.onnx"
    images = sorted(tiny.rglob("*.png"))[::3]
    want, got = predict(run, images), predict(onnx_file, images)
    assert [p.path for p in got] == [p.path for p in want]
    for w, g in zip(want, got, strict=True):
        assert max(abs(g.probs[c] - w.probs[c]) for c in w.probs) < 1e-4
        assert g.label == w.label
    assert len({p.label for p in want}) > 1 or max(p.probability for p in want) > 0.5


@pytest.mark.parametrize("arch", ["lenet", "resnet18"])  # LeNet's classifier, fastai's head
def test_regression_runs_export_and_predict_their_counts(arch, cli, tiny, tmp_path):
    import onnx

    run = fake_run(tmp_path / arch, arch, 32, IMAGENET, regression=True)
    r = cli("export", run)
    assert r.returncode == 0, r.stderr
    proto = onnx.load(str(run / "model.onnx"))
    assert [o.name for o in proto.graph.output] == ["count"]
    assert "regression" in proto.doc_string
    images = sorted(tiny.rglob("*.png"))[::3]
    from countnet_classify.predict import predict

    want, got = predict(run, images), predict(run / "model.onnx", images)
    for w, g in zip(want, got, strict=True):
        assert abs(g.count - w.count) <= 1e-4 * max(1.0, abs(w.count))
        assert g.label == w.label == str(max(0, math.floor(w.count + 0.5)))
        assert w.probability is None and w.probs == {}
    counts = [p.count for p in want]
    assert max(counts) - min(counts) > 0.1  # not a constant: the images' counts differ
    lines = cli("predict", run / "model.onnx", *images[:2]).stdout.splitlines()
    assert [ln.split("\t")[1:] for ln in lines] == [[f"{p.count:.1f}", p.label] for p in want[:2]]


def test_export_cli_writes_checked_onnx_with_its_preprocessing(cli, tiny, tmp_path):
    import onnx

    run = fake_run(tmp_path / "run", "resnet18", 32, IMAGENET)
    r = cli("export", run, "--format", "onnx", "--out", tmp_path / "net.onnx")
    assert r.returncode == 0 and "checked against the weights" in r.stderr
    proto = onnx.load(str(tmp_path / "net.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert '"size": 32' in meta["countnet"] and '"resize": "squish"' in meta["countnet"]
    assert "[0, 1]" in meta["preprocessing"] and "normalisation is inside" in meta["preprocessing"]
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "logits"]
    images = sorted((tiny / "valid").rglob("*.png"))[:2]
    a, b = cli("predict", tmp_path / "net.onnx", *images), cli("predict", run, *images)
    assert a.returncode == 0 and a.stdout.count(".png") == 2
    assert [ln.split("\t")[1] for ln in a.stdout.splitlines()] == [
        ln.split("\t")[1] for ln in b.stdout.splitlines()
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "run"]  # no temp left


def test_export_and_onnx_predict_bad_input(cli, tiny, tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run", "lenet", 32, None)
    assert_one_line_error(cli("export", tmp_path / "nope"), "does not exist")
    assert_one_line_error(cli("export", run, "--format", "tflite"), "--format must be one of onnx")
    assert_one_line_error(cli("export", run, "--out", tmp_path / "x.txt"), "must end in .onnx")
    image = next(tiny.rglob("*.png"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    assert_one_line_error(cli("predict", junk, image), "not a readable ONNX model")
    assert_one_line_error(cli("predict", tmp_path / "absent.onnx", image), "does not exist")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the extra not installed
    assert_one_line_error(cli("export", run), "uv sync --extra onnx")
    assert not (run / "model.onnx").exists()


def test_an_export_that_differs_from_the_weights_is_refused(tmp_path, monkeypatch):
    # The check runs the file against the loaded weights, not the exporter's rewritten copy:
    # a wrong rewrite (LeNet's unrolled pool, broken here) is refused and nothing is written.
    from countnet.errors import CountnetError
    from countnet_classify import export as export_mod

    run = fake_run(tmp_path / "run", "lenet", 32, None)
    forward = export_mod.Unrolled.forward
    monkeypatch.setattr(export_mod.Unrolled, "forward", lambda self, x: forward(self, x) * 1.5)
    with pytest.raises(CountnetError, match="differs from the weights"):
        export_mod.export(run)
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "model.safetensors"]


@pytest.mark.parametrize(
    ("key", "value"), [("size", 64), ("classes", ["1", "2", "3", "4"]), ("task", "regression")]
)
def test_onnx_metadata_that_disagrees_with_its_graph_is_one_line(cli, tiny, tmp_path, key, value):
    """An exported file whose countnet metadata was edited (another size, another number of
    classes, another task) is refused in one line before any image is read, instead of
    onnxruntime's error halfway through predicting."""
    import json

    import onnx

    run = fake_run(tmp_path / "run", "lenet", 32, None)
    assert cli("export", run, "--out", tmp_path / "net.onnx").returncode == 0
    proto = onnx.load(str(tmp_path / "net.onnx"))
    entry = next(p for p in proto.metadata_props if p.key == "countnet")
    entry.value = json.dumps({**json.loads(entry.value), key: value})
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    image = next(tiny.rglob("*.png"))
    assert_one_line_error(cli("predict", tmp_path / "edited.onnx", image),
                          "disagrees with its graph", "export the run again")  # fmt: skip
