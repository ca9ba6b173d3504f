"""The learning rate of a run: a number given with --lr, or a suggestion of fastai's LR
finder (``--lr auto`` or a rule's name), with lr_find.png marking every suggestion."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from fastai.callback.schedule import minimum, slide, steep, valley

from countnet.errors import CountnetError
from countnet_classify import plots
from countnet_classify.spec import RunSpec

AUTO_SCRATCH_RULE = "slide"
AUTO_FALLBACK = ("valley", "minimum")  # when the sweep was too short for the rule above


def lr_rule(spec: RunSpec) -> str | None:
    """The LR finder suggestion ``spec.lr`` asks for, or None for a fixed number. ``auto``
    is valley when fine-tuning (fastai's default) and AUTO_SCRATCH_RULE from scratch, the
    rule that won on the default sets and a small real set (BENCHMARKS.md)."""
    if not isinstance(spec.lr, str):
        return None
    if spec.lr == "auto":
        return "valley" if spec.uses_pretrained else AUTO_SCRATCH_RULE
    return spec.lr


def find_lr(learn, spec: RunSpec, run_dir: Path, quiet: bool) -> dict[str, Any]:
    """Run fastai's LR finder, save lr_find.png with every suggestion marked; the learning
    rate used, where it came from and every suggestion, as config.yaml records them."""
    rule = lr_rule(spec)
    if spec.lr_find_iters == 0:
        if rule:
            raise CountnetError(f"--lr {spec.lr} needs the LR finder: set --lr-find-iters > 0")
        return {"used": float(spec.lr), "source": "--lr (LR finder skipped)", "suggestions": {}}
    with contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(learn.no_bar())
        learn.lr_find(num_it=spec.lr_find_iters, suggest_funcs=None, show_plot=False)
    suggestions = _suggestions(learn.recorder, spec.lr_find_iters)
    plots.save_current(run_dir / "lr_find.png")
    if not rule:
        return {"used": float(spec.lr), "source": "--lr", "suggestions": suggestions}
    return _pick(spec, rule, suggestions, len(learn.recorder.lrs))


def _suggestions(rec, n: int) -> dict[str, float]:
    """fastai's own slicing of the sweep, but each suggestion on its own: a short or early-
    diverging sweep may not support all four, and one failing must not sink the others.
    Plots the sweep with every suggestion marked."""
    lrs, losses = torch.tensor(rec.lrs[n // 10 : -5]), torch.tensor(rec.losses[n // 10 : -5])
    finite = torch.isfinite(losses)
    if not finite.all():
        cut = int((~finite).nonzero()[0])
        lrs, losses = lrs[:cut], losses[:cut]
    suggestions, points = {}, []
    for func in (minimum, steep, valley, slide):
        try:
            lr, point = func(lrs, losses, n)
        except (IndexError, RuntimeError, ValueError):
            continue
        if lr == lr and lr > 0:  # not NaN
            suggestions[func.__name__] = float(lr)
            points.append(point)
    rec.plot_lr_find(suggestions=points, nms=list(suggestions))
    return suggestions


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
