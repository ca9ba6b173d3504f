"""``--task regression``: the count as a number instead of a class.

The class folders name the counts (0, 1, 2, ...); the network has one output, standardised
by the training counts (``Rescale``: the head learns (count - mean) / std, so a network
trained from scratch starts at the mean count instead of at 0 while its output is still a
count — in the weights, in `countnet predict` and in an ONNX export alike). The per-epoch
table keeps the blog's columns — error_rate is 1 - the accuracy of the rounded prediction,
so it reads like a classifier's — and adds MAE and RMSE.

After training, every validation image (counts seen in training) and every image of a
``test/`` split (`countnet gen --holdout`: counts never seen) is predicted once more:
predictions.csv, and the summary's MAE and rounded accuracy on seen and unseen counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from countnet.cpus import usable_cpus
from countnet.errors import CountnetError
from countnet_classify.config import DEFAULT_LOSS

HUBER_DELTA = 1.0  # counts: quadratic within one circle of the truth, linear beyond
TEST = "test"


def count_values(classes: list[str], where: str = "class folder") -> np.ndarray:
    """The count each class folder names, or a one-line error for one that names none (or
    names the same count as another: 7 and 07)."""
    bad = [c for c in classes if not (c.isascii() and c.isdigit())]
    if bad:
        hint = " (a test/ split is read only beside train/ and valid/)" if bad[0] == TEST else ""
        raise CountnetError(
            f"--task regression needs {where}s named by counts (0, 1, 2, ...); "
            f"{bad[0]!r} is not a count{hint}"
        )
    values = [int(c) for c in classes]
    twice = sorted({c for c, v in zip(classes, values, strict=True) if values.count(v) > 1})
    if twice:
        raise CountnetError(f"{where}s {', '.join(twice)} name the same count: keep one")
    return np.array(values, np.float32)


class Rescale(nn.Module):
    """The head's last step: its one output z as a count, z * std + mean, shape (batch,).

    In float32 whatever autocast computed z in: bf16 holds 47 only to a quarter."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].float() * self.std + self.mean


def attach_rescale(model: nn.Module, arch: str, mean: float = 0.0, std: float = 1.0) -> nn.Module:
    """Append ``Rescale`` to ``model``'s head (LeNet's classifier; the head of fastai's
    body + head model), where fastai's splitter puts it with the head's parameters."""
    head = model.classifier if arch == "lenet" else model[1]
    head.append(Rescale(mean, std))
    return model


