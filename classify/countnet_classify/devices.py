"""Where and how a run computes: the device (``--device auto|cpu|cuda``), numeric precision
(``--precision auto|fp32|bf16|fp16``) and memory layout.

auto picks bf16 autocast where the hardware computes bf16 natively (CUDA GPUs of compute
capability 8.0+, CPUs with AVX512-BF16 or AMX), fp16 on older GPUs, fp32 otherwise.
NHWC memory (``use_channels_last``) where the oneDNN (CPU) and cuDNN kernels run faster
with it (bench/train_throughput.py). The callbacks that apply them to a Learner are in
callbacks/precision.py.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from countnet.errors import CountnetError
from countnet_classify.spec import DEVICES, PRECISIONS


def resolve_device(choice: str) -> torch.device:
    """``--device``: auto is CUDA where there is one, else the CPU."""
    if choice not in DEVICES:
        raise CountnetError(f"unknown --device {choice!r}; choose one of {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise CountnetError("--device cuda: no CUDA device is available here; use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (x86 AVX512-BF16 or AMX; Arm bf16)."""
    return bf16_instructions() is not None


def bf16_instructions() -> str | None:
    """The CPU's bf16 dot-product instructions: "AMX", "AVX512-BF16", "Arm BF16", or None."""
    for probe, name in (("_is_amx_tile_supported", "AMX"),
                        ("_is_avx512_bf16_supported", "AVX512-BF16")):  # fmt: skip
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return name
        except RuntimeError:
            pass
    words = set(cpuinfo().split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "Arm BF16" if "bf16" in words else None
    return "AMX" if "amx_bf16" in words else "AVX512-BF16" if "avx512_bf16" in words else None


def cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_features() -> dict[str, str | bool]:
    """The host CPU as config.yaml records it: its model, the instructions that make its
    class (bf16 ones where it has them, else the vector set PyTorch's kernels use: AVX2,
    AVX512, ...) and whether it computes bf16 natively (precision auto's bf16 or fp32)."""
    bf16 = bf16_instructions()
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo().splitlines()
             if ln.startswith("model name")]  # fmt: skip
    return {
        "model": names[0] if names else platform.processor() or platform.machine(),
        "instructions": bf16 or torch.backends.cpu.get_cpu_capability(),
        "native_bf16": bf16 is not None,
    }


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
    """NHWC memory with bf16/fp16 kernels everywhere, and with fp32 on x86 CPUs, where oneDNN
    favours it (BENCHMARKS.md, training throughput). CUDA fp32 without tensor cores gains
    nothing from it, and other CPUs are unmeasured: those stay NCHW."""
    if precision != "fp32":
        return True
    return device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")


def uses_gemm_grads(precision: str, device: torch.device) -> bool:
    """Whether training at ``precision`` (resolved) on ``device`` takes ``TinyConvGrads``:
    bf16 on CPUs that compute it natively, where it was measured (BENCHMARKS.md)."""
    return precision == "bf16" and device.type == "cpu" and cpu_has_native_bf16()
