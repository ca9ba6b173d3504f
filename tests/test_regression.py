"""`countnet train --task regression`: the count as a number, counts never seen in training
(`countnet gen --holdout`), predict, the report — and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from countnet.errors import CountnetError
from countnet_classify import evaluate, labels, regression
from countnet_classify.spec import RunSpec
from tests.conftest import assert_one_line_error, written

TRAIN = ("--task", "regression", "--no-pretrained", "--arch", "resnet18", "--head", "linear",
         "--size", "32", "--epochs", "2", "--lr", "3e-3", "--lr-find-iters", "0",
         "--precision", "fp32", "-q")  # fmt: skip


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Path:
    """Counts 1-4 with 3 held out: 3 trained counts x 8 images (6 train / 2 valid), and 8
    images of count 3 in test/ only."""
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import generate

    spec = DatasetSpec(counts=(1, 4), per_class=8, size=32, radius=3, valid_pct=0.25,
                       no_overlap=True, holdout="3")  # fmt: skip
    return generate(spec, tmp_path_factory.mktemp("data") / "held", workers=1)


# The module's run: through the file loader (the cached one is the default everywhere else)
WHOLE = ("--epochs", "3", "--loader", "files", "--workers", "0", "--bs", "4", "--device", "cpu")


def _train_args(held: Path, runs: Path, name: str) -> list:
    return ["train", held, *TRAIN, *WHOLE, "--runs-dir", runs, "--name", name]


@pytest.fixture(scope="module")
def trained(held, tmp_path_factory):
    """One regression run on ``held``, trained through the CLI as a user would."""
    from tests.conftest import run_countnet

    runs = tmp_path_factory.mktemp("runs")
    proc = run_countnet(*_train_args(held, runs, "reg"), check=True)
    return runs / "reg", proc


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_regression_run_reports_mae_rmse_and_rounded_error_every_epoch(trained):
    run, proc = trained
    rows = _csv(run / "metrics.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "error_rate", "accuracy",
                             "mae", "rmse", "time"]  # fmt: skip
    assert len(rows) == 3
    for r in rows:  # the blog's error_rate is 1 - the accuracy of the rounded count
        assert float(r["error_rate"]) == pytest.approx(1 - float(r["accuracy"]), abs=1e-6)
        assert 0 < float(r["mae"]) <= float(r["rmse"])
    assert "mae" in proc.stdout and "rmse" in proc.stdout  # -q's line per epoch
    meta = json.loads((run / "model.json").read_text())
    assert meta["task"] == "regression" and meta["classes"] == ["1", "2", "4"]
    assert meta["target"]["mean"] == pytest.approx(7 / 3)  # the training counts' mean
    cfg = (run / "config.yaml").read_text()
    assert "loss: mse" in cfg and "task: regression" in cfg
    for fig in ("scatter.png", "residuals.png", "losses.png", "batch.png"):
        assert (run / fig).stat().st_size > 1000, fig
    assert not (run / "confusion_matrix.png").exists()


def test_seen_and_unseen_counts_are_predicted_and_summarised_apart(trained, held):
    import yaml

    run, _ = trained
    rows = _csv(run / "predictions.csv")
    valid = [r for r in rows if r["split"] == "valid"]
    test = [r for r in rows if r["split"] == "test"]
    assert len(valid) == 6 and {r["count"] for r in valid} == {"1", "2", "4"}
    assert len(test) == 8 and {(r["count"], r["seen"]) for r in test} == {("3", "False")}
    assert {r["path"] for r in test} == {
        p.relative_to(held).as_posix() for p in (held / "test").rglob("*.png")
    }
    for r in rows:
        assert int(r["rounded"]) == max(0, int(np.floor(float(r["prediction"]) + 0.5)))
    s = yaml.safe_load((run / "config.yaml").read_text())["summary"]["regression"]
    err = [float(r["prediction"]) - 3 for r in test]
    assert s["unseen"]["n"] == 8 and s["seen"]["n"] == 6
    assert s["unseen"]["mae"] == pytest.approx(np.abs(err).mean(), abs=1e-3)
    assert s["unseen"]["bias"] == pytest.approx(np.mean(err), abs=1e-3)
    assert s["by_count"]["3"]["seen"] is False and s["by_count"]["4"]["seen"] is True
    # The final epoch's validation MAE and the summary's "seen" are the same images and
    # weights (fp32): one number.
    last = _csv(run / "metrics.csv")[-1]
    assert s["seen"]["mae"] == pytest.approx(float(last["mae"]), abs=1e-3)


def test_predict_prints_the_count_to_one_decimal_and_its_rounding(trained, held, cli, tmp_path):
    run, _ = trained
    # every validation image (in another order than training's) and three test images
    images = sorted((held / "valid").rglob("*.png")) + sorted((held / "test").rglob("*.png"))[:3]
    r = cli("predict", run, *images)
    assert r.returncode == 0, r.stderr
    by_path = {row["path"]: row for row in _csv(run / "predictions.csv")}
    for line, image in zip(r.stdout.splitlines(), images, strict=True):
        path, count, rounded = line.split("\t")
        assert path == str(image) and count == f"{float(count):.1f}"
        want = float(by_path[image.relative_to(held).as_posix()]["prediction"])
        assert float(count) == pytest.approx(want, abs=0.051)
        assert int(rounded) == max(0, int(np.floor(want + 0.5)))
    out = tmp_path / "p.csv"
    assert cli("predict", run, *images, "--out", out).returncode == 0
    assert list(_csv(out)[0]) == ["path", "prediction", "count"]
    # predictions.csv holds each image's own prediction (both fp32 here: equal to 4 decimals)
    for row, image in zip(_csv(out), images, strict=True):
        want = float(by_path[image.relative_to(held).as_posix()]["prediction"])
        assert float(row["count"]) == pytest.approx(want, abs=2e-4), image


def test_the_report_shows_unseen_counts_scatter_and_residuals(trained, cli, tmp_path):
    run, _ = trained
    r = cli("report", run, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Counts never seen" in md and "### Counts: seen and unseen" in md
    assert "| reg | held | mse | 3 |" in md
    assert "test (counts never seen)" in md
    assert "![Predicted vs true count]" in md and "![Residual by count]" in md
    assert "| epoch | train_loss | valid_loss | error_rate | mae | rmse | time |" in md
    assert "| reg | held | resnet18 (regression, mse loss) |" in md  # the summary says so
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Counts never seen" in page and page.count("data:image/png") >= 4


def test_both_loaders_give_the_same_count_targets(held):
    from countnet_classify.cache import decoded_splits
    from countnet_classify.data import make_cached_dataloaders, make_dataloaders
    from countnet_classify.screen import screen

    sc = screen(held, valid_pct=0.2, seed=0)
    cpu = torch.device("cpu")
    kw = {"bs": 6, "transforms": "none", "device": cpu, "seed": 0, "regression": True}
    files = make_dataloaders(sc, size=32, workers=0, **kw)
    cached = make_cached_dataloaders(decoded_splits(sc, 32, progress=False), **kw)
    (_, y_files), (_, y_cached) = files.valid.one_batch(), cached.valid.one_batch()
    assert y_cached.dtype == torch.float32
    assert sorted(y_files.flatten().tolist()) == sorted(y_cached.tolist()) == [1, 1, 2, 2, 4, 4]


def test_rounding_metrics_and_rescale():
    pred = torch.tensor([46.49, 46.5, 47.6, -0.7, 0.4])
    assert regression.rounded(pred).tolist() == [46, 47, 48, 0, 0]
    targ = torch.tensor([46.0, 46.0, 48.0, 0.0, 1.0])
    assert float(regression.accuracy(pred, targ)) == pytest.approx(3 / 5)
    assert float(regression.error_rate(pred, targ)) == pytest.approx(2 / 5)
    assert float(regression.mae(pred, targ)) == pytest.approx(
        float((pred - targ).abs().mean()), abs=1e-6
    )
    # bf16 holds 47 only to a quarter: the count is computed in float32 from z
    z = torch.tensor([[0.3], [-1.1]], dtype=torch.bfloat16)
    out = regression.Rescale(47.5, 1.7)(z)
    assert out.dtype == torch.float32 and out.shape == (2,)
    assert out.tolist() == pytest.approx([47.5 + 1.7 * float(z[0, 0]), 47.5 - 1.7 * 1.1],
                                         abs=1e-2)  # fmt: skip
    assert labels.standardisation(np.array([3.0, 3.0])) == (3.0, 1.0)


def test_summarise_groups_seen_unseen_and_seen_test_counts():
    rows = [
        {"split": "valid", "count": 2, "seen": True, "prediction": 2.2, "rounded": 2},
        {"split": "valid", "count": 4, "seen": True, "prediction": 3.4, "rounded": 3},
        {"split": "test", "count": 3, "seen": False, "prediction": 3.1, "rounded": 3},
        {"split": "test", "count": 3, "seen": False, "prediction": 2.0, "rounded": 2},
        {"split": "test", "count": 4, "seen": True, "prediction": 4.0, "rounded": 4},
    ]
    s = evaluate.summarise(rows)
    assert s["seen"] == {"n": 2, "mae": 0.4, "rmse": pytest.approx(0.4472, abs=1e-4),
                         "accuracy": 0.5, "bias": -0.2}  # fmt: skip
    assert s["unseen"]["n"] == 2 and s["unseen"]["mae"] == 0.55 and s["unseen"]["accuracy"] == 0.5
    assert s["test_seen"]["n"] == 1 and s["test_seen"]["mae"] == 0.0
    assert list(s["by_count"]) == ["2", "3", "4"] and s["by_count"]["4"]["n"] == 2


def test_bad_regression_input_is_one_line_and_writes_nothing(cli, tmp_path, held):
    from PIL import Image

    pets = tmp_path / "pets"
    for name in ("cat", "dog"):
        (pets / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(pets / name / f"{i}.png")
    runs = tmp_path / "runs"
    assert_one_line_error(
        cli("train", pets, *TRAIN, "--runs-dir", runs),
        "--task regression needs class folders named by counts",
        "'cat' is not a count",
        alone=False,
    )
    assert_one_line_error(
        cli("train", pets, "--loss", "l1", "--runs-dir", runs), "--loss is for --task regression"
    )
    assert_one_line_error(
        cli("train", held, "--task", "counting", "--runs-dir", runs), "unknown --task 'counting'"
    )
    assert_one_line_error(
        cli("train", held, *TRAIN, "--loss", "l3", "--runs-dir", runs), "unknown --loss 'l3'"
    )
    assert written(runs) == []


def test_select_transforms_compares_presets_for_a_regression_run(cli, held, tmp_path):
    """select-transforms --task regression trains each candidate as a regression run (its
    budget records the task); on folders that name no counts it stops in one line and
    writes no result."""
    out = tmp_path / "sel.json"
    r = cli("select-transforms", held, "--task", "regression", "--loss", "l1", "--arch",
            "lenet", "--no-pretrained", "--size", "32", "--candidates", "none,dihedral",
            "--default", "none", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    sel = json.loads(out.read_text())
    assert sel["budget"]["task"] == "regression"
    assert [row["preset"] for row in sel["table"]] == ["none", "dihedral"]
    assert all(0 <= row["error_rate"] <= 1 for row in sel["table"])
    bad = tmp_path / "bad.json"
    (tmp_path / "pets" / "cat").mkdir(parents=True)
    (tmp_path / "pets" / "dog").mkdir()
    from PIL import Image

    for name in ("cat", "dog"):
        for i in range(3):
            Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(tmp_path / "pets" / name / f"{i}.png")
    r = cli("select-transforms", tmp_path / "pets", "--task", "regression", "--no-pretrained",
            "--size", "32", "--out", bad)  # fmt: skip
    assert_one_line_error(r, "'cat' is not a count", alone=False)
    assert written(tmp_path) == ["pets", "sel.json"]  # no result, no scratch runs left


def test_a_test_folder_that_names_no_count_is_refused_before_training(cli, tmp_path, held):
    import shutil

    data = tmp_path / "held"
    shutil.copytree(held, data)
    (data / "test" / "3").rename(data / "test" / "three")
    r = cli("train", data, *TRAIN, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(r, "test/ class folders named by counts", "'three'", alone=False)
    assert written(tmp_path / "runs") == []


def test_task_and_loss_are_part_of_a_run():
    spec = RunSpec(data="d", task="regression", loss="l1")
    # Without --loss a regression run records the default it used: a later default cannot
    # change what --resume continues with.
    assert RunSpec(data="d", task="regression").loss == "mse"
    assert spec.resume_diff(RunSpec(data="d", task="regression").resume_key()) == {
        "loss": ("mse", "l1")
    }
    assert "task" in RunSpec(data="d").resume_diff(spec.resume_key())
    with pytest.raises(CountnetError, match="--loss is for --task regression"):
        RunSpec(data="d", loss="mse")


def test_a_regression_run_killed_and_resumed_equals_the_whole_run(held, trained, tmp_path):
    """SIGKILL after epoch 1, resumed in a fresh process: the same metrics (mae and rmse
    too) and predictions as the module's run, never interrupted."""
    from tests.conftest import COUNTNET, run_countnet
    from tests.test_resume import kill_9_after_checkpoint

    whole, _ = trained
    cmd = [COUNTNET, *_train_args(held, tmp_path, "cut")]
    proc, reached = kill_9_after_checkpoint(cmd, tmp_path / ".cut.partial", 1)
    assert proc.returncode == -9 and 1 <= reached < 3, proc.stderr
    r = run_countnet(*_train_args(held, tmp_path, "cut"), "--resume")
    assert r.returncode == 0 and f"resuming after epoch {reached}/3" in r.stderr, r.stderr
    want, got = (_csv(run / "metrics.csv") for run in (whole, tmp_path / "cut"))
    assert [m["epoch"] for m in got] == ["1", "2", "3"]
    for w, g in zip(want, got, strict=True):
        for col in ("error_rate", "mae", "rmse", "train_loss", "valid_loss"):
            assert float(g[col]) == pytest.approx(float(w[col]), abs=1e-5), (col, want, got)
    preds = [[float(r["prediction"]) for r in _csv(run / "predictions.csv")]
             for run in (whole, tmp_path / "cut")]  # fmt: skip
    assert preds[1] == pytest.approx(preds[0], abs=1e-4) and len(preds[0]) == 14


