"""bf16 weight gradients of tiny convolutions on the CPU, as one matrix product.

oneDNN's bf16 weight-gradient kernel is slow for a convolution whose output has 4 or
fewer positions (ResNet's last stage at 64 px: 2x2): one im2col matrix product computes
the same sums faster, while larger outputs and fp32 favour oneDNN (bench/conv_weight_grad.py;
BENCHMARKS.md, "Training throughput"). ``TinyConvGrads`` swaps such layers, for the
duration of a fit, to ``GemmGradConv2d``: the same parameters and forward, the input
gradient from PyTorch's own kernel, and the weight gradient from one GEMM.
``devices.uses_gemm_grads`` says where countnet uses it: bf16 on CPUs with native bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from torch import nn

#: Outputs with at most this many positions get their weight gradient from a GEMM.
MAX_POSITIONS = 4


def _weight_grad(x: torch.Tensor, go: torch.Tensor, shape, stride, padding) -> torch.Tensor:
    """dL/dW of a dense 2-d convolution: im2col of ``x`` (NHWC) against ``go``."""
    co, ci, kh, kw = shape
    n, _, ho, wo = go.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))
    cols = torch.cat(
        [
            xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ],
        dim=3,
    ).reshape(n * ho * wo, kh * kw * ci)
    g = go.permute(0, 2, 3, 1).reshape(n * ho * wo, co)
    # (co, kh, kw, ci) memory read as (co, ci, kh, kw): a channels_last weight gradient.
    return (g.t() @ cols).view(co, kh, kw, ci).permute(0, 3, 1, 2)


class _GemmGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, go):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(
                go, x, weight, None, ctx.stride, ctx.padding, [1, 1], False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(x, go, weight.shape, ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = go.sum((0, 2, 3))
        return gx, gw, gb, None, None


class GemmGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose bf16 CPU training step takes the weight gradient from a GEMM
    when the output is tiny; everything else (inference, fp32, CUDA) is nn.Conv2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.dtype in (torch.float32, torch.bfloat16)  # what autocast would cast
            and self.weight.dtype == torch.float32
            and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and self._positions(x) <= MAX_POSITIONS
        ):
            return super().forward(x)
        # What autocast does for a convolution, by hand: it cannot see inside a Function.
        dt = torch.bfloat16
        bias = None if self.bias is None else self.bias.to(dt)
        with torch.autocast("cpu", enabled=False):
            return _GemmGradConv.apply(
                x.to(dt), self.weight.to(dt), bias, list(self.stride), list(self.padding)
            )

    def _positions(self, x: torch.Tensor) -> int:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return ((x.shape[2] + 2 * ph - kh) // sh + 1) * ((x.shape[3] + 2 * pw - kw) // sw + 1)


def _swappable(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def swap_convs(model: nn.Module) -> list[nn.Module]:
    """Make ``model``'s plain dense convolutions ``GemmGradConv2d`` in place (parameters,
    buffers and state dict untouched); returns them for ``restore_convs``."""
    # Already swapped ones too: a fit that raised never reached its after_fit.
    swapped = [m for m in model.modules() if _swappable(m) or type(m) is GemmGradConv2d]
    for m in swapped:
        m.__class__ = GemmGradConv2d
    return swapped


def restore_convs(swapped: list[nn.Module]) -> None:
    for m in swapped:
        m.__class__ = nn.Conv2d


class TinyConvGrads(Callback):
    """During each fit, tiny convolutions of a CPU bf16 model take ``GemmGradConv2d``'s
    weight gradients; after it the model is plain torchvision/fastai modules again (after a
    fit that raised, at the end of the next one)."""

    order = 12

    def before_fit(self):
        self._swapped = swap_convs(self.learn.model)

    def after_fit(self):
        restore_convs(getattr(self, "_swapped", []))
        self._swapped = []
