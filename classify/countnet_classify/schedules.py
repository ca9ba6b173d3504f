"""Caffe's learning-rate policies (seeds 000/001) as functions of the iteration, driven by a
fastai ParamScheduler that counts iterations exactly (epoch * batches per epoch + batch)."""

from __future__ import annotations

from collections.abc import Callable

from fastai.callback.schedule import ParamScheduler


def sched_inv(base_lr: float, gamma: float, power: float) -> Callable[[int], float]:
    """Caffe "inv": base_lr * (1 + gamma * iter) ^ (-power)."""

    def f(it: int) -> float:
        return base_lr * (1.0 + gamma * it) ** (-power)

    return f


def sched_step(base_lr: float, gamma: float, stepsize: int) -> Callable[[int], float]:
    """Caffe "step": base_lr * gamma ^ floor(iter / stepsize)."""

    def f(it: int) -> float:
        return base_lr * gamma ** (it // stepsize)

    return f


class IterScheduler(ParamScheduler):
    """fastai's ParamScheduler, its schedules called with the iteration number instead of
    the fraction of training done: a float fraction times the iteration count lands a
    step's drop one iteration late (99.99999 floors to 99), and the fraction restarts at the
    resumed epoch while the iteration is known exactly (``epoch * n_iter + iter``)."""

    def before_batch(self):
        self._update_val(self.epoch * self.n_iter + self.iter)


def caffe_scheduler(
    policy: str,
    base_lr: float,
    total_iters: int,
    *,
    gamma: float | None,
    power: float,
    stepsize: int | None,
) -> IterScheduler:
    """The scheduler for ``policy`` ("inv" or "step"), Caffe's defaults filled in: inv gamma
    1e-4 power 0.75 (the LeNet solver); step gamma 0.1 every third of training."""
    if policy == "inv":
        f = sched_inv(base_lr, 1e-4 if gamma is None else gamma, power)
    elif policy == "step":
        step = stepsize or max(1, total_iters // 3)
        f = sched_step(base_lr, 0.1 if gamma is None else gamma, step)
    else:
        raise ValueError(policy)
    return IterScheduler({"lr": f})
