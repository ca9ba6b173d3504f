"""`countnet sweep` as a user runs it: the files a sweep writes and their arithmetic, the
points it plans, resume after kill -9 in a fresh process, the report's sweep section, and
bad input refused before any run starts."""

from __future__ import annotations

import csv
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from countnet_classify.run_folder import partial_dir
from tests.conftest import COUNTNET, assert_one_line_error, run_countnet, written
from tests.test_resume import checkpoint_epoch, kill_9_when

# Every run of these tests: tiny set, 32 px, fixed LR, no finder, quiet.
TRAIN = ["--no-pretrained", "--size", "32", "--lr", "0.01", "--lr-find-iters", "0", "--quiet"]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_files_and_summary_arithmetic(cli, tiny, tmp_path):
    """2 values x 2 seeds: four ordinary run folders with the point's option and the seed;
    summary.csv's means and stds are those of sweep.csv's rows; the figures, sweep.md and
    the report's sweep section exist; a rerun trains nothing."""
    out = tmp_path / "bs-sweep"
    args = ["sweep", tiny, "--param", "bs=8,16", "--seeds", "2", "--epochs", "2", *TRAIN]
    r = cli(*args, "--out", out)
    assert r.returncode == 0, r.stderr
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["bs-16-seed0", "bs-16-seed1", "bs-8-seed0", "bs-8-seed1"]
    for name in runs:
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert cfg["status"] == "complete"
        assert cfg["run"]["bs"] == int(name.split("-")[1])
        assert cfg["seed"] == int(name[-1])
        assert cfg["run"]["epochs"] == 2 and cfg["run"]["lr"] == 0.01  # the shared options
    rows = _csv(out / "sweep.csv")
    assert list(rows[0]) == [
        "bs", "seed", "final_error_rate", "best_error_rate", "best_epoch", "final_valid_loss",
        "train_seconds", "run",
    ]  # fmt: skip
    assert [(r["bs"], r["seed"], r["run"]) for r in rows] == [
        ("8", "0", "bs-8-seed0"), ("8", "1", "bs-8-seed1"),
        ("16", "0", "bs-16-seed0"), ("16", "1", "bs-16-seed1"),
    ]  # fmt: skip
    for r in rows:  # each row is its run's own result
        cfg = yaml.safe_load((out / r["run"] / "config.yaml").read_text())
        assert float(r["final_error_rate"]) == pytest.approx(cfg["summary"]["final_error_rate"])
        assert int(r["best_epoch"]) == cfg["summary"]["best_epoch"]
    summary = _csv(out / "summary.csv")
    assert [s["bs"] for s in summary] == ["8", "16"]
    for s in summary:
        mine = [r for r in rows if r["bs"] == s["bs"]]
        assert int(s["n"]) == len(mine) == 2
        for col in ("final_error_rate", "best_error_rate"):
            vals = [float(r[col]) for r in mine]
            assert float(s[f"{col}_mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-6)
            assert float(s[f"{col}_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-6)
        secs = [float(r["train_seconds"]) for r in mine]
        assert float(s["train_seconds_mean"]) == pytest.approx(statistics.fmean(secs), abs=1e-6)
    for f in ("sweep.json", "sweep.md", "sweep_error.png", "sweep_curves.png"):
        assert (out / f).stat().st_size > 0, f
    md = (out / "sweep.md").read_text()
    assert "| bs | runs | final error_rate |" in md and " ± " in md

    stamps = {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in runs}
    r = cli(*args, "--out", out)  # the same command again: everything is finished
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("finished before, skipped") == 4 and "training ->" not in r.stderr
    assert stamps == {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in runs}

    r = cli("report", out, out / "bs-8-seed0", "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## Sweep bs-sweep" in report and "| bs | runs |" in report
    assert "## bs-8-seed0" in report  # a sweep's run is an ordinary run to the report
    assert report.count("data:image/png") == 0  # md links figures; html embeds them
    assert "sweep_error.png" in report
    assert "data:image/png" in (tmp_path / "rep" / "report.html").read_text()


def test_points_one_change_at_a_time_and_grid(tiny, tmp_path):
    """One change at a time from the baseline (the first values), as the seed documents'
    tables; --grid every combination; values normalised as train takes them."""
    from countnet_classify.experiments.sweep.spec import Sweep

    base = {"data": str(tiny), "pretrained": False}
    params = (("lr", ("1e-3", 0.01, "3e-2")), ("bs", (32, 64)))
    ofat = Sweep(base, params, str(tmp_path))
    assert [p.as_dict() for p in ofat.points()] == [
        {"lr": 0.001, "bs": 32}, {"lr": 0.01, "bs": 32}, {"lr": 0.03, "bs": 32},
        {"lr": 0.001, "bs": 64},
    ]  # fmt: skip
    grid = Sweep(base, params, str(tmp_path), grid=True)
    assert len(grid.points()) == 6 and len(grid.runs()) == 18  # 3 seeds by default
    assert {s.seed for s in grid.specs()} == {0, 1, 2}
    assert grid.runs()[0][2].name == "lr-0.001_bs-32-seed0"
    assert all(s.runs_dir == str(tmp_path) and not s.pretrained for s in grid.specs())
    from countnet.errors import CountnetError
    from countnet_classify.experiments.sweep.checks import check_runs

    no_finder = Sweep({**base, "lr_find_iters": 0}, (("bs", (8, 16)),), str(tmp_path))
    with pytest.raises(CountnetError, match="--lr auto needs the LR finder"):
        check_runs(no_finder.specs())  # as run_sweep does before any run


def test_summary_arithmetic_and_csv_values(tiny, tmp_path, monkeypatch):
    """summary.csv from known per-run results (seeds that differ): mean and sample std
    (n - 1) per point, and swept values written as given — 1e-07 and 3e-07 stay apart."""
    from countnet_classify.experiments.sweep import results as sw
    from countnet_classify.experiments.sweep.spec import Sweep

    sweep = Sweep({"data": str(tiny), "pretrained": False}, (("wd", (1e-7, 3e-7)),),
                     str(tmp_path), seeds=3)  # fmt: skip
    finals = {1e-7: [0.1, 0.2, 0.6], 3e-7: [0.3, 0.3, 0.0]}
    fake = [
        {"wd": wd, "seed": k, "final_error_rate": v, "best_error_rate": v / 2, "best_epoch": 1,
         "final_valid_loss": 1.0, "train_seconds": 10.0 + k, "run": f"r{k}"}
        for wd, vals in finals.items() for k, v in enumerate(vals)
    ]  # fmt: skip
    monkeypatch.setattr(sw, "result_rows", lambda s: fake)
    sw.write_tables(sweep)
    assert [r["wd"] for r in _csv(tmp_path / "sweep.csv")] == ["1e-07"] * 3 + ["3e-07"] * 3
    summary = _csv(tmp_path / "summary.csv")
    assert [r["wd"] for r in summary] == ["1e-07", "3e-07"]
    for r, vals in zip(summary, finals.values(), strict=True):
        assert r["n"] == "3"
        assert float(r["final_error_rate_mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-6)
        assert float(r["final_error_rate_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-6)
        half = [v / 2 for v in vals]
        assert float(r["best_error_rate_std"]) == pytest.approx(statistics.stdev(half), abs=1e-6)
        assert float(r["train_seconds_mean"]) == pytest.approx(11.0)
    assert float(summary[0]["final_error_rate_std"]) == pytest.approx(0.264575, abs=1e-6)


def test_regression_sweeps_summarise_mae_on_seen_and_unseen_counts(tiny, tmp_path, monkeypatch):
    """A sweep of regression runs (--param loss=...) adds their MAE on seen and unseen counts
    to sweep.csv, summary.csv (mean, sample std) and the table a person reads; a classifier
    sweep has no such columns."""
    from countnet_classify.experiments.sweep import results as sw
    from countnet_classify.experiments.sweep.spec import Sweep

    sweep = Sweep({"data": str(tiny), "pretrained": False, "task": "regression"},
                     (("loss", ("mse", "l1")),), str(tmp_path), seeds=2)  # fmt: skip
    maes = {"mse": [(0.1, 0.2), (0.3, 0.5)], "l1": [(0.2, 0.2), (0.2, 0.4)]}
    fake = [
        {"loss": loss, "seed": k, "final_error_rate": 0.1, "best_error_rate": 0.1,
         "best_epoch": 1, "final_valid_loss": 1.0, "train_seconds": 10.0, "run": f"r{k}",
         "mae_seen": seen, "mae_unseen": unseen}
        for loss, vals in maes.items() for k, (seen, unseen) in enumerate(vals)
    ]  # fmt: skip
    monkeypatch.setattr(sw, "result_rows", lambda s: fake)
    rows, summary = sw.write_tables(sweep)
    assert [r["mae_unseen"] for r in _csv(tmp_path / "sweep.csv")] == ["0.2", "0.5", "0.2", "0.4"]
    mse = _csv(tmp_path / "summary.csv")[0]
    assert float(mse["mae_seen_mean"]) == pytest.approx(0.2)
    assert float(mse["mae_unseen_std"]) == pytest.approx(statistics.stdev([0.2, 0.5]))
    head, body = sw.summary_table(sweep, summary)
    assert head[4:6] == ["MAE seen", "MAE unseen"] and body[1][5] == "0.300 ± 0.141"
    assert sw._maes({"seen": {"mae": 0.2}}) == {"mae_seen": 0.2}  # no test/ split: seen only
    assert sw._maes(None) == {}  # a classifier run
    # A sweep over the task itself: the classifier's cells stay empty, nothing breaks.
    tasks = (("task", ("classification", "regression")),)
    mixed = Sweep({"data": str(tiny), "pretrained": False}, tasks, str(tmp_path), seeds=1)
    fake = [{**fake[0], "task": "regression"}, {**fake[0], "task": "classification"}]
    for r in fake[1:]:
        del r["loss"], r["mae_seen"], r["mae_unseen"]
    sw.write_tables(mixed)
    classifier = _csv(tmp_path / "sweep.csv")[1]
    assert classifier["task"] == "classification" and classifier["mae_seen"] == ""


def test_error_plot_axes_as_the_values_need(tiny, tmp_path, monkeypatch):
    """lr spans decades: log axis; wd with a 0 (README's grid example): a linear axis whose
    points sit at their values; an arch: one tick per value."""
    import matplotlib.pyplot as plt

    from countnet_classify.experiments.sweep import figures as sw
    from countnet_classify.experiments.sweep.spec import Sweep

    figs = []
    monkeypatch.setattr(sw, "save_current", lambda path: figs.append(plt.gcf()))
    cases = {"lr": (1e-3, 1e-2, 1e-1), "wd": (0.0, 0.01), "arch": ("resnet18", "lenet")}
    for key, values in cases.items():
        sweep = Sweep({"data": str(tiny), "pretrained": False}, ((key, values),),
                         str(tmp_path), seeds=1)  # fmt: skip
        summary = [{key: v, "final_error_rate_mean": 0.1 * i, "final_error_rate_std": None}
                   for i, v in enumerate(sweep.params[0][1])]  # fmt: skip
        sw.plot_error(sweep, summary, tmp_path / "e.png")
    lr, wd, arch = (f.axes[0] for f in figs)
    assert lr.get_xscale() == "log"
    assert wd.get_xscale() == "linear" and list(wd.lines[0].get_xdata()) == [0.0, 0.01]
    assert wd.get_xlim()[1] < 0.1  # not a category axis running to 1
    assert [t.get_text() for t in arch.get_xticklabels()] == ["resnet18", "lenet"]
    plt.close("all")


def test_an_interrupted_sweep_resumes(tiny, tmp_path):
    """kill -9 while the second run trains; the same command again skips the finished
    run untouched, resumes the interrupted one from its checkpoint, and completes."""
    out = tmp_path / "sw"
    cmd = [COUNTNET, "sweep", tiny, "--param", "bs=8", "--seeds", "2", "--epochs", "6"]
    cmd += [*TRAIN, "--out", out]
    second = out / "bs-8-seed1"
    partial = partial_dir(second)
    done = kill_9_when(cmd, lambda: checkpoint_epoch(partial) >= 2, tmp_path, "seed 1, epoch 2")
    epoch = checkpoint_epoch(partial)
    assert done.returncode == -9 and 2 <= epoch < 6
    first = out / "bs-8-seed0" / "model.safetensors"
    assert first.is_file() and not second.exists()
    stamp = first.stat().st_mtime_ns
    r = run_countnet(*cmd[1:])
    assert r.returncode == 0, r.stderr
    assert "seed 0: finished before, skipped" in r.stderr
    assert "seed 1: resuming" in r.stderr and f"resuming after epoch {epoch}/6" in r.stderr
    assert first.stat().st_mtime_ns == stamp
    assert len(_csv(out / "sweep.csv")) == 2 and _csv(out / "summary.csv")[0]["n"] == "2"


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--param", "colour=red,blue"], ["--param colour", "not a `countnet train` option"]),
        (["--param", "lr=fast,1e-3"], ["--param lr=fast", "--lr must be a number"]),
        (["--param", "lr="], ["--param lr has no values"]),
        (["--param", "lr=1e-3,0.001"], ["--param lr lists 0.001 twice"]),
        (["--param", "bs=8", "--param", "bs=16"], ["--param bs is given twice"]),
        (["--param", "seed=1,2"], ["--param seed", "not an option a sweep can change"]),
        (["--param", "lr=1e-3", "--seed", "4"], ["a sweep sets --seed itself"]),
        (["--param", "lr=1e-3", "--seeds", "0"], ["--seeds must be an integer >= 1"]),
        (["--param", "lr"], ["write NAME=V1,V2"]),
        (["--param", "momentum=x"], ["--param momentum=x"]),
        (["--param", "pretrained=maybe"], ["'maybe' is not true/false"]),
        (["--param", "arch=resnet18,vgg99"], ["unknown --arch 'vgg99'"]),
        (["--param", "size=32", "--frobnicate"], ["No such option: --frobnicate"]),
        ([], ["give at least one --param"]),
        (["--param", "lr=0.003,0.03"], ["--lr is given both as a train option and as --param"]),
        # refused by the checks train makes before a run, here before the sweep's first run
        (["--param", "transforms=none,bogus"], ["unknown --transforms 'bogus'"]),
        (["--param", "arch=lenet,alexnet"], ["--size 32 is too small"]),
        (["--device", "cpu", "--param", "precision=fp32,fp16"], ["fp16 needs a CUDA GPU"]),
    ],
)
def test_bad_sweep_input_is_refused_before_any_run(cli, tiny, tmp_path, extra, fragments):
    r = cli("sweep", tiny, *extra, *TRAIN, "--out", tmp_path / "sw")
    assert_one_line_error(r, *fragments)
    assert written(tmp_path) == []


def test_missing_imagenet_weights_stop_a_sweep_before_its_first_run(cli, tiny, tmp_path):
    """Offline without cached weights (the tests' torch hub cache is empty): one line, no
    sweep folder, rather than a sweep that stops at its first pretrained run."""
    fast = ["--size", "32", "--lr", "0.01", "--lr-find-iters", "0", "--quiet"]
    r = cli("sweep", tiny, "--param", "bs=8,16", *fast, "--out", tmp_path / "sw")
    assert_one_line_error(r, "no ImageNet weights for resnet34")
    assert written(tmp_path) == []


def test_a_sweep_never_reuses_or_overwrites_what_is_not_its_own(cli, tiny, tmp_path, monkeypatch):
    """--out holding a user's files is refused; a finished run of the same name trained
    with other options is refused, not counted as this sweep's."""
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    r = cli("sweep", tiny, "--param", "bs=8", "--seeds", "1", *TRAIN, "--out", mine)
    assert_one_line_error(r, "is not a countnet sweep")
    assert written(mine) == ["todo.txt"]
    out = tmp_path / "sw"
    r = cli("sweep", tiny, "--param", "bs=8", "--seeds", "1", "--epochs", "1", *TRAIN, "--out", out)
    assert r.returncode == 0, r.stderr
    r = cli("sweep", tiny, "--param", "bs=8", "--seeds", "1", "--epochs", "2", *TRAIN, "--out", out)
    assert_one_line_error(r, "bs-8-seed0 was trained with other options (epochs)")
    assert len(_csv(out / "sweep.csv")) == 1  # untouched
    # The same sweep from another folder, its --out spelled relative: still its own runs.
    monkeypatch.chdir(out.parent)
    r = cli(
        "sweep", tiny, "--param", "bs=8", "--seeds", "1", "--epochs", "1", *TRAIN, "--out", "sw"
    )
    assert r.returncode == 0 and "finished before, skipped" in r.stderr, r.stderr
    # Changed files: the finished run is not counted as a run on them.
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    moved = tmp_path / "moved"
    args = ["sweep", data, "--param", "bs=8", "--seeds", "1", "--epochs", "1", *TRAIN]
    assert cli(*args, "--out", moved).returncode == 0
    next((data / "train" / "1").glob("*.png")).unlink()
    r = cli(*args, "--out", moved)
    assert_one_line_error(r, "bs-8-seed0 was trained on other files")


def test_documented_sweep_examples_run(cli, tiny, tmp_path, monkeypatch):
    """Every `countnet sweep` line of README.md and of `countnet sweep --help`, as written
    but on the tiny set, with one seed, one epoch, 32 px and LeNet appended (a later option
    wins; none of them sweeps the arch): their parsing and plans, not ResNet-34's speed."""
    import shlex

    monkeypatch.setenv("COLUMNS", "200")  # --help's examples unwrapped
    page = (Path(__file__).resolve().parents[1] / "docs" / "sweep.md").read_text()
    helptext = cli("sweep", "--help").stdout
    lines = [ln.strip().removeprefix("$ ") for ln in (*page.splitlines(), *helptext.splitlines())]
    examples = sorted({ln for ln in lines if ln.startswith("countnet sweep ")})
    assert len(examples) >= 3
    fast = ["--seeds", "1", "--epochs", "1", "--size", "32", "--lr-find-iters", "0", "--quiet"]
    fast += ["--arch", "lenet"]
    for i, line in enumerate(examples):
        assert "arch=" not in line
        args = [str(tiny) if a.startswith("datasets/") else a for a in shlex.split(line)[2:]]
        lr = [] if "--param lr=" in line else ["--lr", "0.01"]  # an option is set once
        r = cli("sweep", *args, *fast, *lr, "--out", tmp_path / f"ex{i}")
        assert r.returncode == 0, (line, r.stderr)
        assert (tmp_path / f"ex{i}" / "summary.csv").is_file(), line
