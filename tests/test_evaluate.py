"""`countnet evaluate RUN DATA...` (issue 29, item 1): a finished run scored on labelled
sets — its own validation split reproducing metrics.csv, class folders it does not know,
damaged images, a regression run on counts it never saw — and bad input in one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, run_countnet
from tests.test_export import fake_run

# The module's run: fp32 on the CPU, so its validation metrics are the fp32 forward's that
# evaluate computes on any host (bf16 autocast or TF32 would differ by their rounding).
TRAIN = ("--no-pretrained", "--arch", "resnet18", "--size", "32", "--epochs", "1",
         "--lr", "0.01", "--precision", "fp32", "--device", "cpu", "--lr-find-iters", "0",
         "--precise-bn", "16", "--bs", "8", "--workers", "0", "-q")  # fmt: skip


@pytest.fixture(scope="module")
def counts(tmp_path_factory) -> Path:
    """Counts 1-3, 12 images each, half in valid/: countnet gen's layout."""
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import generate

    spec = DatasetSpec(counts=(1, 3), per_class=12, size=32, radius=3, valid_pct=0.5)
    return generate(spec, tmp_path_factory.mktemp("data") / "counts", workers=1)


@pytest.fixture(scope="module")
def run(counts, tmp_path_factory) -> Path:
    """One classifier trained on ``counts`` through the CLI, as a user trains it."""
    runs = tmp_path_factory.mktemp("runs")
    run_countnet("train", counts, *TRAIN, "--runs-dir", runs, "--name", "c13", check=True)
    return runs / "c13"


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_its_own_validation_split_reproduces_metrics_csv(run, counts, cli):
    proc = run_countnet("evaluate", run, counts)
    assert proc.returncode == 0, proc.stderr
    out = run / "eval" / "counts"
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png", "metrics.json", "predictions.csv"]  # fmt: skip
    m = _metrics(out)
    final = _rows(run / "metrics.csv")[-1]
    assert f"{m['error_rate']:.6f}" == final["error_rate"]
    assert f"{m['accuracy']:.6f}" == final["accuracy"]
    assert m["loss"] == pytest.approx(float(final["valid_loss"]), abs=1e-5)
    assert m["set"] == "counts" and m["task"] == "classification" and m["images"] == 18
    assert list(m["splits"]) == ["valid"] and m["splits"]["valid"]["images"] == 18
    assert m["unknown_classes"] == [] and m["skipped"] == []
    preds = pd.read_csv(out / "predictions.csv", dtype={"true": str, "predicted": str})
    assert list(preds.columns) == ["path", "true", "predicted", "probability"]
    assert len(preds) == 18 and preds["path"].str.startswith("valid/").all()
    assert (preds["true"] == preds["path"].str.split("/").str[1]).all()
    assert 1 - (preds["true"] == preds["predicted"]).mean() == pytest.approx(m["error_rate"])
    for c, acc in m["per_class"].items():
        mine = preds[preds["true"] == c]
        assert (mine["predicted"] == c).mean() == pytest.approx(acc)
    with Image.open(out / "confusion_matrix.png") as im:
        im.verify()
    assert "counts" in proc.stdout and f"{m['error_rate']:.4f}" in proc.stdout
    # rerun: the set's folder replaced, nothing left beside it but the lock file
    again = cli("evaluate", run.name, counts, "--runs-dir", run.parent)
    assert again.returncode == 0, again.stderr
    assert _metrics(out) == m
    assert sorted(p.name for p in (run / "eval").iterdir()) == [".counts.lock", "counts"]


def test_a_class_the_run_does_not_know_is_counted_wrong_and_listed(run, counts, tmp_path, cli):
    data = tmp_path / "shifted"
    for c in ("1", "2"):
        shutil.copytree(counts / "valid" / c, data / c)
    shutil.copytree(counts / "valid" / "3", data / "7")  # a count the classifier never saw
    r = cli("evaluate", run, data)
    assert r.returncode == 0, r.stderr
    m = _metrics(run / "eval" / "shifted")
    assert m["unknown_classes"] == ["7"] and m["unknown_images"] == 6
    assert m["per_class"]["7"] == 0
    rows = _rows(run / "eval" / "shifted" / "predictions.csv")
    assert len(rows) == 18 and all(r["predicted"] != "7" for r in rows)
    assert m["error_rate"] == sum(r["true"] != r["predicted"] for r in rows) / 18
    assert m["splits"] == {}
    (line,) = [ln for ln in r.stderr.splitlines() if "does not know" in ln]
    assert "6 image(s)" in line and line.endswith(": 7")


