"""`countnet baseline`: the classical counter beside the CNN (issue 29, item 3). Tiny
generated sets; the counter itself costs milliseconds an image."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from countnet_classify.classical import count_components, fit, measure_images, read_set
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate
from tests.conftest import assert_one_line_error, run_countnet

GEN = {  # name -> `countnet gen`'s options
    "plain": dict(counts="1-4", per_class=30, size=32, radius=3, no_overlap=True),
    "distract": dict(counts="1-3", per_class=40, size=40, radius=3, no_overlap=True,
                     distractors="2-3", distractor_shape=("square", "triangle", "ring")),
    "overlap": dict(counts="6-10", per_class=30, size=48, radius=4, no_overlap=False),
}  # fmt: skip


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """The sets, written by gen's own writer in this process (a process each would cost
    more than the tests)."""
    root = tmp_path_factory.mktemp("sets")
    for name, options in GEN.items():
        generate(DatasetSpec(**options), root / name, workers=1)
    return {name: root / name for name in GEN}


def baseline(cli, data: Path, runs: Path) -> dict:
    res = cli("baseline", data, "--runs-dir", runs)
    assert res.returncode == 0, res.stderr
    return json.loads((runs / "baselines" / data.name / "metrics.json").read_text())


def test_no_overlap_set_is_counted_nearly_perfectly(cli, sets, tmp_path):
    metrics = baseline(cli, sets["plain"], tmp_path / "runs")
    assert metrics["set"] == "plain" and metrics["images"] == 4 * 6
    assert metrics["error_rate"] <= 0.05 and metrics["mae"] <= 0.05
    assert set(metrics["per_count"]) == {"1", "2", "3", "4"}
    assert metrics["params"]["colours"] == "dataset.json"
    assert metrics["splits"]["valid"]["images"] == 24
    # the outputs, read by the standard loaders, agree with each other
    folder = tmp_path / "runs" / "baselines" / "plain"
    with open(folder / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["images"]
    wrong = sum(int(r["prediction"]) != int(r["count"]) for r in rows)
    assert wrong / len(rows) == metrics["error_rate"]
    assert all((sets["plain"] / r["path"]).is_file() for r in rows)
    assert "plain" in cli("baseline", sets["plain"], "--runs-dir", tmp_path / "runs").stdout


def test_the_shape_filter_is_what_rejects_distractors(sets):
    """Squares, triangles and rings beside the circles: the counter fitted on train keeps a
    filter, and without it the same counter counts the distractors."""
    split = read_set(sets["distract"])
    fg, bg = (31.0, 119.0, 180.0), (255.0, 255.0, 255.0)
    train = measure_images(split["train"].paths, fg, bg, workers=1)
    params = fit(train, split["train"].counts, fg, bg, "dataset.json")
    valid = measure_images(split["valid"].paths, fg, bg, workers=1)
    labels = split["valid"].counts
    err = np.mean(count_components(valid, params) != labels)
    off = dataclasses.replace(params, min_roundness=0.0, min_area=0.0)
    err_off = np.mean(count_components(valid, off) != labels)
    assert params.min_roundness > 0 or params.min_area > 0
    assert err <= 0.2 and err_off >= err + 0.3, (err, err_off)


def test_overlapping_circles_are_harder(cli, sets, tmp_path):
    plain = baseline(cli, sets["plain"], tmp_path / "runs")
    overlap = baseline(cli, sets["overlap"], tmp_path / "runs")
    assert overlap["error_rate"] >= plain["error_rate"] + 0.1


def test_parameters_come_from_train_alone(cli, sets, tmp_path):
    """Valid images swapped between classes change the score, never the parameters."""
    data = tmp_path / "plain"
    shutil.copytree(sets["plain"], data)
    before = baseline(cli, data, tmp_path / "a")
    one, four = sorted((data / "valid" / "1").iterdir()), sorted((data / "valid" / "4").iterdir())
    for a, b in zip(one, four, strict=True):
        tmp = a.with_suffix(".tmp")
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
    after = baseline(cli, data, tmp_path / "b")
    assert after["params"] == before["params"]
    assert after["error_rate"] > before["error_rate"] + 0.4


def test_a_folder_without_dataset_json_uses_otsu(cli, sets, tmp_path):
    data = tmp_path / "mine"
    shutil.copytree(sets["plain"] / "train", data / "train")
    shutil.copytree(sets["plain"] / "valid", data / "valid")
    metrics = baseline(cli, data, tmp_path / "runs")
    assert metrics["params"]["colours"] == "otsu"
    assert metrics["error_rate"] <= 0.05


def test_a_rerun_replaces_its_folder_but_never_a_users(cli, sets, tmp_path):
    runs = tmp_path / "runs"
    baseline(cli, sets["plain"], runs)
    baseline(cli, sets["plain"], runs)
    folder = runs / "baselines" / "plain"
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "predictions.csv"]
    (folder / "notes.txt").write_text("mine")
    res = cli("baseline", sets["plain"], "--runs-dir", runs)
    assert_one_line_error(res, "neither")
    assert (folder / "notes.txt").read_text() == "mine"


def test_bad_input_is_one_line(cli, sets, tmp_path):
    res = cli("baseline", tmp_path / "absent", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(res, "absent", "no such folder")
    cats = tmp_path / "cats"
    for split in ("train", "valid"):
        shutil.copytree(sets["plain"] / "train" / "1", cats / split / "tabby")
    res = cli("baseline", cats, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(res, "tabby", "named by counts")
    broken = tmp_path / "broken"
    shutil.copytree(sets["plain"], broken)
    (broken / "valid" / "2" / "002_000099.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    # a fresh process, as a user runs it: the exit status is the real one
    proc = run_countnet("baseline", broken, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(proc, "cannot read image", "002_000099.png")
    assert not (tmp_path / "runs" / "baselines" / "broken").exists()


def test_odd_file_names_and_a_fifo(cli, sets, tmp_path):
    """A name that is not UTF-8 is counted and written as its bytes (\\xff); a FIFO named
    like an image is one line, not a command that waits for a writer forever."""
    data = tmp_path / "odd"
    shutil.copytree(sets["plain"], data)
    first = sorted((data / "valid" / "1").glob("*.png"))[0]
    first.rename(data / "valid" / "1" / os.fsdecode(b"caf\xe9.png"))
    baseline(cli, data, tmp_path / "runs")
    with open(tmp_path / "runs" / "baselines" / "odd" / "predictions.csv", encoding="utf-8") as f:
        assert "valid/1/caf\\xe9.png" in {r["path"] for r in csv.DictReader(f)}
    os.mkfifo(data / "train" / "2" / "pipe.png")
    proc = run_countnet("baseline", data, "--runs-dir", tmp_path / "runs", timeout=60)
    assert_one_line_error(proc, "pipe.png", "not a regular file")


def test_a_dataset_json_whose_colours_are_one_falls_back_to_otsu(cli, sets, tmp_path):
    """fg == bg leaves no line to project pixels onto: Otsu's colours, not NaN coverage,
    a NumPy warning and every image counted 0."""
    data = tmp_path / "same"
    shutil.copytree(sets["plain"], data)
    meta = json.loads((data / "dataset.json").read_text())
    meta["spec"]["fg"] = meta["spec"]["bg"]
    (data / "dataset.json").write_text(json.dumps(meta))
    proc = run_countnet("baseline", data, "--runs-dir", tmp_path / "runs")
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
    metrics = json.loads((tmp_path / "runs" / "baselines" / "same" / "metrics.json").read_text())
    assert metrics["params"]["colours"] == "otsu" and metrics["error_rate"] <= 0.05


def test_a_set_named_with_a_newline_is_reported_on_one_line(cli, sets, tmp_path):
    data = tmp_path / "two\nlines"
    shutil.copytree(sets["plain"], data)
    res = cli("baseline", data, "--runs-dir", tmp_path / "runs")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"wrote {tmp_path}/runs/baselines/two\\nlines"]


def test_a_dataset_json_that_is_a_fifo_falls_back_to_otsu(sets, tmp_path):
    """`countnet baseline` reads dataset.json's colours: a FIFO by that name (reading it
    would wait forever) is no countnet dataset.json, and the colours come from Otsu."""
    import os
    import shutil

    data = tmp_path / "plain"
    shutil.copytree(sets["plain"], data)
    (data / "dataset.json").unlink()
    os.mkfifo(data / "dataset.json")
    proc = run_countnet("baseline", data, "--runs-dir", tmp_path / "runs", timeout=120)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "runs" / "baselines" / "plain" / "metrics.json").read_text())
    assert metrics["params"]["colours"] == "otsu"
