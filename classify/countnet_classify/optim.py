"""The optimizers: fastai's Adam, stepped by PyTorch's fused AdamW kernel (the default), and
the seeds' SGD with momentum (``--opt sgd``).

fastai's ``Adam`` runs its update as Python callbacks over every parameter tensor, five or
six small ops each: on ResNet-34 that is ~80 ms a step on 2 CPU cores, 15% of a bf16
training step (BENCHMARKS.md). ``FusedAdam`` keeps fastai's arithmetic and defaults —
decoupled weight decay (``p *= 1 - lr*wd``, skipped for BatchNorm and bias parameters as the
Learner asks through ``do_wd``), dampened first moment, debiasing, eps added outside the
square root, mom 0.9, sqr_mom 0.99, eps 1e-5, wd 0.01 — and its hyper-parameter names, so
fastai's schedulers (one-cycle's LR and momentum), ``freeze``/``unfreeze`` and
discriminative LRs drive it unchanged, but does the update in one fused kernel per step
(``torch.optim.AdamW(fused=True)``, CPU and CUDA) and the weight decay in one foreach op per
parameter group. One difference: gradients are reset to None, not zeroed, so a parameter
frozen after it has trained is no longer moved by its old momentum (countnet never freezes
after training: fine_tune freezes first).

``FusedSGD`` is Caffe's solver (../shared/seeds/001) and PyTorch's SGD: ``v = mom*v + g +
wd*p; p -= lr*v``, weight decay as L2 on the gradient (again not on BatchNorm and biases),
i.e. fastai's ``SGD(decouple_wd=False)``, stepped by ``torch.optim.SGD``'s foreach kernels.
"""

from __future__ import annotations

import torch
from fastai.optimizer import OptimWrapper

from countnet.errors import CountnetError

# PyTorch param-group keys -> fastai hyper-parameter names. Weight decay is kept under its
# own key ("wd"), which torch.optim ignores: applying it here, per parameter, is how
# fastai's do_wd flag (no decay on BatchNorm and biases) is honoured.
_HP_MAP = {"betas__0": "mom", "betas__1": "sqr_mom", "wd": "wd"}


def fused_supported(params: list[torch.Tensor]) -> bool:
    """PyTorch's fused AdamW runs on CPU, CUDA and MPS floating-point tensors."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda", "mps") for p in params)


class _DecayingWrapper(OptimWrapper):
    """An OptimWrapper whose groups keep fastai's weight decay under "wd", applied by the
    subclass to the parameters fastai's ``do_wd`` leaves it on."""

    def _decayed(self, pg: dict) -> list[torch.Tensor]:
        if not pg["wd"]:
            return []
        return [p for p in pg["params"] if p.grad is not None and self.state[p].get("do_wd", True)]


def _with_wd(make, wd: float):
    """``make(groups, **kwargs)`` with fastai's weight decay stored in every group."""

    def build(groups, **kwargs):
        groups = list(groups)
        if not isinstance(groups[0], dict):  # a flat list of tensors: one group
            groups = [{"params": groups}]
        for g in groups:  # before the wrapper reads the groups' keys as hyper-parameters
            g["wd"] = wd
        return make(groups, **kwargs)

    return build


