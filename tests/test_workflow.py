"""The Snakefile on tiny configs, through Snakemake's CLI, in scratch folders."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=os.environ)


TINY = """
datasets:
  tiny-a: {range: 1-2, per_class: 12, size: 32, radius: 3, valid_pct: 0.25}
  tiny-b: {range: 3-5, per_class: 8, size: 32, radius: 2-4, no_overlap: true, valid_pct: 0.25,
           holdout: [4]}
  tiny-a-shapes: {range: 1-2, per_class: 12, size: 32, radius: 3, valid_pct: 0.25, distractors: 1-2,
                  distractor_shape: [square, ring]}
train: {arch: resnet18, size: 32, bs: 8, epochs: 1, lr: 0.003, lr_find_iters: 0, workers: 0,
       head: linear}
select_transforms: {candidates: [none, dihedral, aug], epochs: 1, lr: 0.001}
probe_defaults: {per_class: 8, valid_pct: 0.5, holdout: [], seed: 1}
experiments:
  a: {data: tiny-a, lr: auto, lr_find_iters: 30,  # the LR finder in the workflow
      probes: {smaller: {radius: 2}, colours: {fg: "#d62728", bg: "#fff3c4"}}}
  b: {data: tiny-b, transforms: flips, head: fastai, task: regression, loss: l1, gpus: 2,
      device: cpu,  # data-parallel: two CPU processes
      probes: {wider: {range: 2-6}}}  # counts it never saw, on both sides
  a-shapes: {data: tiny-a-shapes, lr: auto, lr_find_iters: 30}  # a's budget: paired with a
  mine: {data: data/mine, optional: true}
sweeps:
  sw: {data: tiny-b, params: {lr: [0.01, 0.003]}, seeds: 1, lr_find_iters: 0, head: fastai}
