"""A convolution's weight gradient on the CPU: PyTorch's kernel (oneDNN) against the im2col
matrix product countnet's ``TinyConvGrads`` uses (convgrad.py), both measured here, per
layer shape and precision, and one whole training step of the model with and without it.

    uv run python bench/conv_weight_grad.py [--bs 64] [--repeats 3]

Layers: 3x3, stride 1, padding 1, C -> C channels on an S x S input (ResNet's stages),
channels_last, bs images. Each cell is ``oneDNN / GEMM`` in ms, median of interleaved
repeats; the ratio column is oneDNN's time over the GEMM's (> 1: the GEMM is faster).
The last row: ResNet-34 at 64 px, bs images, random tensors, a bare bf16-autocast training
loop (forward, backward, fused AdamW) with every convolution's weight gradient from oneDNN,
and with ``TinyConvGrads``'s choice (GEMM where the output has <= 4 positions). fp32 has no
such row: countnet leaves fp32 to oneDNN (a whole step measured the same either way).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from bare_step import make_step  # bench/bare_step.py, beside this script

from countnet_classify.convgrad import _weight_grad


def _ms(fn, n: int = 6) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def layer_table(dtype: torch.dtype, bs: int, repeats: int) -> None:
    print(f"weight gradient, {str(dtype).removeprefix('torch.')}, channels_last, bs {bs}: "
          "oneDNN / GEMM ms (ratio)")  # fmt: skip
    for c in (64, 128, 256, 512):
        cells = []
        for s in (1, 2, 4, 8, 16):
            cl = torch.channels_last
            x = torch.randn(bs, c, s, s, dtype=dtype).contiguous(memory_format=cl)
            w = torch.randn(c, c, 3, 3, dtype=dtype).contiguous(memory_format=cl)
            go = torch.randn(bs, c, s, s, dtype=dtype).contiguous(memory_format=cl)

            def onednn(go=go, x=x, w=w):
                return torch.ops.aten.convolution_backward(
                    go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                    [False, True, False],
                )  # fmt: skip

            def gemm(go=go, x=x, w=w):
                return _weight_grad(x, go, w.shape, (1, 1), (1, 1))

            a, b = [], []
            for _ in range(repeats):
                a.append(_ms(onednn))
                b.append(_ms(gemm))
            ma, mb = statistics.median(a), statistics.median(b)
            cells.append(f"S{s} {ma:6.2f}/{mb:6.2f} ({ma / mb:4.2f})")
        print(f"  C{c:<3}  " + "  ".join(cells))


def step_rates(bs: int, repeats: int) -> None:
    def rate(gemm_grads: bool) -> float:
        step = make_step("resnet34", 64, bs, bf16=True, gemm_grads=gemm_grads)
        return bs * 1e3 / _ms(step, 6)

    rates = {"oneDNN": [], "TinyConvGrads": []}
    for _ in range(repeats):
        rates["oneDNN"].append(rate(False))
        rates["TinyConvGrads"].append(rate(True))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"ResNet-34 training step, 64 px, bf16 autocast: oneDNN {med['oneDNN']:.1f}, "
        f"TinyConvGrads's choice {med['TinyConvGrads']:.1f} images/s "
        f"({med['TinyConvGrads'] / med['oneDNN']:.2f}x; repeats "
        + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(*rates.values(), strict=True))
        + ")"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads), torch {torch.__version__}"
    )
    for dtype in (torch.bfloat16, torch.float32):
        layer_table(dtype, args.bs, args.repeats)
    step_rates(args.bs, args.repeats)  # bf16 only: GemmGradConv2d leaves fp32 to oneDNN


if __name__ == "__main__":
    main()
