"""The seeds' Caffe/Mocha LeNet solver run as written, next to countnet's default path, and a
sweep over --opt, all in this run, on a handwritten-digit set that ships offline.

    uv run python bench/solver_recipe.py [--epochs 30] [--seeds 3] [--out DIR]
    uv run python bench/solver_recipe.py | tee bench/results/solver_recipe_$(date +%F).txt

The set: scikit-learn's digits (1,797 handwritten 8x8 digits, installed with fastai's
dependencies), upscaled to 28 px PNGs (MNIST's size), 80/20 per class, fixed split.
Three configurations, each over seeds 0..N-1 through `countnet sweep`'s library, all with
`--arch lenet --size 28 --transforms none` (a flipped digit is another digit) and the same
epochs:

  recipe, sgd   ../shared/seeds/001's solver: --opt sgd --momentum 0.9 --wd 5e-4
                --lr-policy inv --lr 0.01 (gamma 1e-4, power 0.75), bs 64
  recipe, adam  the same with --opt adam: the sweep over the solver, one change (000's habit)
  default       countnet train's own path: Adam, one-cycle, --lr auto, bs auto

Prints mean ± std final and best error_rate per configuration and each against the
default (the baseline measured in the same run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from countnet_classify.experiments.sweep.results import result_rows, summary_rows
from countnet_classify.experiments.sweep.runner import run_sweep
from countnet_classify.experiments.sweep.spec import Sweep

SIZE = 28


def write_digits(root: Path, valid_pct: float = 0.2, seed: int = 0) -> Path:
    """scikit-learn's digits as train/<digit>/*.png and valid/<digit>/*.png, 28 px grey."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        idx = idx[rng.permutation(len(idx))]
        n_valid = round(len(idx) * valid_pct)
        for k, i in enumerate(idx):
            split = "valid" if k < n_valid else "train"
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)
            img = Image.fromarray(pixels, "L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            img.save(folder / f"{i:04d}.png")
    return root


def configurations(data: Path, out: Path, epochs: int, seeds: int) -> dict[str, Sweep]:
    common = {"data": str(data), "arch": "lenet", "size": SIZE, "transforms": "none",
              "epochs": epochs, "quiet": True}  # fmt: skip
    recipe = {**common, "lr_policy": "inv", "lr": 0.01, "momentum": 0.9, "wd": 5e-4,
              "bs": 64, "lr_find_iters": 0}  # fmt: skip
    return {
        "recipe": Sweep(recipe, (("opt", ("sgd", "adam")),), str(out / "recipe"), seeds),
        "default": Sweep(common, (("opt", ("adam",)),), str(out / "default"), seeds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: temp)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="countnet-solver-") if args.out is None else None
    out = Path(tmp.name) if tmp else args.out
    data = write_digits(out / "digits")
    import torch

    print(
        f"# solver_recipe {time.strftime('%Y-%m-%d %H:%M')}: {platform.node()} "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; sklearn digits at {SIZE} px "
        f"({sum(1 for _ in (data / 'train').rglob('*.png'))} train / "
        f"{sum(1 for _ in (data / 'valid').rglob('*.png'))} valid), LeNet, "
        f"{args.epochs} epochs, seeds 0..{args.seeds - 1}",
        flush=True,
    )
    results = {}
    for name, sweep in configurations(data, out, args.epochs, args.seeds).items():
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the runs' epoch lines
            run_sweep(sweep, say=lambda m: None)
        for row in summary_rows(sweep, result_rows(sweep)):
            label = f"{name}, {row['opt']}" if name == "recipe" else name
            results[label] = row
        print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    base = results["default"]
    print(f"{'configuration':14s} {'final error_rate':>18s} {'best error_rate':>18s} "
          f"{'vs default':>10s} {'train s':>8s}")  # fmt: skip
    for label, r in results.items():
        fin, best = r["final_error_rate_mean"], r["best_error_rate_mean"]
        fs, bs = r["final_error_rate_std"] or 0.0, r["best_error_rate_std"] or 0.0
        diff = fin - base["final_error_rate_mean"]
        print(f"{label:14s} {fin:9.4f} ± {fs:6.4f} {best:9.4f} ± {bs:6.4f} {diff:+10.4f} "
              f"{r['train_seconds_mean']:8.1f}")  # fmt: skip
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
