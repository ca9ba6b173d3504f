"""What a model costs: parameters, multiply-accumulates, weights on disk, latency and
throughput — the seed documents' model size/latency tables, for `countnet cost` and every
run folder's cost.json.

Conventions:
- **MACs** are multiply-accumulates per image in one forward pass, counted by PyTorch's
  ``FlopCounterMode`` (which counts a multiply-add as 2 FLOPs) and halved. That is the
  quantity torchvision publishes as "GFLOPS" (ResNet-34 at 224 px: 3.66 G); elementwise
  work (BatchNorm, ReLU, pooling) is not counted, as in torchvision's and fvcore's figures.
- **Weights** are the bytes of the safetensors file countnet exports for the model.
- **Latency** is the median time of a forward pass at batch 1, **throughput** the median
  images/s at a larger batch, both in fp32 eval mode (what ``countnet predict`` runs), on the
  given device, each after warm-up passes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from countnet import tables
from countnet.errors import CountnetError
from countnet_classify.devices import resolve_device
from countnet_classify.model import batchnorms, build_model, check_input_size
from countnet_classify.spec import ARCHS, HEADS, SCRATCH_ONLY

COST_JSON = "cost.json"  # in every run folder: the trained model's row
COLUMNS = (
    "arch",
    "size",
    "classes",
    "head",
    "params",
    "trainable",
    "trainable_frozen",
    "macs",
    "weights_bytes",
    "latency_ms",
    "throughput_ips",
    "throughput_bs",
    "device",
    "timing_error",
)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable ones)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def count_macs(model: nn.Module, size: int, device: torch.device | str = "cpu") -> int:
    """Multiply-accumulates of one forward pass of one ``size`` x ``size`` RGB image."""
    check_input_size(model, size, device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops() // 2


def frozen_trainable(model: nn.Module) -> int | None:
    """Parameters fine_tune's frozen phase trains: the head and the body's BatchNorm layers
    (fastai's freeze with train_bn). None for a model without fastai's body/head split."""
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        return None
    body, head = model
    bn = batchnorms(body)
    return sum(p.numel() for p in head.parameters()) + sum(
        p.numel() for m in bn for p in m.parameters()
    )


def weights_bytes(model: nn.Module) -> int:
    """Size of the model's exported weights (safetensors, as the run folder stores them)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return len(save(state, metadata={"format": "pt"}))


def _median_seconds(fn: Callable[[], None], device: torch.device, warm: int, repeats: int):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timing(
    model: nn.Module,
    size: int,
    device: torch.device,
    *,
    batch: int = 64,
    warm: int = 3,
    repeats: int = 10,
) -> dict[str, float]:
    """Median latency at batch 1 (ms) and throughput at ``batch`` (images/s), fp32 eval."""
    model = model.to(device).eval()
    # constant inputs: convolutions take as long on any values, and no RNG stream moves
    one = torch.full((1, 3, size, size), 0.5, device=device)
    many = torch.full((batch, 3, size, size), 0.5, device=device)
    with torch.inference_mode():
        lat = _median_seconds(lambda: model(one), device, warm, repeats)
        thr = _median_seconds(lambda: model(many), device, 2, max(3, repeats // 3))
    return {"latency_ms": lat * 1e3, "throughput_ips": batch / thr, "throughput_bs": batch}


def model_cost(
    arch: str,
    *,
    size: int = 224,
    classes: int = 1000,
    head: str = "linear",
    head_dropout: float | None = None,
    device: torch.device | str = "cpu",
    timed: bool = True,
    batch: int = 64,
) -> dict:
    """One row of the cost table for the network countnet trains for ``arch`` (the body
    plus the ``head`` on ``classes`` outputs), freshly built in NCHW memory as ``countnet
    predict`` builds it: a run's trained weights change none of these numbers. Without
    ``timed``, latency and throughput are left out (None). A timing that fails (a GPU out
    of memory, say) is recorded in ``timing_error`` instead of raised: the counts stand."""
    _check_arch(arch)
    if head not in HEADS:
        raise CountnetError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if size < 8 or classes < 1:
        raise CountnetError(f"--size must be >= 8 and --classes >= 1 (got {size}, {classes})")
    device = torch.device(device)
    model = build_model(arch, classes, head, head_dropout).to(device).eval()
    total, trainable = count_params(model)
    row = {
        "arch": arch,
        "size": size,
        "classes": classes,
        "head": "LeNet's own" if arch == "lenet" else head,
        "params": total,
        "trainable": trainable,
        # only a run from ImageNet weights has a frozen phase
        "trainable_frozen": None if arch in SCRATCH_ONLY else frozen_trainable(model),
        "macs": count_macs(model, size, device),
        "weights_bytes": weights_bytes(model),
        "latency_ms": None,
        "throughput_ips": None,
        "throughput_bs": None,
        "device": str(device),
        "timing_error": None,
    }
    if timed:
        row.update(_timing_or_error(model, size, device, batch))
    return row


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise CountnetError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def _timing_or_error(model: nn.Module, size: int, device: torch.device, batch: int) -> dict:
    try:
        return timing(model, size, device, batch=batch)
    except RuntimeError as e:  # torch.OutOfMemoryError is one
        return {"timing_error": str(e).splitlines()[0]}


def format_row(row: dict) -> list[str]:
    """A cost row as a person reads it: M parameters, G MACs, MB, ms, images/s."""

    def num(v, fmt):
        return "—" if v is None else format(v, fmt)

    return [
        row["arch"],
        str(row["size"]),
        str(row["classes"]),
        row["head"],
        f"{row['params'] / 1e6:.2f} M",
        f"{row['trainable'] / 1e6:.2f} M"
        + (
            f" ({row['trainable_frozen'] / 1e6:.2f} M frozen)"
            if row.get("trainable_frozen") is not None
            else ""
        ),
        f"{row['macs'] / 1e9:.3f} G",
        f"{row['weights_bytes'] / 2**20:.1f} MiB",
        num(row["latency_ms"], ".1f") + (" ms" if row["latency_ms"] is not None else "")
        if not row.get("timing_error")
        else "failed",
        num(row["throughput_ips"], ".0f")
        + (f" (bs {row['throughput_bs']})" if row["throughput_bs"] else ""),
        row["device"],
    ]


DISPLAY_COLUMNS = (
    *COLUMNS[:6],  # arch .. trainable, as in the CSV
    "MACs/image",
    "weights",
    "latency (bs 1)",
    "images/s",
    "device",
)


def cost_table(
    archs: list[str] | tuple[str, ...] = ARCHS,
    *,
    size: int = 224,
    classes: int = 1000,
    head: str = "linear",
    device: str = "auto",
    timed: bool = True,
) -> list[dict]:
    """`countnet cost`: one row per architecture. Every architecture is counted (which also
    finds a --size too small for one) before any is timed."""
    for arch in archs:
        _check_arch(arch)
    dev = resolve_device(device)
    archs = list(dict.fromkeys(archs))
    rows = [
        model_cost(a, size=size, classes=classes, head=head, device=dev, timed=False) for a in archs
    ]
    if timed:  # the counted rows get their timings; nothing is counted twice
        for row in rows:
            model = build_model(row["arch"], classes, head).to(dev).eval()
            row.update(_timing_or_error(model, size, dev, 64))
    return rows


def write_csv(rows: list[dict], path) -> None:
    """The table with exact numbers (params, MACs, bytes), written atomically."""
    tables.write_csv(path, COLUMNS, rows)
