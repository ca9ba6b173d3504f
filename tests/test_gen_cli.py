"""`countnet gen` end to end: layout, manifest, determinism, safety, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from countnet.errors import CountnetError
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate, read_dataset_spec, read_manifest
from tests.conftest import COUNTNET, assert_one_line_error, run_countnet, staged_pngs, wait_until

SMALL = ["--range", "2-4", "--per-class", "10", "--size", "32", "--radius", "2-3", "--quiet"]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_layout_manifest_and_metadata(tmp_path):
    out = tmp_path / "ds"
    proc = run_countnet(
        "gen", *SMALL, "--no-overlap", "--valid-pct", "0.3", "--out", out, "--seed", "5"
    )
    assert proc.returncode == 0, proc.stderr
    for split, n in (("train", 7), ("valid", 3)):
        assert sorted(p.name for p in (out / split).iterdir()) == ["2", "3", "4"]
        for label in ("2", "3", "4"):
            assert len(list((out / split / label).glob("*.png"))) == n
    rows = read_manifest(out)
    assert len(rows) == 30
    spec = read_dataset_spec(out)
    assert spec.seed == 5 and spec.no_overlap and spec.classes == [2, 3, 4]
    meta = json.loads((out / "dataset.json").read_text())
    assert "numpy" in meta["versions"] and meta["n_valid"] == 9
    from countnet_gen import PIXELS_VERSION

    assert meta["pixels_version"] == PIXELS_VERSION >= 2  # 2: the 2 px --no-overlap gap
    fg = np.array([0x1F, 0x77, 0xB4])
    for row in rows:
        split, label, _ = row["path"].split("/")
        assert split == row["split"]
        assert int(label) == row["count"] == len(row["circles"])  # manifest count == folder label
        img = np.asarray(Image.open(out / row["path"]).convert("RGB"))
        assert img.shape == (32, 32, 3)
        for x, y, _r in row["circles"]:
            assert np.array_equal(img[int(y), int(x)], fg)  # every circle is drawn where listed


def test_default_out_is_derived_from_parameters(tmp_path):
    proc = run_countnet("gen", *SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    made = [p for p in (tmp_path / "datasets").iterdir() if not p.name.endswith(".lock")]
    assert [p.name for p in made] == [
        DatasetSpec(counts=(2, 4), per_class=10, size=32, radius=(2, 3)).default_name()
    ]


def test_byte_identical_whatever_the_workers(tmp_path):
    spec = DatasetSpec(
        counts=(3, 6), per_class=12, size=40, radius=(2, 4), no_overlap=True, seed=11
    )
    a = generate(spec, tmp_path / "w1", workers=1)
    b = generate(spec, tmp_path / "w2", workers=2)
    fa, fb = files(a), files(b)
    assert len(fa) == 48 and fa == fb
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    c = generate(DatasetSpec(**{**spec.to_dict(), "seed": 12}), tmp_path / "s12", workers=1)
    assert files(c) != fa  # and the seed does matter


def test_existing_dataset_needs_force(tmp_path):
    out = tmp_path / "ds"
    assert run_countnet("gen", *SMALL, "--out", out).returncode == 0
    before = files(out)
    proc = run_countnet("gen", *SMALL, "--seed", "1", "--out", out)
    assert_one_line_error(proc, "already exists", "--force")
    assert files(out) == before
    proc = run_countnet("gen", *SMALL, "--seed", "1", "--out", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert files(out) != before and read_dataset_spec(out).seed == 1
    # no leftovers but the lock file (kept: deleting a lock file races with its next taker)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".ds.lock"]


def test_force_never_deletes_a_folder_that_is_not_a_dataset(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    proc = run_countnet("gen", *SMALL, "--out", out, "--force")
    assert_one_line_error(proc, "--force replaces only a countnet dataset", "nothing was changed")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"
    # A folder holding a file named dataset.json that countnet did not write is no dataset.
    (out / "dataset.json").write_text("[1, 2, 3]")
    assert run_countnet("gen", *SMALL, "--out", out, "--force").returncode != 0
    assert (out / "thesis.tex").is_file()
    # An empty folder may be filled.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_countnet("gen", *SMALL, "--out", empty, "--force").returncode == 0
    assert len(read_manifest(empty)) == 30


def test_a_dataset_being_written_is_not_touched_by_a_second_writer(tmp_path):
    from filelock import FileLock

    out = tmp_path / "ds"
    # Another writer (another shell, the workflow, another node) holds the dataset's lock and
    # has its staging folder beside it.
    import socket

    host = socket.gethostname().split(".")[0].replace("-", "_")
    other = tmp_path / f".ds.partial-{host}-4194000-abcd"
    (other / "train").mkdir(parents=True)
    with FileLock(tmp_path / ".ds.lock"):
        proc = run_countnet("gen", *SMALL, "--out", out, "--force")
        assert_one_line_error(proc, "being written by another process")
        assert other.is_dir() and not out.exists()
    # Once it is gone (its lock released, here or by the kernel after kill -9), a new
    # writer sweeps this host's leftovers and writes the set; a fresh staging folder of
    # another host (whose locks may not reach here) is left alone.
    elsewhere = tmp_path / ".ds.partial-othernode-77-efgh"
    elsewhere.mkdir()
    assert run_countnet("gen", *SMALL, "--out", out).returncode == 0
    assert len(read_manifest(out)) == 30
    assert not other.exists() and elsewhere.is_dir()


def test_a_lock_that_cannot_be_taken_is_one_line(tmp_path):
    (tmp_path / ".ds.lock").mkdir()  # not a lockable file
    proc = run_countnet("gen", *SMALL, "--out", tmp_path / "ds")
    assert_one_line_error(proc, "cannot lock", "file locks")
    assert not (tmp_path / "ds").exists()


def test_kill_9_leaves_nothing_and_rerun_succeeds(tmp_path):
    out = tmp_path / "big"
    args = [
        "gen",
        "--range",
        "45-50",
        "--per-class",
        "3000",
        "--size",
        "64",
        "--radius",
        "2",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen([COUNTNET, *args], stderr=subprocess.PIPE)
    wait_until(staged_pngs(tmp_path, "big"), proc, 60, "generation")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # Rerun a small one under the same name: it succeeds and sweeps the dead run's folder.
    rerun = run_countnet("gen", *SMALL, "--out", out)
    assert rerun.returncode == 0, rerun.stderr
    assert out.is_dir() and len(read_manifest(out)) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == [".big.lock", "big"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--range", "50-45"], "reversed"),
        (["--range", "abc"], "--range"),
        (["--range", "5"], "--range"),
        (["--range=-3-5"], "--range"),
        (["--range", "1-5", "--per-class", "0"], "--per-class"),
        (["--range", "1-5", "--per-class", "-3"], "--per-class"),
        (["--range", "1-5", "--size", "0"], "--size"),
        (["--range", "1-5", "--radius", "0"], "--radius"),
        (["--range", "1-5", "--radius", "-2"], "--radius"),
        (["--range", "1-5", "--radius", "3-1"], "reversed"),
        (["--range", "1-5", "--size", "32", "--radius", "20"], "too large"),
        (
            ["--range", "400-450", "--size", "64", "--radius", "4", "--no-overlap"],
            "cannot be placed",
        ),
        (["--range", "1-5", "--workers", "0"], "--workers"),
        (["--range", "1-5", "--per-class", "abc"], "per-class"),
        (["--range", "1-5", "--valid-pct", "1"], "--valid-pct"),
        (["--range", "1-5", "--holdout", "7"], "--holdout 7 is outside --range 1-5"),
        (["--range", "1-3", "--holdout", "1,3"], "leaves fewer than two counts"),
        (["--range", "1-5", "--holdout", "two"], "--holdout must be counts"),
        (["--range", "1-5", "--holdout", "3", "--holdout", "9"], "--holdout 9 is outside"),
        (["--range", "1-5", "--holdout", "\u00b2"], "--holdout must be counts"),
        (["--range", "1-5", "--match-area"], "--match-area needs distractors"),
    ],
)
def test_bad_input_one_line_error_nothing_written(tmp_path, args, fragment):
    proc = run_countnet("gen", *args, "--out", tmp_path / "ds", cwd=tmp_path)
    assert_one_line_error(proc, fragment)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_countnet("gen", *SMALL, "--out", blocker / "ds")
    assert_one_line_error(proc, "cannot")
    assert blocker.read_text() == "not a folder"


def test_layouts_are_judged_by_what_fits(tmp_path):
    # Fits exactly: one circle as wide as the frame.
    one = run_countnet(
        "gen", "--range", "1-1", "--per-class", "4", "--size", "32", "--radius", "16",
        "--no-overlap", "--out", tmp_path / "one", "--quiet",
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    # Radii up to 11 in 64 px: a large draw may not fit, so it is redrawn; the whole set
    # is written instead of dying midway.
    wide = run_countnet(
        "gen", "--range", "8-10", "--per-class", "40", "--size", "64", "--radius", "2-11",
        "--no-overlap", "--out", tmp_path / "wide", "--quiet",
    )  # fmt: skip
    assert wide.returncode == 0, wide.stderr
    rows = read_manifest(tmp_path / "wide")
    assert len(rows) == 120 and all(len(r["circles"]) == r["count"] for r in rows)
    # Fits by area but almost never by random placement (only with the two circles in
    # opposite corners): refused before anything is written, saying how often it fit.
    rare = run_countnet(
        "gen", "--range", "2-2", "--size", "48", "--radius", "13", "--no-overlap",
        "--out", tmp_path / "rare",
    )  # fmt: skip
    assert_one_line_error(rare, "cannot be placed reliably", "trial layouts fit")
    # A Snakemake job's process, whose plan made this check, leaves the trials out.
    opts = {"range": "2-2", "size": 48, "radius": 13, "no_overlap": True}
    assert DatasetSpec.from_dict(opts, check_layouts=False).radius == (13.0, 13.0)
    with pytest.raises(CountnetError, match="trial layouts fit"):
        DatasetSpec.from_dict(opts)
    # Beyond what random placement can reach: refused at once, without trials.
    dense = run_countnet(
        "gen", "--range", "38-40", "--size", "48", "--radius", "3", "--no-overlap",
        "--out", tmp_path / "dense",
    )  # fmt: skip
    assert_one_line_error(dense, "cannot be placed", "random placement jams")
    # Refused before anything is written: not even a lock file.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".one.lock", ".wide.lock", "one", "wide"]


def test_help_shows_examples_and_inclusive_range():
    proc = run_countnet("gen", "--help")
    assert proc.returncode == 0
    assert "Examples" in proc.stdout and "inclusive" in proc.stdout


def _gen_examples() -> list[list[str]]:
    """Every `countnet gen` line of README.md and of `countnet gen --help`."""
    import shlex

    from countnet_gen.cli import EXAMPLES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [ln for text in (readme, EXAMPLES) for ln in text.splitlines()]
    found = []
    for ln in lines:
        ln = ln.strip().split("[dim]")[0]
        if ln.startswith("countnet gen "):
            args = shlex.split(ln, comments=True)[2:]
            if args not in found:
                found.append(args)
    return found


def test_every_documented_gen_example_runs(tmp_path):
    examples = _gen_examples()
    assert len(examples) >= 3
    for i, args in enumerate(examples):
        # The documented options as written; only the amount and the place are ours.
        proc = run_countnet("gen", *args, "--per-class", "5", "--out", tmp_path / str(i), "--quiet")
        assert proc.returncode == 0, f"countnet gen {' '.join(args)}: {proc.stderr}"
        assert (tmp_path / str(i) / "manifest.csv").is_file()


def test_workflow_log_is_written_as_the_job_runs(tmp_path):
    """The workflow's gen job (`python -m countnet_gen.job`, the request on stdin, its output
    the log): what it makes, progress, the summary; a job that fails leaves its reason in
    one line, not a traceback."""
    spec = DatasetSpec(counts=(2, 3), per_class=10, size=32, radius=2)

    def job(out):
        request = json.dumps({"spec": spec.to_dict(), "out": str(out), "workers": 1})
        return subprocess.run([sys.executable, "-m", "countnet_gen.job"], input=request,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    done = job(tmp_path / "ok")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and done.stderr == ""
    assert lines[0].startswith("generating 20 images")
    assert "20/20 images (100%)" in lines and lines[-1].startswith("generated 20 images")
    assert len(list((tmp_path / "ok").rglob("*.png"))) == 20
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    failed = job(blocker / "ds")
    lines = failed.stdout.splitlines()
    assert failed.returncode == 1 and failed.stderr == ""
    assert lines[0].startswith("generating") and lines[-1].startswith("error: cannot create")


def test_holdout_counts_go_only_to_test_with_the_images_they_would_have(tmp_path):
    """--holdout 3: count 3 only in test/ (all its images), never in train/ or valid/, so a
    run on the set never sees it; its images are those the set has without --holdout, and
    the other counts' files are byte for byte the same."""
    from countnet.errors import CountnetError
    from countnet_classify.screen import screen

    plain, held = tmp_path / "plain", tmp_path / "held"
    assert run_countnet("gen", *SMALL, "--out", plain).returncode == 0
    proc = run_countnet("gen", *SMALL, "--holdout", "3", "--out", held)
    assert proc.returncode == 0, proc.stderr
    assert "counts 3 in test/ only" in proc.stderr
    got, want = files(held), files(plain)
    assert sorted(p for p in got if p.startswith("test/")) == sorted(
        p.replace("train/", "test/").replace("valid/", "test/") for p in want if "/3/" in p
    )
    assert not (held / "train" / "3").exists() and not (held / "valid" / "3").exists()
    for path, data in want.items():
        moved = (
            path.replace("train/", "test/").replace("valid/", "test/") if "/3/" in path else path
        )
        assert got[moved] == data, path
    meta = json.loads((held / "dataset.json").read_text())
    assert meta["test_classes"] == [3] and meta["n_test"] == 10
    assert "test_classes" not in json.loads((plain / "dataset.json").read_text())
    assert meta["n_train"] == 16 and meta["n_valid"] == 4 and meta["spec"]["holdout"] == [3]
    assert "holdout" not in json.loads((plain / "dataset.json").read_text())["spec"]
    assert {r["split"] for r in read_manifest(held) if r["count"] == 3} == {"test"}
    assert read_dataset_spec(held).holdout == (3,)
    assert screen(held, valid_pct=0.2, seed=0).classes == ["2", "4"]  # what training sees
    # No validation share: empty valid/<count> folders keep the train/valid layout, so a run
    # is refused for lacking validation images (as without --holdout), never trained on
    # "train" vs "test" as classes.
    novalid = tmp_path / "novalid"
    assert run_countnet("gen", *SMALL, "--holdout", "3", "--valid-pct", "0", "--out", novalid
                        ).returncode == 0  # fmt: skip
    assert sorted(p.name for p in (novalid / "valid").iterdir()) == ["2", "4"]
    with pytest.raises(CountnetError, match="without validation images"):
        screen(novalid, valid_pct=0.2, seed=0)
    assert DatasetSpec.from_dict({"range": "3-3", "holdout": []}).holdout == ()
