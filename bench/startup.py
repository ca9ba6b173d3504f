"""Start-up: what a `countnet` process pays before its work, for this tree beside a baseline
tree (another commit, checked out into a temporary worktree) and beside the floor of
importing torch and fastai, all measured in this run on this machine (compare ratios, not
seconds: machines here are shared and noisy).

    uv run python bench/startup.py [--baseline REV] [--repeats 5]
    uv run python bench/startup.py --baseline 878c595 | tee bench/results/startup_$(date +%F).txt

Figures, each the minimum wall time of ``--repeats`` fresh processes (interleaved: each
round runs every tree once, the order reversed every other round, so neither is always first):
``countnet --help`` and ``gen/train/report --help``; a tiny ``countnet gen`` (2 classes of
8 images at 32 px, its worker pool included); ``countnet train`` on the default workflow's
count-45-50 set (6 classes of ``--per-class`` images at 48 px; ResNet-18, no pretrained
weights, --lr given) from process start to its first training batch, its decoded cache
built by a first run of each tree (as the workflow's first job on a set builds it); and the
same run as a workflow job (``python -m countnet_classify.job``, the spec on stdin). The
first batch is seen by patching fastai's ``Learner._do_one_batch`` in the child, which then
prints a marker and exits at once. The floor: ``python -c "import torch, fastai.vision.all"``,
what any training process pays whatever countnet does.

Both trees run in this environment (its packages), each put first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "STARTUP-FIRST-BATCH"

# The child of a first-batch figure: patch fastai's batch step, then run the command.
FIRST_BATCH = f"""
import os, sys
import fastai.learner as fl
def first(self):
    if self.training:
        print({MARKER!r}, flush=True)
        os._exit(0)
fl.Learner._do_one_batch = first
if sys.argv[1] == "job":
    from countnet_classify.job import main
    sys.exit(main())
from countnet.cli import main
sys.argv = ["countnet", *sys.argv[1:]]
main()
"""
# The other figures run the `countnet` console script itself (its spawned gen workers import
# it again, as a user's do), from the tree PYTHONPATH puts first.
COUNTNET = str(Path(sys.executable).with_name("countnet"))
GEN = ["gen", "--range", "1-2", "--per-class", "8", "--size", "32", "--radius", "3"]


def tree_env(tree: Path, cache: Path) -> dict[str, str]:
    """An environment whose Python imports countnet's three packages from ``tree``, with
    ``cache`` as countnet's cache folder."""
    paths = [str(tree), str(tree / "gen"), str(tree / "classify")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), COUNTNET_DEBUG="1")
    env["COUNTNET_CACHE_DIR"] = str(cache)
    env.pop("COLUMNS", None)
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> float:
    """Seconds from starting ``argv`` to its exit, or to the first-batch marker."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(stdin)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({proc.returncode}):\n{err[-2000:]}")
    if FIRST_BATCH in argv and MARKER not in out:
        raise SystemExit(f"no first batch in {' '.join(argv)}:\n{out[-1000:]}{err[-2000:]}")
    return dt


def figures(work: Path, data: Path) -> dict[str, tuple[list[str], str]]:
    """Each figure's argv and stdin."""
    tiny = ["--size", "48", "--epochs", "1", "--no-pretrained", "--arch", "resnet18",
            "--lr", "0.01", "--bs", "4", "--runs-dir", str(work / "runs")]  # fmt: skip
    job_spec = {"data": str(data), "size": 48, "epochs": 1, "pretrained": False,
                "arch": "resnet18", "lr": 0.01, "bs": 4, "runs_dir": str(work / "runs"),
                "name": "job", "force": True}  # fmt: skip
    cn = [COUNTNET]
    first = [sys.executable, "-c", FIRST_BATCH]
    return {
        "countnet --help": ([*cn, "--help"], ""),
        "countnet gen --help": ([*cn, "gen", "--help"], ""),
        "countnet train --help": ([*cn, "train", "--help"], ""),
        "countnet report --help": ([*cn, "report", "--help"], ""),
        "countnet gen (16 images, 32 px)": ([*cn, *GEN, "--out", str(work / "gen"), "--force"], ""),
        "countnet train, to first batch": (
            [*first, "train", str(data), *tiny, "--name", "cli", "--force"],
            "",
        ),
        "workflow job, to first batch": (
            [*first, "job"],
            json.dumps({"spec": job_spec, "threads": 2}),
        ),
    }


def checkout(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(into), rev], check=True
    )
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--per-class", type=int, default=1000, help="the training set's images")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="countnet-startup-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        cache.mkdir()
        base = checkout(args.baseline, work / "baseline")
        try:
            trees = {"baseline": base, "this tree": REPO}
            data = work / "data"
            count = ["gen", "--range", "45-50", "--size", "48", "--radius", "1.5", "--no-overlap"]
            count += ["--per-class", str(args.per_class), "--out", str(data), "-q"]
            timed([COUNTNET, *count], tree_env(REPO, cache), work)
            # a first run of each tree fills the decoded cache and the bytecode caches
            specs = figures(work, data)
            warm = specs["countnet train, to first batch"]
            for tree in trees.values():
                timed(warm[0], tree_env(tree, cache), work, warm[1])
            best: dict[str, dict[str, float]] = {name: {} for name in [*specs, "floor"]}
            floor = [py, "-c", "import torch, fastai.vision.all"]
            for r in range(args.repeats):
                order = list(trees.items())[:: 1 if r % 2 == 0 else -1]
                t = timed(floor, dict(os.environ), work)
                best["floor"]["floor"] = min(best["floor"].get("floor", t), t)
                for name, (argv, stdin) in specs.items():
                    for label, tree in order:
                        t = timed(argv, tree_env(tree, cache), work, stdin)
                        best[name][label] = min(best[name].get(label, t), t)
            report(best, args)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)])


def report(best: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    floor = best.pop("floor")["floor"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = platform.processor() or platform.machine()
    print(f"host: {platform.node()}, {cpu}, {os.cpu_count()} CPUs; {when}")
    print(f"baseline: {args.baseline}; minimum of {args.repeats} runs each (seconds)")
    print(f"floor (import torch, fastai.vision.all): {floor:.2f}")
    print(f"{'figure':34} {'baseline':>9} {'this tree':>9} {'ratio':>6} {'tree/floor':>10}")
    for name, t in best.items():
        ratio = t["this tree"] / t["baseline"]
        print(f"{name:34} {t['baseline']:9.2f} {t['this tree']:9.2f} {ratio:6.2f} "
              f"{t['this tree'] / floor:10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