def test_a_lenet_regression_run_predicts_and_exports(held, cli, tmp_path):
    # LeNet has no head options: model.json records none, and predict must still rebuild
    # its one-output classifier with the Rescale the weights bring. An unreadable test/
    # file is skipped and listed, as screening skips and lists train/ and valid/ ones.
    import shutil

    data = tmp_path / "held"
    shutil.copytree(held, data)
    (data / "test" / "3" / "junk.png").write_bytes(b"not a png")
    runs = tmp_path / "runs"
    r = cli(
        "train",
        data,
        *TRAIN,
        "--arch",
        "lenet",
        "--epochs",
        "1",
        "--runs-dir",
        runs,
        "--name",
        "le",
        "--precision",
        "bf16",
    )  # fmt: skip (bf16: Rescale under autocast)
    assert r.returncode == 0, r.stderr
    assert "test split (predicted after training): 3=8; skipped 1" in r.stderr
    assert (runs / "le" / "skipped.txt").read_text().startswith("test/3/junk.png\tnot an image")
    import yaml

    cfg = yaml.safe_load((runs / "le" / "config.yaml").read_text())
    assert cfg["summary"]["regression"]["unseen"]["n"] == 8 and cfg["data"]["test_skipped"] == 1
    assert cfg["resolved"]["precision"] == "bf16"
    assert json.loads((runs / "le" / "model.json").read_text())["head_dropout"] is None
    images = sorted((held / "test").rglob("*.png"))[:2]
    a = cli("predict", runs / "le", *images)
    assert a.returncode == 0, a.stderr
    assert cli("export", runs / "le").returncode == 0
    b = cli("predict", runs / "le" / "model.onnx", *images)
    assert a.stdout == b.stdout and a.stdout.count("\t") == 4