class FusedAdam(_DecayingWrapper):
    """fastai's ``Adam(lr, mom, sqr_mom, eps, wd)`` with ``decouple_wd=True`` (its default),
    updated by ``torch.optim.AdamW(fused=True)``. Use as a Learner's ``opt_func``."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        mom: float = 0.9,
        sqr_mom: float = 0.99,
        eps: float = 1e-5,
        wd: float = 0.01,
    ):
        def adamw(groups, **kwargs):
            flat = [p for g in groups for p in g["params"]]
            return torch.optim.AdamW(groups, fused=fused_supported(flat) or None, **kwargs)

        super().__init__(
            params,
            opt=_with_wd(adamw, wd),
            hp_map=_HP_MAP,
            lr=lr,
            betas=(mom, sqr_mom),
            eps=eps,
            weight_decay=0.0,
        )

    def load_state_dict(self, sd: dict) -> None:
        """Also gives each loaded moment its parameter's memory layout: the fused CPU kernel
        walks raw memory, so NCHW moments beside channels_last weights (a checkpoint from
        a host or version that laid them out otherwise) would pair up the wrong elements."""
        self.opt.load_state_dict(sd)
        for p, st in self.opt.state.items():
            for k, t in st.items():
                if torch.is_tensor(t) and t.shape == p.shape and t.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=t.dtype).copy_(t)

    @torch.no_grad()
    def step(self, closure=None):
        for pg in self.opt.param_groups:
            if decayed := self._decayed(pg):
                torch._foreach_mul_(decayed, 1 - pg["lr"] * pg["wd"])
        return self.opt.step(closure)


class FusedSGD(_DecayingWrapper):
    """fastai's ``SGD(lr, mom, wd, decouple_wd=False)`` — Caffe's and PyTorch's SGD with
    momentum and L2 weight decay — updated by ``torch.optim.SGD`` (foreach). Defaults are the
    seeds' LeNet solver: momentum 0.9, weight decay 5e-4."""

    def __init__(self, params, lr: float = 1e-2, mom: float = 0.9, wd: float = 5e-4):
        super().__init__(
            params,
            opt=_with_wd(torch.optim.SGD, wd),
            hp_map={"momentum": "mom", "wd": "wd"},
            lr=lr,
            momentum=mom,
            weight_decay=0.0,
        )

    @torch.no_grad()
    def step(self, closure=None):
        for pg in self.opt.param_groups:
            if decayed := self._decayed(pg):
                torch._foreach_add_([p.grad for p in decayed], decayed, alpha=pg["wd"])
        return self.opt.step(closure)


OPTIMIZERS = {"adam": FusedAdam, "sgd": FusedSGD}


def opt_func(name: str = "adam", momentum: float | None = None, wd: float | None = None):
    """The Learner's ``opt_func`` for ``--opt NAME [--momentum M] [--wd WD]``; None keeps
    the optimizer's default (Adam: fastai's mom 0.9, wd 0.01; SGD: 0.9, 5e-4)."""
    import functools

    if name not in OPTIMIZERS:
        raise CountnetError(f"unknown --opt {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kwargs = {k: v for k, v in (("mom", momentum), ("wd", wd)) if v is not None}
    return functools.partial(OPTIMIZERS[name], **kwargs) if kwargs else OPTIMIZERS[name]


def from_fastai_state(fastai_sd: dict, opt: FusedAdam) -> dict:
    """A checkpoint's fastai ``Adam`` state (countnet before FusedAdam) as ``opt``'s
    state dict, so a run interrupted under the old optimizer resumes with its moments."""
    sd = opt.state_dict()
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if len(fastai_sd["state"]) != n_params:
        raise CountnetError(
            f"the checkpoint's optimizer holds {len(fastai_sd['state'])} parameters, the model "
            f"{n_params}: not this run's checkpoint; start over with --force"
        )
    sd["state"] = {
        i: {
            "step": torch.tensor(float(s["step"])),
            "exp_avg": s["grad_avg"],
            "exp_avg_sq": s["sqr_avg"],
        }
        for i, s in enumerate(fastai_sd["state"])
        if "grad_avg" in s
    }
    return sd


def describe(opt_func, momentum_cycled: bool = False) -> dict:
    """What config.yaml records of a Learner's optimizer: its name and the hypers no schedule
    changes (the phases record the learning rate). ``momentum_cycled``: one-cycle drives the
    momentum (0.95 -> 0.85 -> 0.95), so that is recorded instead of the optimizer's default."""
    import inspect

    fn = getattr(opt_func, "func", opt_func)  # a functools.partial names its function
    try:
        params = inspect.signature(opt_func).parameters.values()
    except (TypeError, ValueError):  # an already-built optimizer, which fastai also takes
        return {"name": type(opt_func).__name__}
    hypers = {
        p.name: p.default
        for p in params
        if isinstance(p.default, int | float) and not isinstance(p.default, bool)
        and p.name != "lr"
    }  # fmt: skip
    if momentum_cycled and "mom" in hypers:
        hypers["mom"] = "one-cycle: 0.95 -> 0.85 -> 0.95"
    return {"name": getattr(fn, "__name__", type(fn).__name__), **hypers}
