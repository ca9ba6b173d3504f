"""The run folder's figures (matplotlib, Agg: no display needed), and the one way every
figure is saved (save_current: atomic), the sweep's included."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from countnet.atomic import atomic_path  # noqa: E402


def save_current(path: Path) -> None:
    """The current figure to ``path`` as PNG, atomically (a reader never sees half a PNG),
    then every figure closed."""
    with atomic_path(path) as tmp:
        plt.gcf().savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close("all")


def smooth(values: np.ndarray) -> np.ndarray:
    """The smoothed train_loss: at each batch, a straight line fitted to the losses of the
    batches around it (a tenth of the run each side, at most 25; windows shifted inwards at
    the ends). Centred, so it does not lag: fastai's debiased moving average (beta 0.98)
    trails a falling loss and lies above nearly every batch of a short run."""
    y = np.asarray(values, dtype=float)
    n, h = len(y), min(25, max(1, len(y) // 10))
    start = np.clip(np.arange(n) - h, 0, max(n - 2 * h - 1, 0))
    end = np.minimum(start + 2 * h + 1, n)
    x = np.arange(n, dtype=float)
    # Window sums of 1, x, y, x^2, xy from running sums: the least-squares line in O(n).
    m, sx, sy, sxx, sxy = _window_sums((np.ones(n), x, y, x * x, x * y), start, end)
    det = m * sxx - sx * sx
    slope = np.divide(m * sxy - sx * sy, det, out=np.zeros(n), where=det > 0)
    return (sy - slope * sx) / m + slope * x


def _window_sums(series, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
    """Each series' sum over [start, end) at every position."""
    out = []
    for v in series:
        c = np.concatenate([[0.0], np.cumsum(v)])
        out.append(c[end] - c[start])
    return out


def plot_losses(losses: list[dict], metrics: list[dict], path: Path) -> None:
    """Learning curves: every batch's training loss, raw and smoothed, and the validation
    loss at each epoch's end."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        it = np.array([int(r["iter"]) for r in losses])
        y = np.array([float(r["loss"]) for r in losses])
        ax.plot(it, y, color="tab:blue", alpha=0.3, lw=0.8, label="train (batch)")
        ax.plot(it, smooth(y), color="tab:blue", lw=1.8, label="train (smoothed, centred)")
        ends = [
            max(int(r["iter"]) for r in losses if r["epoch"] == m["epoch"]) + 1
            for m in metrics
            if any(r["epoch"] == m["epoch"] for r in losses)
        ]
        if len(ends) == len(metrics):
            ax.plot(
                ends,
                [float(m["valid_loss"]) for m in metrics],
                "o-",
                color="tab:orange",
                label="valid (epoch end)",
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Learning curves")
    save_current(path)


def _by_seen(rows: list[dict]):
    """(label, colour, rows) for counts seen in training and counts never seen."""
    for label, colour, seen in (("seen counts", "tab:blue", True), ("unseen", "tab:red", False)):
        part = [r for r in rows if r["seen"] == seen]
        if part:
            yield label, colour, part


def plot_scatter(rows: list[dict], path: Path) -> None:
    """--task regression: predicted count against the true count for every validation and
    test image (jittered sideways so piles show), with the line of perfect counting."""
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(5, 5))
    counts = [r["count"] for r in rows]
    lo, hi = min(counts) - 1, max(counts) + 1
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, label="prediction = count")
    for label, colour, part in _by_seen(rows):
        x = np.array([r["count"] for r in part]) + rng.uniform(-0.15, 0.15, len(part))
        y = [r["prediction"] for r in part]
        ax.scatter(x, y, s=8, alpha=0.5, color=colour, label=label)
    ax.set_xlabel("true count")
    ax.set_ylabel("predicted count")
    ax.set_title("Predicted vs true count")
    ax.legend()
    save_current(path)


def plot_residuals(rows: list[dict], path: Path) -> None:
    """--task regression: the residual (prediction - count) by count, one box per count,
    coloured by whether training saw that count."""
    fig, ax = plt.subplots(figsize=(7, 4))
    counts = sorted({r["count"] for r in rows})
    ax.axhline(0, color="0.5", lw=1)
    for label, colour, part in _by_seen(rows):
        mine = [c for c in counts if any(r["count"] == c for r in part)]
        data = [[r["prediction"] - c for r in part if r["count"] == c] for c in mine]
        box = ax.boxplot(data, positions=mine, widths=0.6, patch_artist=True, manage_ticks=False)
        for patch in box["boxes"]:
            patch.set(facecolor=colour, alpha=0.4)
        ax.plot([], [], color=colour, lw=6, alpha=0.4, label=label)
    for h in (-0.5, 0.5):  # inside these the rounded prediction is right
        ax.axhline(h, color="0.7", lw=0.8, ls="--")
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlim(counts[0] - 1, counts[-1] + 1)
    ax.set_xlabel("true count")
    ax.set_ylabel("prediction - count")
    ax.set_title("Residual by count (dashed: rounds to the right count)")
    ax.legend()
    save_current(path)


def plot_confusion(matrix: np.ndarray, true: list[str], predicted: list[str], path: Path) -> None:
    """Images per (true class, predicted class): a row per class of the set (classes the
    run does not know included), a column per class the run knows; counts written in."""
    rows, cols = matrix.shape
    side = max(3.0, 0.45 * max(rows, cols) + 1.5)
    fig, ax = plt.subplots(figsize=(side * cols / max(rows, cols) + 1, side))
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    top = matrix.max() if matrix.size else 0
    for (i, j), n in np.ndenumerate(matrix):
        colour = "white" if top and n > top / 2 else "black"
        ax.text(j, i, str(n), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(cols), predicted)
    ax.set_yticks(range(rows), true)
    ax.set_xlabel("predicted (the run's classes)")
    ax.set_ylabel("true (the set's classes)")
    ax.set_title("Confusion matrix")
    save_current(path)
