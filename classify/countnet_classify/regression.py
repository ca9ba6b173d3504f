"""``--task regression``: the count as a number instead of a class — the network's pieces.

The class folders name the counts (0, 1, 2, ...; countnet_classify.labels); the network has
one output, standardised by the training counts (``Rescale``: the head learns
(count - mean) / std, so a network trained from scratch starts at the mean count instead of
at 0 while its output is still a count — in the weights, in `countnet predict` and in an
ONNX export alike). The per-epoch table keeps the blog's columns — error_rate is 1 - the
accuracy of the rounded prediction, so it reads like a classifier's — and adds MAE and RMSE.
After training, countnet_classify.evaluate predicts the validation and test/ images.
"""

from __future__ import annotations

import torch
from torch import nn

from countnet.errors import CountnetError
from countnet_classify.spec import DEFAULT_LOSS

HUBER_DELTA = 1.0  # counts: quadratic within one circle of the truth, linear beyond


class Rescale(nn.Module):
    """The head's last step: its one output z as a count, z * std + mean, shape (batch,).

    In float32 whatever autocast computed z in: bf16 holds 47 only to a quarter."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].float() * self.std + self.mean


def attach_rescale(model: nn.Module, arch: str, mean: float = 0.0, std: float = 1.0) -> nn.Module:
    """Append ``Rescale`` to ``model``'s head (LeNet's classifier; the head of fastai's
    body + head model), where fastai's splitter puts it with the head's parameters."""
    head = model.classifier if arch == "lenet" else model[1]
    head.append(Rescale(mean, std))
    return model


def loss_func(name: str | None):
    """fastai's flattened loss for ``--loss`` (None: DEFAULT_LOSS), on counts."""
    from fastai.losses import BaseLoss, L1LossFlat, MSELossFlat

    name = name or DEFAULT_LOSS
    if name == "l1":
        return L1LossFlat()
    if name == "mse":
        return MSELossFlat()
    if name == "huber":
        return BaseLoss(nn.HuberLoss, delta=HUBER_DELTA, floatify=True, flatten=True, is_2d=False)
    raise CountnetError(f"unknown --loss {name!r}")


def rounded(pred: torch.Tensor) -> torch.Tensor:
    """The count a prediction stands for: the nearest whole number, never below 0."""
    return torch.floor(pred.float() + 0.5).clamp_min(0)


def accuracy(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Share of images whose rounded prediction is the count."""
    return (rounded(inp.flatten()) == targ.flatten().float()).float().mean()


def error_rate(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """1 - ``accuracy``: the blog table's column, comparable with a classifier's."""
    return 1 - accuracy(inp, targ)


def mae(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, in counts."""
    return (inp.flatten().float() - targ.flatten().float()).abs().mean()


def _root_mean_square(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (inp.flatten().float() - targ.flatten().float()).pow(2).mean().sqrt()


def metrics() -> list:
    """The per-epoch metrics, named as MetricsTable's columns. RMSE over the whole
    validation set (AccumMetric), not a mean of per-batch roots."""
    from fastai.metrics import AccumMetric

    return [error_rate, accuracy, mae, AccumMetric(_root_mean_square, name="rmse")]
