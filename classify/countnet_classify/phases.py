"""A run's training schedule as a list of phases, and fitting them — from the start or from
a checkpoint.

fine_tune (pretrained, one-cycle) is two phases, as fastai's ``Learner.fine_tune``: the body
frozen for ``freeze_epochs`` at ``slice(lr)``, then unfrozen at ``slice(lr/200, lr/2)``; from
scratch, one phase (one-cycle, or Caffe's inv/step). Resume is "find the phase and epoch,
load, continue": the checkpoint's model always; within a phase its optimizer and GradScaler
too; at a phase boundary a fresh optimizer state, as fastai's ``unfreeze()`` gives. The RNG
state is restored either way, so the resumed epochs draw the same batches and augmentations
as the uninterrupted run.

Not fastai's ``fine_tune`` itself: it runs both phases in one call and cannot start in the
second one, or partway through either; the phases here are its two ``fit_one_cycle`` calls
with its arguments, each resumable through fastai's ``start_epoch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle onto Learner)

from countnet_classify.callbacks.checkpoint import RestoreState


@dataclass(frozen=True)
class Phase:
    name: str  # what checkpoints record: "frozen", "unfrozen" or "main"
    epochs: int
    frozen: bool | None  # body frozen (BatchNorm still trains); None: no freezing at all
    # One rate, or fastai's slice as (first group, last group): (None, x) is slice(x), x/10
    # for the body's groups and x for the head
    lr: tuple[float | None, float] | float
    policy: str = "one-cycle"  # or Caffe's "inv" / "step"
    fit_kwargs: dict[str, Any] = field(default_factory=dict)  # fit_one_cycle's pct_start, div

    def lr_arg(self):
        """The LR as fastai takes it: a slice spreads (body, head) over the layer groups."""
        return slice(*self.lr) if isinstance(self.lr, tuple) else self.lr

    def group_lrs(self, n_groups: int) -> list[float]:
        """The peak LR of each parameter group, as fastai's Optimizer spreads the slice."""
        from fastai.torch_core import even_mults

        start, stop = self.lr
        if start:
            return [float(v) for v in even_mults(start, stop, n_groups)]
        return [stop / 10] * (n_groups - 1) + [float(stop)]

    def to_dict(self, n_groups: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "epochs": self.epochs,
            "frozen": self.frozen,
            "policy": self.policy,
            # per parameter group, body first, when they differ
            "lr": self.group_lrs(n_groups) if isinstance(self.lr, tuple) else float(self.lr),
            **self.fit_kwargs,
        }


def plan(
    *,
    policy: str,
    pretrained: bool,
    epochs: int,
    freeze_epochs: int,
    lr: float,
    momentum: float | None = None,
):
    """The phases a run trains through (see the module docstring). ``momentum``: held at
    that value (one-cycle otherwise cycles it 0.95 -> 0.85 -> 0.95; Caffe's policies leave
    the optimizer's own)."""
    moms = {"moms": [momentum] * 3} if momentum is not None else {}
    if policy == "one-cycle" and pretrained:
        half = lr / 2
        phases = [
            Phase(
                "frozen", freeze_epochs, True, (None, lr), fit_kwargs={"pct_start": 0.99, **moms}
            ),
            Phase(
                "unfrozen",
                epochs,
                False,
                (half / 100, half),
                fit_kwargs={"pct_start": 0.3, "div": 5.0, **moms},
            ),
        ]
        return [p for p in phases if p.epochs > 0]
    kwargs = moms if policy == "one-cycle" else {}
    return [Phase("main", epochs, False if pretrained else None, lr, policy, kwargs)]


def total_epochs(phases: list[Phase]) -> int:
    return sum(p.epochs for p in phases)


def describe(phases: list[Phase]) -> str:
    """One line for config.yaml and the report: "fine_tune: 1 frozen epoch(s) + 4 unfrozen"
    or "one-cycle for 5 epoch(s)"."""
    if phases[0].name in ("frozen", "unfrozen"):
        frozen, unfrozen = (
            sum(p.epochs for p in phases if p.name == n) for n in ("frozen", "unfrozen")
        )
        return f"fine_tune: {frozen} frozen epoch(s) + {unfrozen} unfrozen"
    (main,) = phases
    return f"{main.policy} for {main.epochs} epoch(s)"


def fit_phases(
    learn,
    phases: list[Phase],
    callbacks: Callable[[Phase, int], list],
    *,
    checkpoint: dict | None = None,
    schedule: Callable[[Phase, int], Any] | None = None,
) -> None:
    """Train ``learn`` through ``phases``, continuing after ``checkpoint`` when given.
    ``callbacks(phase, offset)`` gives each phase's callbacks (``offset``: epochs before it);
    ``schedule(phase, n_iter)`` the ParamScheduler of a non-one-cycle phase. Afterwards
    ``learn.model`` holds the final weights, also when every epoch was already done."""
    done = int(checkpoint["epoch"]) if checkpoint else 0
    if checkpoint:
        learn.model.load_state_dict(checkpoint["model"])
    offset = 0
    for phase in phases:
        end = offset + phase.epochs
        if done >= end:
            offset = end
            continue
        _enter(learn, phase)
        cbs = callbacks(phase, offset)
        if checkpoint:
            within = done > offset and checkpoint.get("phase") == phase.name
            cbs.append(RestoreState(checkpoint, optimizer=within))
            checkpoint = None  # only the first phase entered continues from it
        start = max(0, done - offset)
        if phase.policy == "one-cycle":
            learn.fit_one_cycle(
                phase.epochs, phase.lr_arg(), cbs=cbs, start_epoch=start, **phase.fit_kwargs
            )
        else:
            sched = schedule(phase, len(learn.dls.train))
            learn.fit(phase.epochs, lr=phase.lr_arg(), cbs=[sched, *cbs], start_epoch=start)
        offset = end


def _enter(learn, phase: Phase) -> None:
    """The phase's trainable parameters, with a fresh optimizer state (fastai's freeze()
    and unfreeze() clear it, which is what fine_tune's second phase starts from)."""
    if learn.opt is None:
        learn.create_opt()
    if phase.frozen is True:
        learn.freeze()
    elif phase.frozen is False:
        learn.unfreeze()
    else:
        learn.opt.clear_state()
