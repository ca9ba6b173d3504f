"""`countnet predict` on folders of a user's own photos: walked recursively (image files
only, natural order), files that do not decode skipped with a warning each and listed at
the end, the rest predicted; exit status 0 (all predicted), 3 (some skipped), 2 (error)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, run_countnet
from tests.test_export import fake_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder as training leaves it (random weights: no training needed here)."""
    return fake_run(tmp_path_factory.mktemp("runs") / "r", "resnet18", 32, None)


def photos(folder: Path) -> tuple[list[Path], dict[str, Path]]:
    """52 JPEGs in two levels (one grayscale), plus a truncated one, a zero-byte one, a text
    file named .jpg, a FIFO named .jpg, a text file and a hidden picture: (the readable
    images in natural order, the unreadable ones by kind)."""
    rng = np.random.default_rng(0)
    good = []
    for sub, n in (("", 30), ("more", 22)):  # photos/img1..img30, photos/more/img1..img22
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            path = folder / sub / f"img{i}.jpg"
            pixels = rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
            good.append(path)
    Image.fromarray(rng.integers(0, 256, (50, 50), dtype=np.uint8), "L").save(folder / "img7.jpg")
    bad = {"truncated": folder / "img15.jpg", "empty": folder / "more" / "img3.jpg"}
    data = bad["truncated"].read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["empty"].write_bytes(b"")
    bad["text"] = folder / "notes.jpg"
    bad["text"].write_text("not a picture\n")
    bad["fifo"] = folder / "more" / "live.jpg"
    os.mkfifo(bad["fifo"])  # opened, it would wait for a writer forever
    (folder / "notes.txt").write_text("not an image file: left out\n")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / ".thumb.jpg")
    readable = [p for p in good if p not in bad.values()]
    return readable, bad


def test_a_folder_with_damaged_photos_predicts_the_rest_and_lists_them(run, tmp_path):
    folder = tmp_path / "photos"
    readable, bad = photos(folder)
    out = tmp_path / "preds.csv"
    proc = run_countnet("predict", run, folder, "--out", out)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    # natural order, folder by folder: img2 before img10, the subfolder's after img30
    assert [r["path"] for r in rows] == [str(p) for p in readable]
    assert all(r["prediction"] in ("1", "2", "3") for r in rows)
    lines = proc.stderr.splitlines()
    warnings = [ln for ln in lines if ln.startswith("warning: skipped ")]
    for p in bad.values():  # one line each; notes.txt and .thumb.jpg are not looked at
        assert sum(ln.startswith(f"warning: skipped {p}: ") for ln in warnings) == 1, p
    assert len(warnings) == len(bad), proc.stderr
    end = lines.index(f"warning: {len(bad)} of {len(readable) + len(bad)} inputs skipped "
                      "(not predicted):")  # fmt: skip
    assert sorted(ln.strip() for ln in lines[end + 1 :]) == sorted(map(str, bad.values()))
    assert "zero-byte" in next(w for w in warnings if str(bad["empty"]) in w)
    assert "not an image" in next(w for w in warnings if str(bad["text"]) in w)
    assert "not a regular file" in next(w for w in warnings if str(bad["fifo"]) in w)


def test_exit_status_all_predicted_and_nothing_readable(run, tmp_path, cli):
    folder = tmp_path / "ok"
    folder.mkdir()
    Image.new("RGB", (20, 20), "white").save(folder / "a.png")
    Image.new("L", (20, 20), 128).save(folder / "b.jpg")
    ok = cli("predict", run, folder, folder / "a.png")  # a folder and a file, as given
    assert ok.returncode == 0, ok.stderr
    assert [ln.split("\t")[0] for ln in ok.stdout.splitlines()] == [
        str(folder / "a.png"), str(folder / "b.jpg"), str(folder / "a.png")]  # fmt: skip
    assert ok.stderr == ""
    # a newline in a name: still one line a prediction, the name escaped as skipped.txt does
    Image.new("RGB", (20, 20), "white").save(folder / "c\nd.png")
    (folder / "e\nf.png").write_bytes(b"")
    odd = cli("predict", run, folder)
    assert odd.returncode == 3
    assert [ln.split("\t")[0] for ln in odd.stdout.splitlines()] == [
        str(folder / "a.png"), str(folder / "b.jpg"), f"{folder}/c\\nd.png"]  # fmt: skip
    assert f"warning: skipped {folder}/e\\nf.png: zero-byte file" in odd.stderr.splitlines()
    (folder / "c\nd.png").unlink()
    (folder / "e\nf.png").unlink()

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "none.csv"
    proc = cli("predict", run, tmp_path / "broken.png", tmp_path / "absent.jpg", "--out", out)
    assert proc.returncode == 2
    assert_one_line_error(proc, "no readable image to predict (2 input(s) skipped)", alone=False)
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("predict", run, empty, folder)
    assert proc.returncode == 3
    assert f"warning: skipped {empty}: a folder without image files" in proc.stderr


def test_a_bad_model_is_an_error_before_any_image_is_read(tmp_path, cli):
    (tmp_path / "model.json").write_text("{}")
    proc = cli("predict", tmp_path, tmp_path / "absent.jpg")
    assert proc.returncode == 2
    assert_one_line_error(proc, "is missing")


def test_a_class_name_with_control_characters_stays_on_its_line():
    """predict's output is one line an image, tab-separated: a class name (a folder's name)
    holding a newline, a tab or a terminal escape sequence is written escaped."""
    from countnet_classify.predict import Prediction

    line = Prediction("a.png", "two\nthree\t\x1b]0;x\x07", 0.5, {}).text()
    assert line == "a.png\ttwo\\nthree\\t\\x1b]0;x\\x07\t0.5000"