"""


def test_tiny_workflow_end_to_end(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "experiment 'mine' skipped" in proc.stderr  # absent optional set: a note
    for name in ("tiny-a", "tiny-b", "tiny-a-shapes"):
        assert len(list((tmp_path / "datasets" / name).rglob("*.png"))) == 24
    for log in ("gen/tiny-a", "select_transforms/a", "train/a", "train/b", "report"):
        assert (tmp_path / "logs" / f"{log}.log").is_file(), log
    assert (tmp_path / "runs" / "select-transforms" / "a.json").is_file()
    assert not (tmp_path / "runs" / "select-transforms" / "b.json").exists()  # fixed preset
    budget = json.loads((tmp_path / "runs" / "select-transforms" / "a.json").read_text())["budget"]
    assert budget["head"] == "linear" and budget["head_dropout"] == 0  # train:'s head

    md = (tmp_path / "runs" / "report.md").read_text()
    answer, rest = md.split("## Summary", 1)
    assert "Can a CNN count?" in answer and "| a | tiny-a |" in answer
    rest, cost = rest.split("## Model cost", 1)
    cost = cost.split("## Circles or pixels?", 1)[0]
    summary = [ln for ln in rest.splitlines() if ln.startswith("| a |") or ln.startswith("| b |")]
    assert [
        ln.split(" | ")[1] for ln in cost.splitlines() if ln.startswith(("| a |", "| b |"))
    ] == [
        "resnet18",
        "resnet18",
    ]  # one cost row per run
    assert len(summary) == 2
    a, b = (row.split(" | ") for row in summary)
    assert a[1:5] == ["tiny-a", "resnet18", "linear (dropout 0)", "no: trained from scratch"]
    assert b[2:4] == ["resnet18 (regression, l1 loss)", "fastai (dropout 0.5)"]  # its own options
    assert a[5] in ("none", "dihedral")  # the selection's choice; aug is label-unsafe here
    assert b[5] == "flips"
    # b trained in two processes; rank 0's output reached the job's log through the job
    assert b[-1].startswith("cpu x 2 (") and a[-1].startswith("cpu (")
    b_log = (tmp_path / "logs" / "train" / "b.log").read_text()
    assert "epoch 1/1" in b_log and b_log.count("done: final error_rate") == 1, b_log
    assert md.count("| epoch | train_loss | valid_loss | error_rate | time |") == 2  # b: below
    assert "No ImageNet weights for resnet18" in md  # said plainly
    assert "### Transform selection" in md and "label-unsafe" in md
    assert (tmp_path / "runs" / "report.html").stat().st_size > 10_000
    # The sweep: one job per (point, seed), each an ordinary run, then its summaries.
    sw = tmp_path / "runs" / "sw"
    runs = ["lr-0.01-seed0", "lr-0.003-seed0"]
    for run in runs:
        cfg_run = yaml.safe_load((sw / run / "config.yaml").read_text())
        assert cfg_run["status"] == "complete" and cfg_run["seed"] == int(run[-1])
        assert cfg_run["run"]["lr"] == float(run.split("-")[1]) and cfg_run["run"]["size"] == 32
        assert cfg_run["run"]["head"] == "fastai"  # the sweep's option over train:'s
        assert (tmp_path / "logs" / "sweep" / "sw" / f"{run}.log").is_file()
    sweep_csv, summary_csv = (
        (sw / f).read_text().splitlines() for f in ("sweep.csv", "summary.csv")
    )
    assert sorted(r["run"] for r in csv.DictReader(sweep_csv)) == sorted(runs)
    assert [r["lr"] for r in csv.DictReader(summary_csv)] == ["0.01", "0.003"]
    assert "## Sweep sw" in md and "| lr | runs | final error_rate |" in md
    # Circles or pixels: the set with distractors beside the same set without, same budget
    pixels = md.split("## Circles or pixels?", 1)[1].split("\n## ", 1)[0]
    (row,) = [ln for ln in pixels.splitlines() if ln.startswith("| a |")]
    assert "| a-shapes | 1-2 an image (square, ring) | no |" in row
    # b is a regression run on the set with count 4 held out: predicted, reported as unseen.
    unseen = md.split("## Counts never seen", 1)[1].split("\n## ", 1)[0]
    assert "| b | tiny-b | l1 | 4 |" in unseen
    assert "| epoch | train_loss | valid_loss | error_rate | mae | rmse | time |" in md

    # What did it learn: each run scored on its probes, the classical counter on every set
    probe = json.loads((tmp_path / "runs/probes/a/smaller/metrics.json").read_text())
    assert probe["run"] == "a" and probe["dataset_params"]["radius"] == "2"
    assert probe["images"] == 8  # 4 an image count in valid/, two counts
    wider = json.loads((tmp_path / "runs/probes/b/wider/metrics.json").read_text())
    assert sorted(wider["per_count"]) == ["2", "3", "4", "5", "6"] and "mae" in wider
    for name in ("tiny-a", "tiny-a-smaller", "tiny-a-colours", "tiny-b", "tiny-b-wider"):
        classical = json.loads((tmp_path / f"runs/baselines/{name}/metrics.json").read_text())
        assert classical["method"].startswith("threshold") and classical["images"] > 0
    beyond = md.split("## Beyond the training set", 1)[1].split("\n## ", 1)[0]
    (row,) = [ln for ln in beyond.splitlines() if ln.startswith("| a |")]
    assert f"| {probe['error_rate']:.3f} (" in row and "radius 3 → 2" in row
    (row,) = [ln for ln in beyond.splitlines() if ln.startswith("| b |")]
    assert f"| {wider['mae']:.3f} (" in row and "counts 3-5 → 2-6" in row
    table = md.split("## A classical counter beside the CNN", 1)[1].split("\n## ", 1)[0]
    (row,) = [ln for ln in table.splitlines() if ln.startswith("| tiny-a-smaller |")]
    assert "probe of a: radius 3 → 2" in row
    assert "background:hsl(" in (tmp_path / "runs" / "report.html").read_text()

    assert planned_jobs(tmp_path, cfg) == {}  # nothing to be done

    # Removing one run folder reruns that run, the probes job (every run's probes, one
    # process: the forward passes take less than importing torch again) and the report;
    # where and how a run goes (loader workers, device, quiet) is not what it computes.
    shutil.rmtree(tmp_path / "runs" / "b")
    cfg.write_text(TINY.replace("workers: 0", "workers: 1"))
    assert planned_jobs(tmp_path, cfg) == {
        "train": 1, "probes": 1, "report": 1, "all": 1, "total": 4
    }  # fmt: skip
    # A changed parameter reruns what it changes (Snakemake's params trigger, which compares
    # only builtin values: the rules pass specs as plain dicts): set a and its probe sets
    # (made from its options), their classical scores, its selection and run, the probes
    # job and the report; set b is kept (b's run, removed above, is still due).
    a_32 = "tiny-a: {range: 1-2, per_class: 12, size: 32"
    bigger = TINY.replace(a_32, a_32.replace("32", "40"))
    assert bigger != TINY
    cfg.write_text(bigger)
    assert planned_jobs(tmp_path, cfg) == {
        "gen": 3, "baseline": 3, "select_transforms": 1, "train": 2, "probes": 1, "report": 1,
        "all": 1, "total": 12
    }  # fmt: skip


def planned_jobs(workdir: Path, config: Path) -> dict[str, int]:
    """Snakemake's dry-run job counts, by rule."""
    dry = snakemake(workdir, config, "-n", "all")
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1]
    jobs = {}
    for line in stats.splitlines()[3:]:  # after the header and its rule
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        jobs[m.group(1)] = int(m.group(2))
    return jobs