def standardisation(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the training counts (std 1 if they are all one)."""
    mean, std = float(values.mean()), float(values.std())
    return mean, std if std > 0 else 1.0


def loss_func(name: str | None):
    """fastai's flattened loss for ``--loss`` (None: DEFAULT_LOSS), on counts."""
    from fastai.losses import BaseLoss, L1LossFlat, MSELossFlat

    name = name or DEFAULT_LOSS
    if name == "l1":
        return L1LossFlat()
    if name == "mse":
        return MSELossFlat()
    if name == "huber":
        return BaseLoss(nn.HuberLoss, delta=HUBER_DELTA, floatify=True, flatten=True, is_2d=False)
    raise CountnetError(f"unknown --loss {name!r}")


def rounded(pred: torch.Tensor) -> torch.Tensor:
    """The count a prediction stands for: the nearest whole number, never below 0."""
    return torch.floor(pred.float() + 0.5).clamp_min(0)


def accuracy(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Share of images whose rounded prediction is the count."""
    return (rounded(inp.flatten()) == targ.flatten().float()).float().mean()


def error_rate(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """1 - ``accuracy``: the blog table's column, comparable with a classifier's."""
    return 1 - accuracy(inp, targ)


def mae(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, in counts."""
    return (inp.flatten().float() - targ.flatten().float()).abs().mean()


def _root_mean_square(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (inp.flatten().float() - targ.flatten().float()).pow(2).mean().sqrt()


def metrics() -> list:
    """The per-epoch metrics, named as MetricsTable's columns. RMSE over the whole
    validation set (AccumMetric), not a mean of per-batch roots."""
    from fastai.metrics import AccumMetric

    return [error_rate, accuracy, mae, AccumMetric(_root_mean_square, name="rmse")]


def find_test_folders(root: Path) -> dict[int, list[Path]]:
    """The files of each ``root/test/<count>/`` folder (`countnet gen --holdout`'s held-out
    counts, or a test split of the user's), by count; a folder that names no count is a
    one-line error."""
    from countnet_classify.screen import _class_dirs, _files

    folder = root / TEST
    if not folder.is_dir():
        return {}
    dirs = _class_dirs(folder)
    values = count_values([d.name for d in dirs], where="test/ class folder")
    return {int(v): _files(d) for d, v in zip(dirs, values, strict=True)}


def screen_test(root: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, str]], dict]:
    """The test split vetted as screening vets train/ and valid/: (image, count) for every
    readable image, the skipped files with why, and what the run records of it (images
    per count, a fingerprint of every file; nothing without a test/ folder)."""
    from countnet_classify.screen import _check_image

    folders = find_test_folders(root)
    entries = [(f, c) for c, files in folders.items() for f in files]
    with ThreadPoolExecutor(min(8, usable_cpus())) as pool:
        problems = list(pool.map(_check_image, [f for f, _ in entries]))
    items = [e for e, why in zip(entries, problems, strict=True) if why is None]
    skipped = [(e[0], why) for e, why in zip(entries, problems, strict=True) if why is not None]
    info = {}
    if folders:
        info["test_class_counts"] = {str(c): sum(1 for _, k in items if k == c) for c in folders}
        info["test_skipped"] = len(skipped)
        info["test_fingerprint"] = fingerprint_test_split(root, folders)
    return items, skipped, info


def fingerprint_test_split(root: Path, folders: dict[int, list[Path]] | None = None) -> str | None:
    """The test split's fingerprint from names, sizes and mtimes alone (None without one):
    what a run records, cheap enough to check before reusing a finished run. ``folders``:
    ``find_test_folders(root)``, when already at hand."""
    from countnet_classify.screen import fingerprint

    folders = find_test_folders(root) if folders is None else folders
    return fingerprint(root, [f for fs in folders.values() for f in fs]) if folders else None


def _decoded(paths: list[Path], size: int) -> np.ndarray:
    """Pixels exactly as training decodes them (the cache's decoding)."""
    from countnet_classify.cache import _decode

    out = np.empty((len(paths), size, size, 3), np.uint8)
    with ThreadPoolExecutor(min(8, usable_cpus())) as pool:
        for i, arr in enumerate(pool.map(lambda p: _decode(p, size), paths)):
            out[i] = arr
    return out


def predict_items(
    learn, items: list[tuple[Path, int]], size: int, bs: int, chunk: int = 2048
) -> np.ndarray:
    """The learner's counts for ``items`` (the test split's: the training loaders do not hold
    them) through its validation batch transforms, decoded ``chunk`` images at a time (a
    large test split never sits in memory whole)."""
    from countnet_classify.data import CachedDL, _Split

    valid = learn.dls.valid
    out = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        images = _decoded([p for p, _ in part], size)
        targets = np.array([v for _, v in part], np.float32)
        ds = _Split(images, targets, getattr(valid.dataset, "vocab", None), 1)
        dl = CachedDL(
            ds, bs=bs, shuffle=False, drop_last=False, num_workers=0,
            after_batch=list(valid.after_batch.fs), device=learn.dls.device,
        )  # fmt: skip
        dl.channels_last = getattr(valid, "channels_last", False)
        with learn.no_bar(), learn.no_logging():
            preds, _ = learn.get_preds(dl=dl)
        out.append(preds.float().numpy())
    return np.concatenate(out)


def evaluate(
    learn, screened, test_items: list[tuple[Path, int]], size: int, bs: int
) -> tuple[list[dict], dict]:
    """Every validation and test image (``test_items``: ``screen_test``'s) predicted by the
    trained ``learn``: the rows of predictions.csv and the summary's "regression" entry."""
    root = screened.root
    trained = {int(c) for c in screened.classes}
    valid_items = [(p, int(lbl)) for p, lbl, v in screened.items if v]
    # The validation split through the training loaders themselves (their order is the
    # screened order): its pixels are decoded (or cached) already.
    with learn.no_bar(), learn.no_logging():
        valid_preds, _ = learn.get_preds(ds_idx=1)
    groups = [("valid", valid_items, valid_preds.float().numpy())]
    if test_items:
        groups.append((TEST, test_items, predict_items(learn, test_items, size, bs)))
    rows = []
    for split, items, preds in groups:
        if not np.isfinite(preds).all():
            raise CountnetError(
                f"training diverged: {int((~np.isfinite(preds)).sum())} of {len(preds)} {split} "
                "predictions are not finite numbers; train again with a lower --lr"
            )
        for (path, count), pred in zip(items, preds, strict=True):
            pred = round(float(pred), 4)  # as predictions.csv keeps it, rounded from that
            rows.append(
                {
                    "split": split,
                    "path": path.relative_to(root).as_posix(),
                    "count": count,
                    "seen": count in trained,
                    "prediction": pred,
                    "rounded": int(rounded(torch.tensor(pred))),
                }
            )
    return rows, summarise(rows)


def _stats(rows: list[dict]) -> dict:
    err = np.array([r["prediction"] - r["count"] for r in rows], np.float64)
    hits = sum(r["rounded"] == r["count"] for r in rows)
    return {
        "n": len(rows),
        "mae": round(float(np.abs(err).mean()), 4),
        "rmse": round(float(math.sqrt((err**2).mean())), 4),
        "accuracy": round(hits / len(rows), 4),
        "bias": round(float(err.mean()), 4),
    }


def summarise(rows: list[dict]) -> dict:
    """MAE, RMSE, rounded accuracy and mean residual (bias): on seen counts (the validation
    split), unseen counts (test images of counts never trained on), test images of seen
    counts if a test split has any, and per count."""
    groups = {
        "seen": [r for r in rows if r["split"] == "valid"],
        "unseen": [r for r in rows if r["split"] == TEST and not r["seen"]],
        "test_seen": [r for r in rows if r["split"] == TEST and r["seen"]],
    }
    out = {k: _stats(v) for k, v in groups.items() if v}
    by_count: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_count[r["count"]].append(r)
    out["by_count"] = {
        str(c): {**_stats(rs), "seen": rs[0]["seen"]} for c, rs in sorted(by_count.items())
    }
    return out


# -- the report ---------------------------------------------------------------------
UNSEEN_INTRO = (
    "Regression runs (--task regression) answer a number, so they can be asked about counts "
    "they never trained on (`countnet gen --holdout`: those counts only in test/). MAE and "
    "accuracy of the rounded count on the validation images (counts seen in training) and "
    "on the test images of unseen counts."
)
UNSEEN_COLUMNS = ("run", "dataset", "loss", "unseen counts", "MAE seen", "accuracy seen",
                  "MAE unseen", "accuracy unseen")  # fmt: skip
GROUP_COLUMNS = ("images", "n", "MAE", "RMSE", "rounded accuracy", "bias (mean residual)")
COUNT_COLUMNS = ("count", "trained on", "n", "MAE", "rounded accuracy", "bias")
GROUP_NAMES = {"seen": "valid (counts seen)", "unseen": "test (counts never seen)",
               "test_seen": "test (counts seen)"}  # fmt: skip


def summary_of(config: dict) -> dict | None:
    """A finished regression run's "regression" summary, else None."""
    return config.get("summary", {}).get("regression")


def unseen_rows(views) -> list[list[str]]:
    """One row per regression run of the report (``views``: report.RunView)."""
    rows = []
    for v in views:
        s = summary_of(v.config)
        if not s:
            continue
        unseen = s.get("unseen")
        counts = [c for c, e in s["by_count"].items() if not e["seen"]]
        rows.append(
            [
                v.name,
                Path(v.config["data"]["root"]).name,
                v.config["resolved"].get("loss", ""),
                ", ".join(counts) or "none",
                f"{s['seen']['mae']:.3f}",
                f"{s['seen']['accuracy']:.3f}",
                f"{unseen['mae']:.3f}" if unseen else "—",
                f"{unseen['accuracy']:.3f}" if unseen else "—",
            ]
        )
    return rows


def group_rows(s: dict) -> list[list[str]]:
    return [
        [
            GROUP_NAMES[k],
            str(g["n"]),
            f"{g['mae']:.3f}",
            f"{g['rmse']:.3f}",
            f"{g['accuracy']:.3f}",
            f"{g['bias']:+.3f}",
        ]  # fmt: skip
        for k, g in s.items()
        if k in GROUP_NAMES
    ]


def count_rows(s: dict) -> list[list[str]]:
    return [
        [
            c,
            "yes" if e["seen"] else "no",
            str(e["n"]),
            f"{e['mae']:.3f}",
            f"{e['accuracy']:.3f}",
            f"{e['bias']:+.3f}",
        ]  # fmt: skip
        for c, e in s["by_count"].items()
    ]
