"""The run folder's figures (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_current(path: Path) -> None:
    fig = plt.gcf()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close("all")


def ema(values: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """fastai's debiased exponential moving average (its smoothed train_loss)."""
    out, avg = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def plot_losses(losses: list[dict], metrics: list[dict], path: Path) -> None:
    """Learning curves: every batch's training loss, raw and smoothed, and the validation
    loss at each epoch's end."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        it = np.array([int(r["iter"]) for r in losses])
        y = np.array([float(r["loss"]) for r in losses])
        ax.plot(it, y, color="tab:blue", alpha=0.3, lw=0.8, label="train (batch)")
        ax.plot(it, ema(y), color="tab:blue", lw=1.8, label="train (smoothed)")
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