def test_a_user_config_replaces_the_default_from_the_repository_root(tmp_path):
    # As a user runs it: from the repository root, no -d. Snakemake alone would merge the
    # user's config over config/config.yaml and plan the default's experiments too.
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "datasets:\n  only-mine: {range: 1-2, per_class: 8, size: 32, radius: 3}\n"
        "experiments:\n  mine: {data: only-mine, epochs: 1, size: 32}\n"
    )
    cmd = [sys.executable, "-m", "snakemake", "-n", "all", "--configfile", str(mine)]
    dry = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "datasets/only-mine" in out and "runs/mine" in out
    assert "count-1-5" not in out and "count-45-50" not in out
    # Without --configfile, the default config is the plan (all of it, whatever is built).
    # Every `snakemake` call parses the Snakefile, and every job's process parses it again:
    # torch and fastai (~10 s) stay out of it.
    default = [sys.executable, "-X", "importtime", *cmd[1:-2], "--forceall"]
    dry = subprocess.run(default, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "count-45-50-var" in dry.stdout + dry.stderr
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in dry.stderr.splitlines()
                if ln.startswith("import time:")}  # fmt: skip
    assert "snakemake.workflow" in imported and "countnet_gen.spec" in imported
    assert not {"torch", "fastai", "skimage"} & imported


def test_bad_config_is_rejected_before_any_job(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("datasets:\n  broken: {range: 50-45, size: 32}\n")
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode != 0
    assert "broken" in proc.stderr and "reversed" in proc.stderr
    assert not (tmp_path / "datasets").exists()
    cfg.write_text("datasets:\n  typo: {range: 1-2, sise: 32}\n")
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode != 0 and "sise" in proc.stderr
    cfg.write_text("experiments:\n  x: {data: nowhere/at/all}\n")
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode != 0 and "nowhere/at/all" in proc.stderr
    cfg.write_text("datasets:\n  d: {range: 1-2}\nexperiments:\n  x: {data: d, arch: vgg99}\n")
    proc = snakemake(tmp_path, cfg, "-n", "all")
    assert proc.returncode != 0 and "vgg99" in proc.stdout + proc.stderr
    # A sweep over the rate with an arch its fixed size cannot take: refused by the plan
    # (without torch), not by each of its jobs.
    cfg.write_text(
        "datasets:\n  d: {range: 1-2}\nsweeps:\n  s: {data: d, arch: alexnet, "
        "size: 32, pretrained: false, seeds: 1, params: {lr: [0.01, 0.003]}}\n"
    )
    proc = snakemake(tmp_path, cfg, "-n", "all")
    assert proc.returncode != 0
    assert "--size 32 is too small for alexnet: at least 63 px" in proc.stdout + proc.stderr


def test_a_data_parallel_experiment_asks_for_its_gpus(tmp_path):
    """An experiment's `gpus: N` on CUDA becomes its job's `gpu` resource (what the SLURM
    profile requests with --gpus); CPU processes, like runs in one process, ask for the
    config's `gpu:`."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gpu: 1\ndatasets:\n  d: {range: 1-2, per_class: 4, size: 32}\nexperiments:\n"
        "  multi: {data: d, gpus: 4, device: cuda}\n  cpu2: {data: d, gpus: 2, device: cpu}\n"
        "  one: {data: d}\n"
    )
    proc = snakemake(tmp_path, cfg, "-n", "runs/multi", "runs/cpu2", "runs/one")
    assert proc.returncode == 0, proc.stderr[-3000:]
    asked = dict(
        re.findall(r"output: runs/(\S+)\n(?:.*\n)*?\s+resources: .*?gpu=(\d+)", proc.stdout)
    )
    assert asked == {
        "multi": "4", "cpu2": "1", "one": "1",
        # select-transforms trains its candidates the experiment's way
        "select-transforms/multi.json": "4", "select-transforms/cpu2.json": "1",
        "select-transforms/one.json": "1",
    }, proc.stdout  # fmt: skip


def test_a_refused_name_is_said_in_one_line(tmp_path):
    """A name the schema refuses (it would become a path in a job's shell command) is one
    line naming it and the rule, not the schema validator's dozen-line dump."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text('datasets: {"my set": {range: 1-2, per_class: 4, size: 32, radius: 3}}\n')
    proc = snakemake(tmp_path, cfg, "-n", "all")
    assert proc.returncode != 0
    line = ("config: datasets: the name 'my set' is not allowed: use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit")  # fmt: skip
    said = proc.stdout + proc.stderr  # Snakemake prints a parse error on stdout
    assert line in said.splitlines(), said
    assert "Failed validating" not in said
