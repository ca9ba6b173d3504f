"""A bare training step on random tensors (no data loading, no fastai loop), shared by
bench/conv_weight_grad.py and bench/train_malloc.py: countnet's model in channels_last,
FusedAdam, optional bf16 autocast and TinyConvGrads's convolutions."""

from __future__ import annotations

from collections.abc import Callable

import torch

from countnet_classify.convgrad import swap_convs
from countnet_classify.model import build_model
from countnet_classify.optim import FusedAdam


def make_step(
    arch: str, size: int, bs: int, *, bf16: bool, gemm_grads: bool, seed: int = 0
) -> Callable[[], None]:
    """One training step of ``arch`` (6 classes) on a fixed random batch; the same initial
    weights for every call with the same ``seed``."""
    torch.manual_seed(seed)
    model = build_model(arch, 6).train().to(memory_format=torch.channels_last)
    if gemm_grads:
        swap_convs(model)
    opt = FusedAdam(list(model.parameters()), lr=1e-3)
    x = torch.randn(bs, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (bs,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step
