"""The README's generator before/after bench runs as documented (tiny sizes; no timing is
asserted: speed lives in BENCHMARKS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, timeout: int) -> str:
    """Run bench/<script> as the README documents it; its output (it must succeed)."""
    r = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


# The last revision that made images one at a time (no sample_layouts, no RENDER_BATCH).
ONE_AT_A_TIME = "318857d"


@pytest.mark.parametrize("rev", ["HEAD", ONE_AT_A_TIME])
def test_gen_before_after_compares_a_revision_with_the_working_tree(rev):
    has = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True
    )
    if has.returncode:
        pytest.skip(f"{rev} is not in this clone's history")
    out = bench(
        "gen_before_after.py", "--rev", rev, "--images", "40", "--repeats", "2", timeout=300
    )
    lines = out.splitlines()
    assert lines[0].startswith("# gen_before_after") and f"{rev} vs working tree" in lines[0]
    rows = [line for line in lines[1:] if "after/before" in line]
    assert [row.split()[0] for row in rows] == ["fixed", "r4-12"]
    for row in rows:
        ratio = float(row.split("after/before ")[1].split()[0])
        assert ratio > 0


def test_gen_throughput_prints_every_method_the_file_system_and_scaling(tmp_path):
    """bench/gen_throughput.py as documented, tiny: every method's row, the file system's
    line apart from them (every round's figure), the scaling table with 1 worker as the
    base; nothing left behind."""
    out = bench(
        "gen_throughput.py",
        "--images",
        "12",
        "--repeats",
        "2",
        "--workers",
        "2",
        "--scaling-images",
        "24",
        "--dir",
        str(tmp_path),
        timeout=300,
    )
    rows = re.findall(r"^(.+?) +(\d+) +([\d.]+)x  \d+ \d+$", out, re.M)
    assert [name for name, _, _ in rows] == [
        "matplotlib scatter + savefig (baseline)",
        "Pillow ImageDraw.ellipse, palette PNG",
        "countnet fixed r6, overlap allowed",
        "countnet fixed r6, --no-overlap",
        "countnet r4-12, --no-overlap",
    ]
    assert all(int(rate) > 0 for _, rate, _ in rows)
    fs = re.search(r"^# the file system alone: ([\d.]+) ms .+ \(median; rounds ([\d.]+) ([\d.]+)\)",
                   out, re.M)  # fmt: skip
    assert fs and all(float(v) > 0 for v in fs.groups())
    assert "fixed r6, --no-overlap, vs 1 worker" in out
    workers = re.findall(r"^ +(\d) +\d+ +([\d.]+)x", out, re.M)
    assert [w for w, _ in workers] == ["1", "2"] and workers[0][1] == "1.00"
    assert list(tmp_path.iterdir()) == []


def test_gen_batch_sweeps_both_settings_and_restores_them(tmp_path):
    from countnet_gen import render, writer

    out = bench(
        "gen_batch.py",
        "--images",
        "8",
        "--repeats",
        "2",
        "--batches",
        "1",
        "4",
        "--dir",
        str(tmp_path),
        timeout=300,
    )
    assert out.count("RENDER_BATCH, ") == 4 and out.count("SUM_PIXELS, ") == 1
    rows = re.findall(r"^ +(.+?) +(\d+) images/s +([\d.]+)x", out, re.M)
    assert [v for v, _, _ in rows] == ["1 image", "4 images"] * 4 + [
        "1 image",
        f"{render.SUM_PIXELS} px",
        "unlimited",
    ]
    assert all(float(x) > 0 for _, _, x in rows) and rows[0][2] == "1.00"
    assert f"RENDER_BATCH {writer.RENDER_BATCH}, SUM_PIXELS {render.SUM_PIXELS}" in out
    assert list(tmp_path.iterdir()) == []


def test_gen_malloc_compares_both_settings_in_fresh_processes():
    out = bench("gen_malloc.py", "--images", "24", "--repeats", "1", timeout=300)
    rows = re.findall(r"^(fixed r6|r4-12) +glibc defaults +\d+ +retain_freed_memory +\d+ "
                      r"images/s/core +ratio (\d+\.\d\d)", out, re.M)  # fmt: skip
    assert [name for name, _ in rows] == ["fixed r6", "r4-12"]


def test_solver_recipe_runs_the_seeds_recipe_beside_the_default(tmp_path):
    """bench/solver_recipe.py as documented, 1 epoch and 1 seed: the digits are written as
    folder-labeled PNGs, and the three configurations train as they say (SGD with the inv
    policy, the same with Adam, countnet's default path)."""
    import yaml

    out = bench(
        "solver_recipe.py", "--epochs", "1", "--seeds", "1", "--out", str(tmp_path), timeout=600
    )
    digits = tmp_path / "digits"
    assert sorted(p.name for p in (digits / "train").iterdir()) == [str(d) for d in range(10)]
    n_train = sum(1 for _ in (digits / "train").rglob("*.png"))
    n_valid = sum(1 for _ in (digits / "valid").rglob("*.png"))
    assert n_train + n_valid == 1797 and abs(n_valid / 1797 - 0.2) < 0.01
    rows = {ln.split()[0] + (ln.split()[1] if ln.startswith("recipe") else ""): ln
            for ln in out.splitlines() if ln.startswith(("recipe", "default"))}  # fmt: skip
    assert set(rows) == {"recipe,sgd", "recipe,adam", "default"}
    sgd = yaml.safe_load((tmp_path / "recipe" / "opt-sgd-seed0" / "config.yaml").read_text())
    assert sgd["resolved"]["optimizer"] == {"name": "FusedSGD", "mom": 0.9, "wd": 5e-4}
    assert sgd["resolved"]["schedule"] == "inv for 1 epoch(s)" and sgd["run"]["arch"] == "lenet"
    default = yaml.safe_load((tmp_path / "default" / "opt-adam-seed0" / "config.yaml").read_text())
    assert default["resolved"]["optimizer"]["name"] == "FusedAdam"
    assert default["resolved"]["schedule"] == "one-cycle for 1 epoch(s)"
    # --lr auto on a plain folder from scratch: the fixed rate, no finder
    assert default["lr"]["source"].startswith("--lr auto (from scratch on a folder")
    assert default["lr"]["used"] == 3e-3


def test_regression_holdout_bench_runs_each_loss_beside_its_baselines(tmp_path):
    """bench/regression_holdout.py as documented, 1 epoch on 6 images a count, one loss: the
    set holds 47 and 49 out, the loss trains as a regression run, and the mean predictor and
    the classifier are measured on the same images (the classifier can never answer 47 or
    49)."""
    import yaml

    out = bench(
        "regression_holdout.py",
        "--epochs",
        "1",
        "--per-class",
        "6",
        "--losses",
        "l1",
        "--out",
        str(tmp_path),
        timeout=600,
    )
    data = tmp_path / "count-45-50-holdout"
    assert sorted(p.name for p in (data / "test").iterdir()) == ["47", "49"]
    rows = {ln[:16].strip(): ln.split()[-6:] for ln in out.splitlines()
            if ln.startswith(("regression", "mean", "classifier"))}  # fmt: skip
    assert set(rows) == {"regression l1", "mean (baseline)", "classifier"}
    assert float(rows["classifier"][3]) == 0.0  # accuracy on unseen counts: never right
    assert float(rows["classifier"][2]) >= 1.0  # and off by at least one
    run = yaml.safe_load((tmp_path / "runs" / "regression-l1" / "config.yaml").read_text())
    assert run["resolved"]["loss"] == "l1" and run["summary"]["regression"]["unseen"]["n"] == 12


def test_data_parallel_bench_times_one_process_beside_two(tmp_path):
    """bench/data_parallel.py as documented, tiny: the same run in one process and in two
    CPU processes, each a complete run folder recording its processes, and the ratio line."""
    import yaml

    out = bench(
        "data_parallel.py",
        "--per-class",
        "4",
        "--size",
        "48",
        "--radius",
        "1.5",
        "--arch",
        "resnet18",
        "--epochs",
        "1",
        "--bs",
        "8",
        "--out",
        str(tmp_path),
        timeout=600,
    )
    lines = out.splitlines()
    assert [ln.split()[2] for ln in lines if ln.startswith("repeat 1")] == ["1", "2"]
    assert float(lines[-1].split("ratios: 2/1=")[1]) > 0
    for name, n in (("p1", 1), ("p2", 2)):
        rec = yaml.safe_load((tmp_path / "runs" / name / "config.yaml").read_text())
        assert rec["resolved"]["processes"] == n and rec["resolved"]["batch_size"] == 8


def test_train_throughput_bench_ends_with_its_ratios_line():
    """bench/train_throughput.py as documented, tiny: every path timed, the ratios line last;
    on a CPU with native bf16 also (b) without TinyConvGrads."""
    from countnet_classify.devices import cpu_has_native_bf16

    out = bench(
        "train_throughput.py",
        "--size",
        "48",
        "--bs",
        "4",
        "--warm",
        "1",
        "--timed",
        "1",
        "--repeats",
        "1",
        "--arch",
        "resnet18",
        timeout=600,
    )
    lines = out.splitlines()
    rows = [ln.split("  ")[0] for ln in lines if ln.endswith("images/s")]
    b = f"(b) countnet default ({'bf16' if cpu_has_native_bf16() else 'fp32'})"
    assert rows[:3] == ["(a) files, fp32", b, "(c) in-memory random tensors"]
    assert ("(b) without TinyConvGrads" in rows) == cpu_has_native_bf16()
    ratios = re.fullmatch(r"ratios: b/a=(\d+\.\d\d) b/c=(\d+\.\d\d)", lines[-1])
    assert ratios and all(float(v) > 0 for v in ratios.groups())


def test_conv_weight_grad_bench_prints_each_layer_and_the_step():
    out = bench("conv_weight_grad.py", "--bs", "2", "--repeats", "1", timeout=600)
    out = out
    assert out.count("C512  S1 ") == 2  # bf16 and fp32 tables, every shape
    cells = re.findall(r"S\d+ +([\d.]+)/ *([\d.]+) \(([\d.]+)\)", out)
    assert len(cells) == 2 * 4 * 5 and all(float(a) > 0 and float(b) > 0 for a, b, _ in cells)
    steps = re.findall(r"ResNet-34 training step, 64 px, (bf16 autocast|fp32): oneDNN", out)
    assert steps == ["bf16 autocast"]


def test_train_malloc_bench_compares_both_settings_in_fresh_processes():
    out = bench(
        "train_malloc.py",
        "--rounds",
        "1",
        "--arch",
        "resnet18",
        "--size",
        "32",
        "--bs",
        "4",
        timeout=600,
    )
    rows = re.findall(r"^(glibc defaults|retained) +([\d.]+) images/s +(\d+) minor", out, re.M)
    assert [name for name, _, _ in rows] == ["glibc defaults", "retained"]
    assert re.search(r"^ratio: retained/defaults=\d+\.\d\d$", out, re.M)


def test_fsync_cost_times_each_stage_beside_its_baseline():
    """bench/fsync_cost.py as documented, tiny (a few images, one epoch at 32 px, no
    PreciseBN): both stages' figures with syncs on beside off, the syncs of the run listed by
    file (a checkpoint's among them: the syncs were timed, not bypassed), the extrapolation."""
    out = bench("fsync_cost.py", "--rounds", "1", "--gen-per-class", "4", "--train-per-class",
                "4", "--epochs", "1", "--set", "precise_bn=0", "--set", "size=32",
                timeout=400)  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("# fsync_cost")
    assert lines[1].startswith("gen count-1-5 (20 images): syncs on") and "on/off" in lines[1]
    assert lines[2].startswith("train (1 epochs): syncs on") and "on/off" in lines[2]
    calls = {tuple(ln.split()[:2]) for ln in lines[3:-1]}
    assert ("fsync_file", "checkpoint.pt") in calls and ("fsync_file", "config.yaml") in calls
    assert lines[-1].startswith("default workflow (") and "blocked in syncs ~" in lines[-1]


def test_first_contact_compares_old_new_and_fastai_on_the_same_folder():
    """bench/first_contact.py as documented, tiny: the hand-made JPEG set (one truncated,
    one grayscale) through the old defaults, the new ones and plain fastai; the new default
    on a plain folder is upright, the old dihedral; fastai is told about the file it cannot read."""
    out = bench(
        "first_contact.py", "--sets", "own", "--limit", "4", "--epochs", "1", "--seeds", "2",
        "--countnet-args", "--arch lenet --lr-find-iters 50", timeout=600,
    )  # fmt: skip
    rows = re.findall(
        r"^own +(old|new|fastai) +(\d) +([\d.]+) +([\d.]+) +([\d.]+)x  (.*)$", out, re.M
    )
    assert [r[:2] for r in rows] == [(r, s) for s in "01" for r in ("fastai", "old", "new")], out
    assert all(0 <= float(row[2]) <= 1 and float(row[3]) > 0 for row in rows)
    assert rows[0][4] == "1.00" and rows[0][5] == "1 unreadable file(s) left out"
    # the old defaults: dihedral and the finder; the new: upright at a fixed 3e-3
    assert rows[1][5].startswith("dihedral; lr ") and rows[1][5] != "dihedral; lr 3.00e-03"
    assert rows[2][5] == "upright; lr 3.00e-03"
    means = re.findall(r"^own +(old|new|fastai) +mean +([\d.]+) +([\d.]+) +([\d.]+)x  (.*)$",
                       out, re.M)  # fmt: skip
    assert [m[0] for m in means] == ["fastai", "old", "new"] and means[0][3] == "1.00", out
    for label, mean, _, _, seeds in means:
        errs = [float(r[2]) for r in rows if r[0] == label]
        assert float(mean) == pytest.approx(sum(errs) / 2, abs=1e-4) and seeds == "2 of 2 seed(s)"


def test_main_job_recipe_bench_trains_each_arch_on_the_configs_experiments(tmp_path):
    """bench/main_job_recipe.py on a config shaped like the default (a classification and a
    regression experiment on generated sets, a `select` transforms entry, a folder
    experiment it leaves out): every experiment trained with each arch, only --arch
    changed, its final figure and time beside the first arch's."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "datasets:\n"
        "  count-1-5: {range: 1-2, per_class: 8, size: 32, radius: 3}\n"
        "  held: {range: 1-3, per_class: 6, size: 32, radius: 3, holdout: [2]}\n"
        "train: {arch: resnet18, pretrained: auto, size: 32, bs: 8, epochs: 1, lr: 0.01,\n"
        "        lr_find_iters: 0, precise_bn: 0, transforms: dihedral}\n"
        "select_transforms: {default: none}\n"
        "experiments:\n"
        "  count-1-5: {data: count-1-5, transforms: select, probes: {a: {radius: 2}}}\n"
        "  count-45-50-regression: {data: held, task: regression, epochs: 2}\n"
        "  mine: {data: data/mine, optional: true}\n"
    )
    out = bench("main_job_recipe.py", "--config", str(cfg), "--archs",
                "lenet,xresnet18_quarter", "--out", str(tmp_path), timeout=600)  # fmt: skip
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("count-")]
    assert [(r[0], r[1]) for r in rows] == [
        ("count-1-5", "lenet"), ("count-1-5", "xresnet18_quarter"),
        ("count-45-50-regression", "lenet"), ("count-45-50-regression", "xresnet18_quarter"),
    ]  # fmt: skip
    assert rows[0][3] == "0.01" and rows[2][3] == "0.25"  # the targets the job is held to
    assert rows[0][-1] == "1.00x" and rows[2][-1] == "1.00x"  # the baseline: the first arch
    assert out.splitlines()[-1].startswith("total train s: lenet ")
    for arch in ("lenet", "xresnet18_quarter"):
        run = yaml.safe_load((tmp_path / "runs" / f"count-1-5-{arch}" / "config.yaml").read_text())
        assert run["run"]["arch"] == arch and run["run"]["transforms"] == "none"  # select's default
        assert run["run"]["epochs"] == 1 and run["resolved"]["pretrained"] is False
        reg = yaml.safe_load(
            (tmp_path / "runs" / f"count-45-50-regression-{arch}" / "config.yaml").read_text()
        )
        assert reg["run"]["epochs"] == 2 and reg["summary"]["regression"]["unseen"]["n"] == 6
        mae = reg["summary"]["regression"]["unseen"]["mae"]
        assert f"{mae:7.4f}".strip() in out
