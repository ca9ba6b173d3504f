"""A sweep's two figures: final error_rate against each swept option (sweep_error.png) and
every point's learning curve, mean over seeds (sweep_curves.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from countnet.tables import read_csv
from countnet_classify.experiments.sweep.checks import finished
from countnet_classify.experiments.sweep.spec import Point, Sweep, format_value
from countnet_classify.plots import save_current

ERROR_PNG = "sweep_error.png"
CURVES_PNG = "sweep_curves.png"
LOG_SCALE = ("lr", "wd")  # swept over decades: plotted on a log axis


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_error(sweep: Sweep, summary: list[dict], path: Path) -> None:
    """Final error_rate (mean ± std bars) against each swept option: one panel per option;
    one-at-a-time shows the others at the baseline, a grid one line per combination of
    the others."""
    keys = sweep.keys
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    baseline = {k: v[0] for k, v in sweep.params}
    for ax, key in zip(axes[0], keys, strict=True):
        values = list(dict(sweep.params)[key])
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[dict]] = {}
        for r in summary:
            if not sweep.grid and any(r[o] != baseline[o] for o in others):
                continue
            groups.setdefault(tuple(r[o] for o in others), []).append(r)
        numeric = _numeric(values)
        for combo, rs in groups.items():
            rs = sorted(rs, key=lambda r: values.index(r[key]))
            xs = [r[key] if numeric else values.index(r[key]) for r in rs]
            ys = [r["final_error_rate_mean"] for r in rs]
            es = [r["final_error_rate_std"] or 0.0 for r in rs]
            label = ", ".join(f"{o}={format_value(v)}" for o, v in zip(others, combo, strict=True))
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label=label or None)
        if numeric:
            # a 0 (wd=0) has no place on a log axis: linear then
            positive = all(v > 0 for v in values)
            if positive and (key in LOG_SCALE or max(values) / min(values) >= 20):
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(values)), [format_value(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel("final error_rate (mean ± std)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if sweep.grid and len(groups) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(sweep.out).name}: {sweep.seeds} seed(s) per point", fontsize=10)
    save_current(path)


def plot_curves(sweep: Sweep, path: Path) -> None:
    """Validation error_rate per epoch for every point: mean over its seeds, band ± std."""
    by_point: dict[Point, list[list[float]]] = {}
    for point, _, spec in sweep.runs():  # once: each finished run's curve, by point
        if finished(spec):
            rows = read_csv(spec.run_dir / "metrics.csv")
            by_point.setdefault(point, []).append([float(m["error_rate"]) for m in rows])
    plt.figure(figsize=(7, 4.2))
    for point in sweep.points():
        curves = by_point.get(point)
        if not curves:
            continue
        n = min(len(c) for c in curves)
        arr = np.array([c[:n] for c in curves])
        mean, std = arr.mean(axis=0), arr.std(axis=0, ddof=1) if len(arr) > 1 else 0 * arr[0]
        epochs = np.arange(1, n + 1)
        (line,) = plt.plot(epochs, mean, marker=".", label=point.label)
        plt.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
    plt.xlabel("epoch")
    plt.ylabel("validation error_rate")
    plt.ylim(bottom=0)
    plt.grid(alpha=0.3)
    plt.legend(fontsize=7)
    plt.title(f"{Path(sweep.out).name}: mean over seeds, band = ± std", fontsize=10)
    save_current(path)
