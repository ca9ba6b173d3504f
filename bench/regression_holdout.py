"""Counting as regression on counts never seen in training (#10), on this machine.

    uv run python bench/regression_holdout.py [--epochs 4] [--losses l1,mse,huber] [--out DIR]
    uv run python bench/regression_holdout.py | tee bench/results/regression_holdout_$(date +%F).txt

The set is the default workflow's count-45-50 (48 px, radius 1.5, --no-overlap, 1,000
images a count) with counts 47 and 49 held out (`countnet gen --holdout 47,49`: their
images only in test/). Every run uses the default workflow's training options (ResNet-18
from scratch, linear head, one-cycle at lr 0.01, bf16 where the CPU has it) and the same
epochs; only the task and the loss change. Printed for each: MAE and rounded accuracy on
the validation images (seen counts) and on the test images (unseen counts), and the time.

Baselines measured in the same run, on the same images:
  mean        predicting the training counts' mean for every image
  classifier  `countnet train` as a classifier (the default task): it can only answer a
              trained count, so on 47 and 49 it is wrong by at least one
and the anchor from the issue: a public fastai regression notebook's MAE ~1.4, seen and
unseen counts together.
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

from countnet_classify.evaluate import summarise
from countnet_classify.predict import predict
from countnet_classify.screen import screen_test
from countnet_classify.spec import RunSpec
from countnet_classify.train import train
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate, is_dataset, read_dataset_spec

ANCHOR_MAE = 1.4
TRAIN = {
    "arch": "resnet18",
    "pretrained": False,
    "size": 48,
    "lr": 0.01,
    "lr_find_iters": 0,
    "head": "linear",
    "head_dropout": 0.0,
    "precise_bn": 512,
    "transforms": "dihedral",
    "quiet": True,
}  # fmt: skip  (config/config.yaml's train: section)


def make_set(root: Path, per_class: int, holdout: str) -> Path:
    spec = DatasetSpec(counts=(45, 50), per_class=per_class, size=48, radius=1.5,
                       no_overlap=True, holdout=holdout)  # fmt: skip
    folder = root / "count-45-50-holdout"
    if is_dataset(folder) and read_dataset_spec(folder) == spec:  # --out kept from a rerun
        return folder
    return generate(spec, folder, force=True)


def row(name: str, summary: dict, seconds: float | None) -> str:
    seen, unseen = summary["seen"], summary.get("unseen", {})
    both = (seen["mae"] * seen["n"] + unseen.get("mae", 0) * unseen.get("n", 0)) / (
        seen["n"] + unseen.get("n", 0)
    )
    t = f"{seconds:8.0f}" if seconds is not None else " " * 8
    return (
        f"{name:<16} {seen['mae']:9.3f} {seen['accuracy']:9.3f} {unseen.get('mae', 0):11.3f} "
        f"{unseen.get('accuracy', 0):11.3f} {both:9.3f} {t}"
    )


def classifier_rows(run: Path, data: Path, screened_valid: list[tuple[Path, int]]) -> list[dict]:
    """The classifier's answers on the same validation and test images, as regression rows."""
    trained = {p.name for p in (data / "train").iterdir()}
    items = [("valid", p, c) for p, c in screened_valid] + [
        ("test", p, c) for p, c in screen_test(data)[0]
    ]
    preds = predict(run, [p for _, p, _ in items])
    return [
        {
            "split": s,
            "count": c,
            "seen": str(c) in trained,
            "prediction": float(pr.label),
            "rounded": int(pr.label),
        }  # fmt: skip
        for (s, _, c), pr in zip(items, preds, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--losses", default="l1,mse,huber")
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--holdout", default="47,49")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-classifier", action="store_true", help="skip the classifier baseline")
    ap.add_argument("--out", type=Path, default=None, help="keep set and runs here (default: temp)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="countnet-regression-") if args.out is None else None
    out = Path(tmp.name) if tmp else args.out
    print(f"# regression on held-out counts: {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, epochs {args.epochs}, seed {args.seed}")  # fmt: skip
    data = make_set(out, args.per_class, args.holdout)
    print(f"set: {data} (45-50, counts {args.holdout} in test/ only, {args.per_class}/count)")
    print(f"{'run':<16} {'MAE seen':>9} {'acc seen':>9} {'MAE unseen':>11} {'acc unseen':>11} "
          f"{'MAE all':>9} {'train s':>8}")  # fmt: skip
    runs = out / "runs"
    common = {**TRAIN, "data": str(data), "epochs": args.epochs, "seed": args.seed,
              "runs_dir": str(runs), "force": True}  # fmt: skip
    valid = None
    for loss in args.losses.split(","):
        spec = RunSpec(**common, task="regression", loss=loss, name=f"regression-{loss}")
        with contextlib.redirect_stdout(io.StringIO()):
            res = train(spec, say=lambda m: None)
        s = res.record["summary"]
        print(row(f"regression {loss}", s["regression"], s["train_seconds"]), flush=True)
        if valid is None:
            valid = [(data / r["path"], int(r["count"])) for r in _rows(res.run_dir, "valid")]
    rows = [r for r in map(_typed, _rows(res.run_dir)) if r]
    mean = float(np.mean([int(p.parent.name) for p in (data / "train").glob("*/*.png")]))
    const = [{**r, "prediction": mean, "rounded": int(np.floor(mean + 0.5))} for r in rows]
    print(row("mean (baseline)", summarise(const), None))
    if not args.no_classifier:
        spec = RunSpec(**common, name="classifier")
        with contextlib.redirect_stdout(io.StringIO()):
            res = train(spec, say=lambda m: None)
        s = res.record["summary"]
        print(row("classifier", summarise(classifier_rows(res.run_dir, data, valid)),
                  s["train_seconds"]))  # fmt: skip
    print(f"anchor: a public fastai regression notebook, MAE ~{ANCHOR_MAE} (seen and unseen)")


def _rows(run: Path, split: str | None = None) -> list[dict]:
    import csv

    with open(run / "predictions.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if split is None or r["split"] == split]


def _typed(r: dict) -> dict:
    return {**r, "count": int(r["count"]), "seen": r["seen"] == "True",
            "prediction": float(r["prediction"]), "rounded": int(r["rounded"])}  # fmt: skip


if __name__ == "__main__":
    main()