def test_many_unknown_classes_are_listed_in_one_short_line(run, counts, tmp_path, cli):
    data = tmp_path / "many"
    shutil.copytree(counts / "valid" / "1", data / "1")
    one = next((counts / "valid" / "2").iterdir())
    for c in range(100, 140):  # 40 counts the classifier never saw, an image each
        (data / str(c)).mkdir()
        shutil.copy(one, data / str(c) / one.name)
    r = cli("evaluate", run, data)
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "does not know" in ln]
    assert line.endswith(": 100, 101, 102, 103, 104, 105, 106, 107, ... (40 in all)"), line
    assert len(_metrics(run / "eval" / "many")["unknown_classes"]) == 40  # all, in the file


def test_a_set_with_none_of_its_classes_is_refused(run, counts, tmp_path, cli):
    for c in ("cats", "dogs"):
        shutil.copytree(counts / "valid" / "1", tmp_path / "pets" / c)
    before = sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*"))
    proc = cli("evaluate", run, counts, tmp_path / "pets")
    assert proc.returncode == 2
    assert_one_line_error(proc, "has none of the run's classes (1, 2, 3)", "cats, dogs")
    # refused before anything was scored: the good set beside it is not written either
    assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    (tmp_path / "junk" / "2").mkdir(parents=True)
    (tmp_path / "junk" / "2" / "a.png").write_bytes(b"")
    proc = cli("evaluate", run, counts, tmp_path / "junk")
    assert proc.returncode == 2
    assert_one_line_error(proc, "no readable image in", "1 file(s) skipped")
    assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*")) == before


def test_bad_runs_and_sets_are_one_line(run, counts, tmp_path, cli):
    cases = [
        (("evaluate", tmp_path / "nope", counts), "does not exist"),
        (("evaluate", "nope", counts, "--runs-dir", run.parent), "no run 'nope' in"),
        (("evaluate", run, tmp_path / "missing"), "does not exist"),
        (("evaluate", run, counts, counts / "valid", "--name", "x"), "--name names one set"),
        (("evaluate", run, counts, "--name", "../x"), "one folder name"),
        (("evaluate", run, counts, counts), "are both named 'counts'"),
    ]
    for args, fragment in cases:
        r = cli(*args)
        assert r.returncode == 2, args
        assert_one_line_error(r, fragment)


def test_damaged_images_are_skipped_listed_and_exit_3(run, counts, tmp_path, cli):
    split = tmp_path / "copy" / "valid"  # a single split folder: the set "copy-valid"
    shutil.copytree(counts / "valid", split)
    truncated, empty = sorted((split / "2").glob("*.png"))[:2]
    truncated.write_bytes(truncated.read_bytes()[:100])
    empty.write_bytes(b"")
    proc = cli("evaluate", run, split)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    for bad in (truncated, empty):
        assert sum(ln.startswith(f"warning: skipped {bad}: ") for ln in lines) == 1
    assert "warning: 2 image(s) skipped (not scored):" in proc.stderr
    out = run / "eval" / "copy-valid"
    m = _metrics(out)
    assert m["images"] == 16 and {s["path"] for s in m["skipped"]} == {str(truncated), str(empty)}
    assert len(_rows(out / "predictions.csv")) == 16


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Path:
    """Counts 1-4 with 3 held out (only in test/), `countnet gen --holdout` as a user runs it."""
    out = tmp_path_factory.mktemp("data") / "held"
    run_countnet("gen", "--range", "1-4", "--holdout", "3", "--per-class", "6", "--size", "32",
                 "--radius", "3", "--out", out, "-q", check=True)  # fmt: skip
    return out


def test_a_regression_run_reports_mae_per_count_seen_or_not(held, tmp_path, cli):
    # weights only matter as numbers here: a random regression network trained on 1, 2, 4
    reg = fake_run(tmp_path / "reg", "resnet18", 32, None, regression=True)
    meta = json.loads((reg / "model.json").read_text())
    (reg / "model.json").write_text(json.dumps({**meta, "classes": ["1", "2", "4"]}))
    r = cli("evaluate", reg, held)
    assert r.returncode == 0, r.stderr
    out = reg / "eval" / "held"
    m = _metrics(out)
    assert m["task"] == "regression" and list(m["splits"]) == ["valid", "test"]
    assert m["unknown_classes"] == []  # an unseen count is a question, not an error
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns) == ["path", "true", "predicted", "count"]
    assert set(preds["true"]) == {1, 2, 3, 4}
    for c, e in m["per_count"].items():
        mine = preds[preds["true"] == int(c)]
        assert e["n"] == len(mine) and e["seen"] == (c != "3")
        assert e["mae"] == pytest.approx((mine["count"] - int(c)).abs().mean(), abs=1e-3)
        assert e["bias"] == pytest.approx((mine["count"] - int(c)).mean(), abs=1e-3)
    test = preds[preds["path"].str.startswith("test/")]
    assert set(test["true"]) == {3} and m["splits"]["test"]["images"] == len(test)
    assert m["mae"] == pytest.approx((preds["count"] - preds["true"]).abs().mean(), abs=1e-3)
    assert (out / "scatter.png").is_file() and not (out / "confusion_matrix.png").exists()
    assert "MAE" in r.stdout


