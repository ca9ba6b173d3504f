"""The README's `countnet train`, `predict`, `export`, `select-transforms` and `report`
examples, run in order as a reader would, each line as written (gen, cost and sweep
examples are run by their own tests). What a test cannot give them is swapped for the
smallest equivalent: tiny 32-px sets at the paths the lines name, ImageNet-shaped random
weights imported into a private torch hub cache, and, appended to training lines, options
that make them take seconds (`--size 32 --epochs 1 ...`; a later option wins). A line
followed by the same line with --resume is interrupted as the README says: SIGKILL in its
second epoch."""

from __future__ import annotations

import glob
import shlex
import shutil
from pathlib import Path

import yaml

from countnet_classify.outputs import partial_dir
from tests.conftest import COUNTNET, save_resnet_weights
from tests.test_resume import kill_9_after_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
VERBS = ("train", "predict", "export", "select-transforms", "report")
FAST = ["--size", "32", "--bs", "8", "--lr-find-iters", "0", "--quiet"]


def _examples() -> list[list[str]]:
    """README's lines, then `countnet export --help`'s that README lacks."""
    from countnet.cli import EXPORT_EXAMPLES

    readme = README.read_text().splitlines()
    helps = [ln.strip().split("[dim]")[0] for ln in EXPORT_EXAMPLES.splitlines()]
    found: list[list[str]] = []
    for ln in readme + helps:
        if ln.startswith(tuple(f"countnet {v} " for v in VERBS)):
            args = shlex.split(ln, comments=True)
            if args not in found or ln in readme:
                found.append(args)
    return found


def test_readme_examples_run_as_written(cli, tiny, tmp_path, monkeypatch):
    examples = _examples()
    assert len(examples) >= 10
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # ours alone
    save_resnet_weights(tmp_path / "r34.pth", "resnet34")
    assert cli("weights", "import", tmp_path / "r34.pth", "--arch", "resnet34").returncode == 0
    for where in ("datasets/count-1-5", "datasets/count-45-50"):
        shutil.copytree(tiny, where)
    shutil.copytree(tiny / "train", "data/paintings")  # class folders only: split 80/20
    valid = sorted((tiny / "valid" / "2").glob("*.png"))
    for i, src in enumerate(valid[:2], 1):
        shutil.copy(src, f"img{i}.png")
    Path("imgs").mkdir()
    for src in valid:
        shutil.copy(src, Path("imgs") / src.name)

    for i, args in enumerate(examples):
        verb = args[1]
        lr = [] if "--lr" in args else ["--lr", "1e-3"]  # no LR finder: seconds, not more
        if examples[i + 1 : i + 2] == [[*args, "--resume"]]:
            # The run the next line resumes, interrupted as its comment says: SIGKILL once
            # its first epoch is checkpointed.
            name = args[args.index("--name") + 1]
            cmd = [COUNTNET, *args[1:], *FAST, *lr, "--epochs", "3"]
            Path("runs").mkdir(exist_ok=True)
            done, epoch = kill_9_after_checkpoint(cmd, partial_dir(Path("runs") / name), 1)
            assert done.returncode == -9 and epoch >= 1, done.stderr
            continue
        if verb == "train" and "--resume" in args:
            extra = [*FAST, *lr, "--epochs", "3"]
        elif verb == "train":
            extra = [*FAST, *lr, "--epochs", "1"]
        elif verb == "select-transforms":
            extra = ["--size", "32", "--bs", "8", "--candidates", "none,dihedral"]
        else:
            extra = []
        argv = [a for arg in args[1:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
        r = cli(*argv, *extra)
        assert r.returncode == 0, (" ".join(args), r.stderr[-2000:])
        if verb == "train" and "--resume" in args:
            assert "resuming after epoch" in r.stderr
        if verb == "predict":
            assert r.stdout.count(".png") >= 2 or Path("preds.csv").is_file()

    runs = Path("runs")
    assert yaml.safe_load((runs / "c4550" / "config.yaml").read_text())["run"]["lr"] == 1e-4
    c15 = yaml.safe_load((runs / "c15" / "config.yaml").read_text())
    assert c15["status"] == "complete" and len(c15["resolved"]["phases"]) == 2  # fine-tuned
    assert (runs / "select-transforms" / "c4550.json").is_file()
    assert Path("preds.csv").read_text().count(".png") == len(valid)
    assert (runs / "c4550" / "model.onnx").is_file() and Path("c4550.onnx").is_file()
    assert (runs / "report.html").is_file() and "## c15" in (runs / "report.md").read_text()
