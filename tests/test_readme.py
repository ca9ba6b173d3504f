"""The README's `countnet train`, `predict`, `export`, `select-transforms` and `report`
examples, run in order as a reader would, each line as written (gen, cost, sweep and
data-parallel examples are run by their own tests). What a test cannot give them is swapped for the
smallest equivalent: tiny 32-px sets at the paths the lines name, ImageNet-shaped random
weights imported into a private torch hub cache, and, appended to training lines, options
that make them take seconds (`--size 32 --epochs 1 ...`; a later option wins). A line
followed by the same line with --resume is interrupted as the README says: SIGKILL in its
second epoch (the --resume line names the run alone: its options come from config.yaml)."""

from __future__ import annotations

import glob
import shlex
import shutil
from pathlib import Path

import yaml

from countnet_classify.run_folder import partial_dir
from tests.conftest import COUNTNET, save_resnet_weights
from tests.test_resume import kill_9_after_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
VERBS = ("train", "predict", "export", "select-transforms", "report")
FAST = ["--size", "32", "--bs", "8", "--lr-find-iters", "0", "--quiet"]


def _examples() -> list[tuple[list[str], bool]]:
    """README's lines, then `countnet train --help`'s and `export --help`'s that README
    lacks, each with whether it came from --help."""
    from countnet.cli import EXPORT_EXAMPLES, TRAIN_EXAMPLES

    readme = README.read_text().splitlines()
    helps = [
        ln.strip().split("[dim]")[0]
        for text in (TRAIN_EXAMPLES, EXPORT_EXAMPLES)
        for ln in text.splitlines()
    ]
    found: list[tuple[list[str], bool]] = []
    for from_help, lines in ((False, readme), (True, helps)):
        for ln in lines:
            if ln.startswith(tuple(f"countnet {v} " for v in VERBS)):
                args = shlex.split(ln, comments=True)
                if "--gpus" in args:  # run as written by tests/test_distributed.py
                    continue
                # README may repeat a line on purpose (resume); --help only adds new ones
                if not from_help or all(args != a for a, _ in found):
                    found.append((args, from_help))
    return found


def _resumed_next(args: list[str], following: list[list[str]]) -> bool:
    """Whether the line after ``args`` resumes its run (`countnet train --resume --name`)."""
    if not following or "--name" not in args or args[1] != "train" or "--resume" in args:
        return False
    nxt = following[0]
    name = args[args.index("--name") + 1]
    return "--resume" in nxt and "--name" in nxt and nxt[nxt.index("--name") + 1] == name


def test_readme_examples_run_as_written(cli, tiny, tmp_path, monkeypatch):
    examples = [args for args, _ in _examples()]
    from_help = [h for _, h in _examples()]
    assert len(examples) >= 10 and any(from_help)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # ours alone
    save_resnet_weights(tmp_path / "resnet34.pth", "resnet34")  # --help's --weights example
    assert cli("weights", "import", "resnet34.pth", "--arch", "resnet34").returncode == 0
    for where in ("datasets/count-1-5", "datasets/count-45-50", "datasets/count-45-50-holdout"):
        shutil.copytree(tiny, where)
    held = Path("datasets/count-45-50-holdout")  # count 2 held out, as `gen --holdout` does
    for split in ("train", "valid"):
        shutil.copytree(held / split / "2", held / "test" / "2", dirs_exist_ok=True)
        shutil.rmtree(held / split / "2")
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
        if _resumed_next(args, examples[i + 1 : i + 2]):
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
            if from_help[i]:  # runs README's lines already made keep their folders
                extra += ["--runs-dir", "help-runs"]
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
    reg = yaml.safe_load((runs / "reg4550" / "config.yaml").read_text())["summary"]
    assert reg["regression"]["unseen"]["n"] == 12  # count 2's images, predicted
    assert "## Counts never seen" in (runs / "report.md").read_text()
