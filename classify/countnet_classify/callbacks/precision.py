"""Precision and memory layout applied to a Learner: on CUDA fastai's MixedPrecision; on
the CPU, where fastai has none, ``CPUAutocast``, with ``TinyConvGrads`` (convgrad.py) for
oneDNN's slow bf16 weight gradients of tiny convolutions; ``ChannelsLast`` for NHWC memory."""

from __future__ import annotations

import contextlib

import torch
from fastai.callback.core import Callback

from countnet_classify.convgrad import TinyConvGrads
from countnet_classify.devices import uses_gemm_grads


class CPUAutocast(Callback):
    """bf16 autocast for the forward pass and loss on the CPU (fastai's MixedPrecision is
    CUDA-only). bf16 has fp32's range, so no loss scaling is needed."""

    order = 10

    def __init__(self, dtype: torch.dtype = torch.bfloat16):
        self.dtype = dtype
        self._ctx = None

    def before_batch(self):
        self._ctx = torch.autocast("cpu", dtype=self.dtype)
        self._ctx.__enter__()

    def after_pred(self):
        # Losses and metrics in fp32, as fastai's MixedPrecision does.
        if isinstance(self.learn.pred, torch.Tensor) and self.learn.pred.is_floating_point():
            self.learn.pred = self.learn.pred.float()

    def after_loss(self):
        self._exit()

    def after_cancel_batch(self):
        self._exit()

    def after_batch(self):
        self._exit()

    def after_fit(self):
        self._exit()

    def _exit(self):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


class ChannelsLast(Callback):
    """Model and input batches in channels_last (NHWC) memory."""

    order = 11

    def before_fit(self):
        self.learn.model.to(memory_format=torch.channels_last)

    def before_batch(self):
        self.learn.xb = tuple(
            x.contiguous(memory_format=torch.channels_last)
            if isinstance(x, torch.Tensor) and x.dim() == 4
            else x
            for x in self.learn.xb
        )


def autocast_for(learn):
    """The autocast context ``learn``'s precision callbacks use during a batch."""
    for cb in learn.cbs:
        if isinstance(cb, CPUAutocast):
            return torch.autocast("cpu", dtype=cb.dtype)
        if type(cb).__name__ == "MixedPrecision":
            dtype = torch.bfloat16 if "bf16" in str(cb.amp_mode).lower() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def apply_precision(learn, precision: str, device: torch.device, *, channels_last: bool) -> None:
    """Add the callbacks that run ``learn`` at ``precision`` (devices.resolve_precision)."""
    if precision == "bf16":
        if device.type == "cuda":
            learn.to_bf16()
        else:
            learn.add_cb(CPUAutocast(torch.bfloat16))
    elif precision == "fp16":
        learn.to_fp16()
    if uses_gemm_grads(precision, device):
        learn.add_cb(TinyConvGrads())
    if channels_last:
        learn.add_cb(ChannelsLast())
