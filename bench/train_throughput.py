"""Training throughput: countnet's default path against the file path and the compute
ceiling, all in this run, on the same data, model and batch size (compare ratios).

    uv run python bench/train_throughput.py [--size 64] [--bs 64] [--arch resnet34]

(a) files: fastai's DataBlock over the PNG files (decode + resize every batch), fp32,
    fastai's own Adam — the path before countnet's fast path;
(b) countnet's default: the decoded uint8 cache, batch transforms on the device,
    --precision auto with channels_last, fastai's Adam on PyTorch's fused kernel
    (countnet_classify.optim.FusedAdam) — what `countnet train` does;
(c) ceiling: the same model and optimizer fed in-memory random tensors at (b)'s precision
    and layout (and (b)'s convolution gradients), in a bare PyTorch loop (no data loading,
    no fastai callbacks).

Extra rows say where (b)'s gain comes from: (b) with fastai's own Adam, (b) in plain
NCHW memory when (b) uses channels_last, and (b) with oneDNN's own weight gradients for
every convolution when (b) is bf16 on the CPU (no ``TinyConvGrads``, convgrad.py). Each
is timed over the same number of training steps after warm-up steps, repeated
(interleaved) --repeats times; the median is reported. The last line is
``ratios: b/a=... b/c=...``. On a GPU the same script runs
unchanged (--size 224 there).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.optimizer import Adam

from countnet.malloc import retain_freed_memory_for_training
from countnet_classify.cache import decoded_splits
from countnet_classify.callbacks.precision import apply_precision
from countnet_classify.convgrad import TinyConvGrads, swap_convs
from countnet_classify.data import make_cached_dataloaders, make_dataloaders
from countnet_classify.devices import resolve_precision, use_channels_last, uses_gemm_grads
from countnet_classify.model import make_learner
from countnet_classify.screen import screen
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate


class StepTimer(Callback):
    """Times ``timed`` training steps after ``warm`` ones, then stops the fit."""

    order = 100

    def __init__(self, warm: int, timed: int):
        self.warm, self.timed = warm, timed

    def before_fit(self):
        self.n, self.t0, self.seconds = 0, None, None

    def after_batch(self):
        if not self.training:
            return
        self.n += 1
        if self.n == self.warm:
            self._sync()
            self.t0 = time.perf_counter()
        elif self.n == self.warm + self.timed:
            self._sync()
            self.seconds = time.perf_counter() - self.t0
            raise CancelFitException()

    def _sync(self):
        if self.dls.device is not None and self.dls.device.type == "cuda":
            torch.cuda.synchronize()


def learner_rate(
    dls, arch, precision, device, warm, timed, bs, channels_last=None, opt_func=None,
    gemm_grads=True,
) -> float:  # fmt: skip
    extra = {"opt_func": opt_func} if opt_func is not None else {}
    learn = make_learner(dls, arch, None, pretrained=False, **extra)
    learn.logger = lambda *a, **k: None
    cl = use_channels_last(precision, device) if channels_last is None else channels_last
    apply_precision(learn, precision, device, channels_last=cl)
    if not gemm_grads:
        learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, TinyConvGrads)])
    timer = StepTimer(warm, timed)
    with learn.no_bar():
        learn.fit(1, 1e-3, cbs=[timer])
    return timed * bs / timer.seconds


def ceiling_rate(dls, arch, precision, device, warm, timed, bs, size, gemm_grads) -> float:
    """The same model and optimizer as (b), random in-memory batches, no data loading."""
    learn = make_learner(dls, arch, None, pretrained=False)
    model = learn.model.to(device).train()
    if gemm_grads:
        swap_convs(model)  # as (b)'s TinyConvGrads does during a fit
    cl = use_channels_last(precision, device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    learn.create_opt()
    opt = learn.opt
    n_cls = len(dls.vocab)
    x = torch.randn(bs, 3, size, size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_cls, (bs,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    loss_fn = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x).float(), y)
        scaler.scale(loss).backward()
        if precision == "fp16":
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad()

    for _ in range(warm):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(timed):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return timed * bs / (time.perf_counter() - t0)


def optimizer_step_ms(arch: str, n_classes: int, repeats: int) -> dict[str, float]:
    """One optimizer step over the model's parameters (random gradients), median ms:
    fastai's Adam against countnet's FusedAdam, interleaved."""
    from countnet_classify.model import build_model
    from countnet_classify.optim import FusedAdam

    params = list(build_model(arch, n_classes).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {"fastai Adam": Adam(params, lr=1e-3), "FusedAdam": FusedAdam(params, lr=1e-3)}
    times: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            opt.step()  # warm
            t0 = time.perf_counter()
            for _ in range(5):
                opt.step()
            times[name].append((time.perf_counter() - t0) / 5 * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="image size (64 on CPU, 224 on GPU)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--timed", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the bench dataset goes (temp)")
    args = ap.parse_args()
    # As `countnet train` sets it, for the whole process: every path runs with it, (a) too.
    retain_freed_memory_for_training()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size or (224 if device.type == "cuda" else 64)
    precision = resolve_precision("auto", device)
    channels_last = use_channels_last(precision, device)
    bs, warm, timed = args.bs, args.warm, args.timed
    n_train = (warm + timed + 1) * bs
    per_class = -(-n_train // 6 * 5 // 4) + 8  # 80% of each class is training data

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        os.environ.setdefault("COUNTNET_CACHE_DIR", str(Path(tmp) / "cache"))
        spec = DatasetSpec.from_dict(
            {
                "range": "45-50",
                "per_class": per_class,
                "size": size,
                "radius": max(1.5, size / 32),  # 2 at 64 px, as the default 48 px sets: 1.5
                "no_overlap": True,
                "name": "bench",
            }
        )
        data = Path(tmp) / "bench"
        generate(spec, data)
        sc = screen(data, valid_pct=0.2, seed=0)
        decoded = decoded_splits(sc, size, say=lambda m: None, progress=False)
        file_dls = make_dataloaders(
            sc,
            size=size,
            bs=bs,
            transforms="dihedral",
            workers=0 if device.type == "cpu" else 8,
            device=device,
            seed=0,
        )
        cache_dls = make_cached_dataloaders(
            decoded,
            bs=bs,
            transforms="dihedral",
            device=device,
            seed=0,
            channels_last=channels_last,
        )
        nchw_dls = make_cached_dataloaders(
            decoded, bs=bs, transforms="dihedral", device=device, seed=0, channels_last=False
        )
        print(
            f"device {device} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads), torch {torch.__version__}, {args.arch}, "
            f"{size} px, bs {bs}, {len(sc.items)} images; (b)/(c) precision {precision}"
            f"{' + channels_last' if channels_last else ''}; {timed} timed steps after "
            f"{warm}, median of {args.repeats}"
        )
        gemm_grads = uses_gemm_grads(precision, device)
        rates = {k: [] for k in ("a", "b", "c", "b_nchw", "b_fastai_adam", "b_oneDNN_wgrad")}
        for r in range(args.repeats):
            torch.manual_seed(r)
            rates["a"].append(
                learner_rate(
                    file_dls, args.arch, "fp32", device, warm, timed, bs, False, opt_func=Adam
                )
            )
            rates["b"].append(
                learner_rate(cache_dls, args.arch, precision, device, warm, timed, bs)
            )
            rates["c"].append(
                ceiling_rate(
                    cache_dls, args.arch, precision, device, warm, timed, bs, size, gemm_grads
                )
            )
            if channels_last:  # is channels_last worth it? (b) in plain NCHW memory
                rates["b_nchw"].append(
                    learner_rate(
                        nchw_dls, args.arch, precision, device, warm, timed, bs, channels_last=False
                    )
                )
            rates["b_fastai_adam"].append(
                learner_rate(
                    cache_dls, args.arch, precision, device, warm, timed, bs, opt_func=Adam
                )
            )
            if gemm_grads:  # every weight gradient from oneDNN (no TinyConvGrads)
                rates["b_oneDNN_wgrad"].append(
                    learner_rate(
                        cache_dls, args.arch, precision, device, warm, timed, bs, gemm_grads=False
                    )
                )
            done = "  ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items() if v)
            print(f"  repeat {r + 1}: {done}")
        med = {k: statistics.median(v) for k, v in rates.items() if v}
        print(f"(a) files, fp32                     {med['a']:8.1f} images/s")
        print(f"(b) countnet default ({precision})         {med['b']:8.1f} images/s")
        print(f"(c) in-memory random tensors        {med['c']:8.1f} images/s")
        if "b_nchw" in med:
            print(f"(b) without channels_last           {med['b_nchw']:8.1f} images/s")
        print(f"(b) with fastai's Adam              {med['b_fastai_adam']:8.1f} images/s")
        if "b_oneDNN_wgrad" in med:
            print(f"(b) without TinyConvGrads           {med['b_oneDNN_wgrad']:8.1f} images/s")
        steps = optimizer_step_ms(args.arch, len(sc.classes), args.repeats)
        print(
            f"optimizer step ({args.arch}): fastai Adam {steps['fastai Adam']:.1f} ms, "
            f"FusedAdam {steps['FusedAdam']:.1f} ms"
        )
        print(f"ratios: b/a={med['b'] / med['a']:.2f} b/c={med['b'] / med['c']:.2f}")


if __name__ == "__main__":
    main()
