"""Numeric precision and memory layout of training: ``--precision auto|fp32|bf16|fp16``.

auto picks bf16 autocast where the hardware computes bf16 natively (CUDA GPUs of compute
capability 8.0+, CPUs with AVX512-BF16 or AMX), fp16 on older GPUs, fp32 otherwise.
On CUDA fastai's MixedPrecision callback does the work; on the CPU, where fastai has none,
``CPUAutocast`` does, with ``TinyConvGrads`` (convgrad.py) for oneDNN's slow bf16
weight gradients of tiny convolutions. ``ChannelsLast`` keeps model and batches in NHWC
memory, which the oneDNN (CPU) and cuDNN kernels run faster with bf16/fp16
(``use_channels_last``, which also picks it for fp32 on x86 CPUs; measured:
bench/train_throughput.py).
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from fastai.callback.core import Callback

from countnet.errors import CountnetError
from countnet_classify.config import PRECISIONS
from countnet_classify.convgrad import TinyConvGrads


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (x86 AVX512-BF16 or AMX; Arm bf16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    words = set(flags.split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return bool(words & {"avx512_bf16", "amx_bf16"})


def cuda_has_native_bf16() -> bool:
    """Native, not emulated: pre-Ampere GPUs report bf16 support through emulation."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the argument
        return torch.cuda.get_device_capability()[0] >= 8


def resolve_precision(choice: str, device: torch.device) -> str:
    """The precision actually used for ``choice`` on ``device``."""
    if choice not in PRECISIONS:
        raise CountnetError(
            f"unknown --precision {choice!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if device.type == "cuda":
        if choice == "auto":
            return "bf16" if cuda_has_native_bf16() else "fp16"
        return choice
    if choice == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if choice == "fp16":
        raise CountnetError(
            "--precision fp16 needs a CUDA GPU (CPU autocast supports bf16): use bf16 or fp32"
        )
    return choice


def use_channels_last(precision: str, device: torch.device) -> bool:
    """NHWC memory with bf16/fp16 kernels everywhere (+6%, bench/train_throughput.py), and
    with fp32 on x86 CPUs, where oneDNN favours it: on a 2-core AVX2 EPYC it measured
    between -10% and +10% against NCHW, within that host's noise, and it is what the default
    workflow's measured runs used (BENCHMARKS.md). CUDA fp32 without tensor cores gains
    nothing from it, and other CPUs are unmeasured: those stay NCHW."""
    if precision != "fp32":
        return True
    return device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")


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


def uses_gemm_grads(precision: str, device: torch.device) -> bool:
    """Whether training at ``precision`` (resolved) on ``device`` takes ``TinyConvGrads``:
    bf16 on CPUs that compute it natively, where it was measured (BENCHMARKS.md)."""
    return precision == "bf16" and device.type == "cpu" and cpu_has_native_bf16()


def autocast_for(learn):
    """The autocast context ``learn``'s precision callbacks use during a batch."""
    import contextlib

    for cb in learn.cbs:
        if isinstance(cb, CPUAutocast):
            return torch.autocast("cpu", dtype=cb.dtype)
        if type(cb).__name__ == "MixedPrecision":
            dtype = torch.bfloat16 if "bf16" in str(cb.amp_mode).lower() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def apply_precision(learn, precision: str, device: torch.device, *, channels_last: bool) -> None:
    """Add the callbacks that run ``learn`` at ``precision`` (as resolved above)."""
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
