"""Caffe's learning-rate policies (seeds 000/001) as fastai schedule functions of training
progress ``pos`` in [0, 1], applied by fastai's ParamScheduler."""

from __future__ import annotations

import math
from collections.abc import Callable


def sched_inv(base_lr: float, gamma: float, power: float, total_iters: int) -> Callable:
    """Caffe "inv": base_lr * (1 + gamma * iter) ^ (-power)."""

    def f(pos: float) -> float:
        return base_lr * (1.0 + gamma * pos * total_iters) ** (-power)

    return f


def sched_step(base_lr: float, gamma: float, stepsize: int, total_iters: int) -> Callable:
    """Caffe "step": base_lr * gamma ^ floor(iter / stepsize)."""

    def f(pos: float) -> float:
        return base_lr * gamma ** math.floor(pos * total_iters / stepsize)

    return f


def caffe_scheduler(
    policy: str,
    base_lr: float,
    total_iters: int,
    *,
    gamma: float | None,
    power: float,
    stepsize: int | None,
):
    """A fastai ParamScheduler for ``policy`` ("inv" or "step"), Caffe's defaults filled in:
    inv gamma 1e-4 power 0.75 (the LeNet solver); step gamma 0.1 every third of training."""
    from fastai.callback.schedule import ParamScheduler

    if policy == "inv":
        f = sched_inv(base_lr, 1e-4 if gamma is None else gamma, power, total_iters)
    elif policy == "step":
        step = stepsize or max(1, total_iters // 3)
        f = sched_step(base_lr, 0.1 if gamma is None else gamma, step, total_iters)
    else:
        raise ValueError(policy)
    return ParamScheduler({"lr": f})