def test_a_file_name_that_is_not_utf8_is_scored_and_written(counts, tmp_path, cli):
    """predictions.csv stays UTF-8 that any CSV reader loads: the name's bytes as \\xff."""
    # weights only matter as numbers here: any classifier of 1-3 scores the file
    clf = fake_run(tmp_path / "clf", "resnet18", 32, None)
    split = tmp_path / "named" / "valid"
    shutil.copytree(counts / "valid", split)
    first = sorted((split / "1").glob("*.png"))[0]
    first.rename(split / "1" / os.fsdecode(b"caf\xe9.png"))  # a Latin-1 name on a UTF-8 host
    r = cli("evaluate", clf, split)
    assert r.returncode == 0, r.stderr
    preds = pd.read_csv(clf / "eval" / "named-valid" / "predictions.csv", encoding="utf-8")
    assert "1/caf\\xe9.png" in set(preds["path"]) and len(preds) == 18


def test_a_set_whose_folder_cannot_name_its_results_asks_for_name(counts, tmp_path, cli):
    """The folder's own name (not UTF-8) is no --name the user gave: the line says which
    set and what to do; an empty --name is refused rather than ignored."""
    clf = fake_run(tmp_path / "clf", "resnet18", 32, None)
    odd = tmp_path / os.fsdecode(b"set\xfe")
    shutil.copytree(counts / "valid", odd)
    r = cli("evaluate", clf, odd)
    assert_one_line_error(r, "set\\xfe", "give the set a --name")
    assert "--name 'set" not in r.stderr
    assert cli("evaluate", clf, odd, "--name", "odd").returncode == 0
    assert_one_line_error(cli("evaluate", clf, counts, "--name", ""), "--name ''")
    assert not (clf / "eval" / "counts").exists()


def test_probe_scores_replace_their_own_folder_and_never_a_users(run, counts, tmp_path):
    """The workflow's probes job (evaluate_into) writes <out>/<set>/ as one folder: a rerun
    replaces what it wrote before; a folder holding anything else is refused, untouched."""
    from countnet.errors import CountnetError
    from countnet_classify.scoring import evaluate_into

    out = tmp_path / "probes"
    evaluate_into(run, {"same": counts}, out, say=lambda m: None)
    assert sorted(p.name for p in (out / "same").iterdir())[0] == "confusion_matrix.png"
    evaluate_into(run, {"again": counts}, out, say=lambda m: None)  # its own: replaced
    assert [p.name for p in out.iterdir()] == ["again"]
    mine = out / "again" / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(CountnetError, match="nothing was changed"):
        evaluate_into(run, {"third": counts}, out, say=lambda m: None)
    assert mine.read_text() == "mine" and not (out / "third").exists()


def test_the_class_folder_a_run_trained_on_is_scored_on_its_validation_split(counts, tmp_path):
    """A user's folder of class folders, trained on, then evaluated with the same folder
    (the first trial scored all of it, training images included, as "beyond the training
    set"): only the images the run held out are scored, reproducing metrics.csv; once the
    folder's files change, the split cannot be told apart and evaluate says so."""
    folder = tmp_path / "mine"
    for f in counts.rglob("*.png"):
        (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, folder / f.parent.name / f"{f.parent.parent.name}-{f.name}")
    runs = tmp_path / "runs"
    run_countnet("train", folder, *TRAIN, "--runs-dir", runs, "--name", "mine", check=True)
    proc = run_countnet("evaluate", runs / "mine", folder)
    assert proc.returncode == 0, proc.stderr
    m = _metrics(runs / "mine" / "eval" / "mine")
    final = _rows(runs / "mine" / "metrics.csv")[-1]
    assert list(m["splits"]) == ["valid"] and m["images"] == 6  # 20% of 3 x 12 (2 a class)
    assert f"{m['error_rate']:.6f}" == final["error_rate"]
    assert m["loss"] == pytest.approx(float(final["valid_loss"]), abs=1e-5)
    shutil.copy(next(folder.rglob("*.png")), folder / "1" / "extra.png")
    proc = run_countnet("evaluate", runs / "mine", folder, "--name", "again")
    assert_one_line_error(proc, "is the folder mine trained on, and its files changed since")
