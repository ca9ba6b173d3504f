"""maps.png, "where does the count come from?": with the linear head each map's mean is the
network's own answer (a class's logit; through the head's output transform, the predicted
count), fastai's head gets Grad-CAM, LeNet none, and a failure to draw never loses a run.
Two tiny runs (resnet18 from scratch, one epoch), shared by the whole file."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

# 48 px (the workflow's size): the body's last feature map is 2x2, so a map has more than
# one location to average.
RUN = ("--arch", "resnet18", "--no-pretrained", "--size", "48", "--epochs", "1", "--lr", "0.01",
       "--bs", "8", "--workers", "0", "--precision", "fp32", "-q", "--head", "linear")  # fmt: skip
TASKS = {"linear": (), "regression": ("--task", "regression")}


def _countnet(args: list, env: dict) -> tuple[int, str]:
    """``countnet ARGS`` through its main() in this process (the heavy imports paid once,
    as conftest's ``cli``): exit code and stderr."""
    from countnet.cli import main

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setattr(sys, "argv", ["countnet", *map(str, args)])
        for k, v in env.items():
            mp.setenv(k, str(v))
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """A linear-head classification run and a regression run: folder and log (stderr)."""
    out = tmp_path_factory.mktemp("runs")
    env = {"COUNTNET_CACHE_DIR": tmp_path_factory.mktemp("cache"), "COUNTNET_OFFLINE": 1}
    done = {}
    for name, extra in TASKS.items():
        args = ["train", tiny, *RUN, *extra, "--runs-dir", out, "--name", name]
        code, log = _countnet(args, env)
        assert code == 0, log
        done[name] = (out / name, log)
    return done


@pytest.fixture(scope="module")
def fastai_head(tmp_path_factory) -> Path:
    """A run folder of a resnet18 with fastai's head, as training exports it (untrained:
    Grad-CAM needs no training to be Grad-CAM)."""
    from countnet_classify.model import build_model

    return _exported(tmp_path_factory.mktemp("fastai") / "run", build_model("resnet18", 3),
                     arch="resnet18", head="fastai", head_dropout=0.5, size=48)  # fmt: skip


def _exported(folder: Path, model, **meta) -> Path:
    from countnet_classify import run_folder

    meta = {"task": "classification", "classes": ["1", "2", "3"], "resize": "squish",
            "normalize": None, "n_in": 3, **meta}  # fmt: skip
    folder.mkdir()
    run_folder.export_weights(folder, model, meta)
    return folder


def _valid(tiny: Path) -> list[Path]:
    return sorted((tiny / "valid").rglob("*.png"))


def _forward(run: Path, paths: list[Path]):
    """The run's network and its batch for ``paths``, as maps.png was drawn from them."""
    from countnet_classify import maps
    from countnet_classify.predict import Predictor

    predictor = Predictor(run)
    return predictor.model, maps.inputs(predictor, paths)[1]


def test_linear_head_class_maps_average_to_each_logit(runs, tiny):
    from countnet_classify import maps
    from countnet_classify.predict import predict

    run, log = runs["linear"]
    paths = _valid(tiny)
    model, x = _forward(run, paths)
    body, head = maps.body_and_head(model)
    with torch.no_grad():
        logits = model(x)
        every = maps.class_maps(maps.linear_layer(head), body(x))
    assert every.shape == (len(paths), 3, 2, 2)  # 48 px
    assert torch.allclose(every.mean((2, 3)), logits, atol=1e-4)
    # what `countnet predict` says, from the maps alone
    probs = torch.tensor([list(p.probs.values()) for p in predict(run, paths)])
    assert torch.allclose(torch.softmax(every.mean((2, 3)), 1), probs, atol=1e-4)
    # the drawn map is the predicted class's
    drawn = maps.compute(model, x)
    assert drawn.method == maps.CAM
    picked = every[torch.arange(len(paths)), logits.argmax(1)]
    assert torch.allclose(drawn.maps, picked, atol=1e-6)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["maps"]["method"] == maps.CAM and cfg["maps"]["grid"] == [2, 2]
    assert cfg["maps"]["images"] == 6  # 2 of each of the 3 classes
    assert "maps: class activation map (2x2 cells) of 6 validation images" in log


def test_regression_map_sums_to_the_predicted_count(runs, tiny):
    from countnet_classify import maps
    from countnet_classify.predict import predict

    run, log = runs["regression"]
    paths = _valid(tiny)
    model, x = _forward(run, paths)
    drawn = maps.compute(model, x)
    assert drawn.method == maps.CAM and drawn.regression and drawn.maps.shape[1:] == (2, 2)
    counts = torch.tensor([p.count for p in predict(run, paths)])
    assert torch.allclose(drawn.map_counts, counts, atol=1e-4)
    assert torch.allclose(drawn.outputs, counts, atol=1e-4)
    # the learner's own predictions (predictions.csv keeps 4 decimals)
    with open(run / "predictions.csv") as f:
        learner = {r["path"]: float(r["prediction"]) for r in csv.DictReader(f)}
    mine = [learner[p.relative_to(tiny).as_posix()] for p in paths]
    assert np.allclose(drawn.map_counts.numpy(), mine, atol=1e-4 + 5e-5)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["maps"]["caption"].startswith("Count maps (linear head)")
    assert "maps: class activation map (2x2 cells) of 6 validation images" in log


def _drawn(png: Path) -> None:
    """A PNG that PIL reads whole, of a figure's size, not blank."""
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 400
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    assert grey.var() > 100
    assert not list(png.parent.glob(".*.tmp"))


@pytest.mark.parametrize("name", TASKS)
def test_every_run_folder_has_maps_png(runs, name):
    _drawn(runs[name][0] / "maps.png")


def test_fastai_head_gets_grad_cam(fastai_head, tiny):
    from countnet_classify import maps
    from countnet_classify.finish import write_maps

    said: list[str] = []
    items = [(p, p.parent.name, True) for p in _valid(tiny)]
    record = write_maps(fastai_head, items, said.append)
    assert record["method"] == maps.GRAD_CAM and "Grad-CAM" in record["caption"]
    assert len(said) == 1
    assert re.fullmatch(r"maps: Grad-CAM \(2x2 cells\) of 6 validation images, \d+\.\d s", said[0])
    _drawn(fastai_head / "maps.png")
    model, x = _forward(fastai_head, _valid(tiny))
    assert maps.linear_layer(maps.body_and_head(model)[1]) is None
    drawn = maps.compute(model, x)
    assert drawn.method == maps.GRAD_CAM and drawn.map_counts is None
    assert torch.isfinite(drawn.maps).all() and (drawn.maps >= 0).all()


def test_report_shows_the_maps_with_their_caption(runs, cli, tmp_path):
    run, _ = runs["linear"]
    r = cli("report", run, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "report.md").read_text()
    assert "### Where the count comes from (class activation map)" in md
    assert "Maps: Class activation maps (linear head)" in md
    assert "maps.png)" in md
    assert "figcaption>Where the count comes from" in (tmp_path / "report.html").read_text()


def test_lenet_and_failures_leave_the_run_without_maps(tiny, tmp_path):
    from countnet_classify.finish import write_maps
    from countnet_classify.model import build_model

    items = [(p, p.parent.name, True) for p in _valid(tiny)]
    said: list[str] = []
    lenet = _exported(tmp_path / "lenet", build_model("lenet", 3), arch="lenet", size=32,
                      head=None, head_dropout=None)  # fmt: skip
    record = write_maps(lenet, items, said.append)
    assert record["method"] is None and "lenet has no body and head" in record["note"]
    assert said == ["maps: none drawn (lenet has no body and head to map)"]
    assert not (lenet / "maps.png").exists()
    # a failure to draw (here a damaged model.json) is a line, not an exception
    meta = json.loads((lenet / "model.json").read_text())
    (lenet / "model.json").write_text(json.dumps({**meta, "size": 0}))
    said.clear()
    record = write_maps(lenet, items, said.append)
    assert record["method"] is None and record["note"].startswith("drawing failed")
    assert len(said) == 1 and said[0].startswith("maps: none drawn (CountnetError")
    assert sorted(p.name for p in lenet.iterdir()) == ["model.json", "model.safetensors"]
