"""The learning rate of a run: a number given with --lr (no LR finder), or a suggestion of
fastai's LR finder (``--lr auto`` or a rule's name), with lr_find.png marking every
suggestion and the one used."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import torch
from fastai.callback.core import Callback
from fastai.callback.schedule import minimum, slide, steep, valley

from countnet.errors import CountnetError
from countnet.progress import progress_bar
from countnet_classify import plots
from countnet_classify.plots import plt
from countnet_classify.spec import RunSpec, auto_lr

AUTO_FALLBACK = ("valley", "minimum")  # when the sweep was too short for --lr auto's rule


def find_lr(learn, spec: RunSpec, run_dir: Path, quiet: bool, say=print) -> dict[str, Any]:
    """The learning rate, where it came from and the LR finder's suggestions, as config.yaml
    records them. ``--lr VALUE`` is used as given and runs no finder (as fastai's
    ``fit_one_cycle(lr)``); ``--lr auto`` or a rule's name runs fastai's LR finder and
    saves lr_find.png: the sweep, every suggestion, and the one used marked apart."""
    rule, rate, why = auto_lr(spec) if spec.lr == "auto" else (spec.lr_rule, None, "")
    if rate is not None:  # --lr auto's fixed rate (a plain folder from scratch)
        return {"used": rate, "source": f"--lr auto ({why})", "suggestions": {}}
    if not rule:
        return {"used": float(spec.lr), "source": "--lr (no LR finder)", "suggestions": {}}
    if spec.lr_find_iters == 0:
        raise CountnetError(f"--lr {spec.lr} needs the LR finder: set --lr-find-iters > 0")
    steps = spec.lr_find_iters
    with _finder_display(learn, steps, quiet, say) as progress, learn.added_cbs(progress):
        learn.lr_find(num_it=steps, suggest_funcs=None, show_plot=False)
    suggestions, points = _suggestions(learn.recorder, steps)
    picked = _pick(spec, rule, suggestions, len(learn.recorder.lrs))
    _plot(learn.recorder, suggestions, points, picked["rule"])
    plots.save_current(run_dir / "lr_find.png")
    return picked


class _FinderProgress(Callback):
    """Reports the LR finder's steps to ``update(done, total)``."""

    order = 55  # after the Recorder, before the LRFinder stops the fit on its last step

    def __init__(self, update, total: int):
        self.update, self.total = update, total

    def after_batch(self):
        if self.training:
            self.update(min(self.train_iter, self.total), self.total)


@contextlib.contextmanager
def _finder_display(learn, steps: int, quiet: bool, say):
    """The LR finder's own progress: a bar named "LR finder" on a terminal (fastai's would
    read "Epoch 2/5", its epochs being the sweep's), else one line as it starts and one as
    it ends. Yields the callback that drives it."""
    bar = not quiet and sys.stderr.isatty()
    t0 = time.perf_counter()
    if not bar:
        say(f"LR finder: up to {steps} steps")
    with learn.no_bar(), progress_bar("LR finder", enabled=bar) as update:
        yield _FinderProgress(update, steps)
    if not bar:
        done = max(len(learn.recorder.lrs), 1)
        say(f"LR finder: done, {done} steps in {time.perf_counter() - t0:.1f} s")


def _suggestions(rec, n: int) -> tuple[dict[str, float], dict[str, tuple]]:
    """fastai's own slicing of the sweep, but each suggestion on its own: a short or early-
    diverging sweep may not support all four, and one failing must not sink the others.
    Returns {rule: lr} and {rule: its point on the plot}."""
    lrs, losses = torch.tensor(rec.lrs[n // 10 : -5]), torch.tensor(rec.losses[n // 10 : -5])
    finite = torch.isfinite(losses)
    if not finite.all():
        cut = int((~finite).nonzero()[0])
        lrs, losses = lrs[:cut], losses[:cut]
    suggestions, points = {}, {}
    for func in (minimum, steep, valley, slide):
        try:
            lr, point = func(lrs, losses, n)
        except (IndexError, RuntimeError, ValueError):
            continue
        if lr == lr and lr > 0:  # not NaN
            suggestions[func.__name__] = float(lr)
            points[func.__name__] = point
    return suggestions, points


def _plot(rec, suggestions: dict[str, float], points: dict[str, tuple], used: str) -> None:
    """fastai's LR finder plot with every suggestion, and a ring around the one used."""
    rec.plot_lr_find(suggestions=list(points.values()), nms=list(points))
    ax = plt.gca()
    x, y = points[used]
    ax.plot(
        x, y, "o", ms=16, mfc="none", mec="red", mew=2,
        label=f"used: {used} {suggestions[used]:.2e}",
    )  # fmt: skip
    ax.legend(loc="best")


def _pick(spec: RunSpec, rule: str, suggestions: dict[str, float], steps: int) -> dict[str, Any]:
    """The suggestion ``rule`` names; ``--lr auto`` falls back on the next rule when a short
    sweep (few batches) does not support it, and says so."""
    why = f" (--lr auto, {'fine-tuning' if spec.uses_pretrained else 'from scratch'})"
    if rule not in suggestions and spec.lr == "auto":
        fallback = next((r for r in AUTO_FALLBACK if r in suggestions), None)
        if fallback:
            why = f" (--lr auto: no {rule} suggestion from {steps} steps)"
            rule = fallback
    if rule not in suggestions:
        raise CountnetError(
            f"the LR finder's {steps} steps gave no {rule} suggestion: raise "
            "--lr-find-iters or pass --lr VALUE"
        )
    return {
        "used": suggestions[rule],
        "source": f"LR finder, {rule} suggestion" + (why if spec.lr == "auto" else ""),
        "rule": rule,
        "suggestions": suggestions,
    }
