"""Predictions and metrics of a trained regression learner on a split.

After training, every validation image (counts seen in training) and every image of a
``test/`` split (`countnet gen --holdout`: counts never seen; countnet_classify.screen
finds and vets it) is predicted once more: predictions.csv, and the summary's MAE and
rounded accuracy on seen and unseen counts — and the report's rows of that summary.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from countnet.cpus import usable_cpus
from countnet.errors import CountnetError
from countnet_classify.labels import TEST
from countnet_classify.regression import rounded


def _decoded(paths: list[Path], size: int) -> np.ndarray:
    """Pixels exactly as training decodes them (the cache's decoding)."""
    # lazy: images imports fastai; `countnet report` imports this module for its rows alone
    from countnet_classify.images import decode

    out = np.empty((len(paths), size, size, 3), np.uint8)
    with ThreadPoolExecutor(min(8, usable_cpus())) as pool:
        for i, arr in enumerate(pool.map(lambda p: decode(p, size), paths)):
            out[i] = arr
    return out


def predict_items(
    learn, items: list[tuple[Path, int]], size: int, bs: int, chunk: int = 2048
) -> np.ndarray:
    """The learner's counts for ``items`` (the test split's: the training loaders do not hold
    them) through its validation batch transforms, decoded ``chunk`` images at a time (a
    large test split never sits in memory whole)."""
    # lazy: data imports fastai; `countnet report` imports this module for its rows alone
    from countnet_classify.data import CachedDL, CachedSplit

    valid = learn.dls.valid
    out = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        images = _decoded([p for p, _ in part], size)
        targets = np.array([v for _, v in part], np.float32)
        ds = CachedSplit(images, targets, getattr(valid.dataset, "vocab", None), 1)
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


def count_stats(rows: list[dict]) -> dict:
    """n, MAE, RMSE, rounded accuracy and bias (mean residual) of ``rows`` (each with its
    "prediction", "count" and "rounded"), to 4 decimals."""
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
    out = {k: count_stats(v) for k, v in groups.items() if v}
    by_count: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_count[r["count"]].append(r)
    out["by_count"] = {
        str(c): {**count_stats(rs), "seen": rs[0]["seen"]} for c, rs in sorted(by_count.items())
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
    """One row per regression run of the report (``views``: report.views.RunView)."""
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
