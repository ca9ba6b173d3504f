"""Training-loop extensions as fastai callbacks: the per-epoch table, batch losses,
checkpoints for --resume, and one clean line per epoch for logs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback

from countnet.atomic import atomic_path, write_text_atomic
from countnet_classify.outputs import metrics_markdown, read_rows, write_rows

METRICS_FIELDS = ("epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time")
# --task regression: error_rate and accuracy of the rounded count, then MAE and RMSE
REGRESSION_FIELDS = (*METRICS_FIELDS[:-1], "mae", "rmse", "time")
CHECKPOINT = "checkpoint.pt"


class _EpochAware(Callback):
    """Knows the global epoch number across fit phases and ignores epochs that fastai's
    SkipToEpoch cancels on resume."""

    def __init__(self, offset: int):
        self.offset = offset

    def before_epoch(self):
        self._cancelled = False

    def after_cancel_epoch(self):
        self._cancelled = True

    @property
    def global_epoch(self) -> int:  # 1-based
        return self.offset + self.epoch + 1


class MetricsTable(_EpochAware):
    """metrics.csv (``fields``: epoch, train_loss, valid_loss, error_rate, accuracy, time;
    regression adds mae and rmse) and losses.csv (every training batch's loss), rewritten
    atomically after each epoch."""

    order = 65  # after fastai's Recorder (50) has logged the epoch

    def __init__(self, run_dir: Path, offset: int, total: int, echo: bool, fields=METRICS_FIELDS):
        super().__init__(offset)
        self.run_dir, self.total, self.echo = Path(run_dir), total, echo
        self.fields = tuple(fields)
        self.rows = read_rows(self.run_dir / "metrics.csv")
        self.losses = read_rows(self.run_dir / "losses.csv")

    def before_epoch(self):
        super().before_epoch()
        self._t0 = time.perf_counter()
        self._batch_losses: list[torch.Tensor] = []

    def after_batch(self):
        # Kept on the device: a float() here would sync host and GPU on every batch.
        if self.training:
            self._batch_losses.append(self.learn.loss.detach())

    def after_epoch(self):
        if self._cancelled:
            return
        log = dict(zip(self.recorder.metric_names, self.recorder.log, strict=False))
        n = self.global_epoch
        row = {
            "epoch": n,
            **{f: f"{float(log[f]):.6f}" for f in self.fields if f not in ("epoch", "time")},
            "time": f"{time.perf_counter() - self._t0:.2f}",
        }
        self.rows = [r for r in self.rows if int(r["epoch"]) < n] + [row]
        batch_losses = (
            torch.stack(self._batch_losses).float().cpu().tolist() if self._batch_losses else []
        )
        start = len([r for r in self.losses if int(r["epoch"]) < n])
        self.losses = [r for r in self.losses if int(r["epoch"]) < n] + [
            {"iter": start + i, "epoch": n, "loss": f"{v:.6f}"} for i, v in enumerate(batch_losses)
        ]
        write_rows(self.run_dir / "losses.csv", ("iter", "epoch", "loss"), self.losses)
        write_rows(self.run_dir / "metrics.csv", self.fields, self.rows)
        write_text_atomic(self.run_dir / "metrics.md", metrics_markdown(self.rows, self.fields))
        if self.echo:
            shown = [f for f in self.fields if f not in ("epoch", "accuracy", "time")]
            print(
                f"epoch {n}/{self.total}  "
                + "  ".join(f"{f} {row[f]}" for f in shown)
                + f"  time {row['time']}s",
                flush=True,
            )


def _plain(obj):
    """Make optimizer state loadable with torch.load(weights_only=True): NumPy -> Python."""
    from fastcore.foundation import L

    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, L):
        return [_plain(v) for v in obj]
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def rng_state(dls) -> dict:
    """Every random stream training draws from: Python's, NumPy's, torch's (CPU and CUDA)
    and each DataLoader's own shuffling RNG — as plain values torch can save weights-only."""
    import random

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "loaders": [dl.rng.getstate() for dl in dls.loaders],
    }
    device = torch.device(dls.device or "cpu")
    if device.type == "cuda":  # the training GPU's only: a resume may see fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, dls) -> None:
    import random

    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    device = torch.device(dls.device or "cpu")
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    for dl, s in zip(dls.loaders, state["loaders"], strict=True):
        dl.rng.setstate(s)


class Checkpoint(_EpochAware):
    """checkpoint.pt: model, optimizer, GradScaler and RNG state and the epoch reached —
    after every epoch, and once before the first (epoch 0), so that --resume continues
    exactly where the uninterrupted run would be.

    Not fastai's SaveModelCallback: its files are pickles of fastai objects (read back only
    by unpickling), written in place, without the RNG or the phase; this file is replaced
    atomically and read weights-only (``load_checkpoint``)."""

    order = 70

    def __init__(self, run_dir: Path, offset: int, phase: str):
        super().__init__(offset)
        self.path = Path(run_dir) / CHECKPOINT
        self.phase = phase

    def before_fit(self):
        if self.offset == 0 and not self.path.exists():
            self._save(0)

    def after_epoch(self):
        if not self._cancelled:
            self._save(self.global_epoch)

    def _save(self, epoch: int) -> None:
        state = {
            "epoch": epoch,
            "phase": self.phase,
            "model": self.learn.model.state_dict(),
            "opt": _plain(self.learn.opt.state_dict()),
            "rng": rng_state(self.learn.dls),
        }
        recorder = getattr(self.learn, "recorder", None)
        if recorder is not None:  # the smoothed train_loss runs on across a phase's epochs
            sl = recorder.smooth_loss
            val = torch.as_tensor(sl.val).detach().cpu().as_subclass(torch.Tensor)  # no fastai type
            state["smooth_loss"] = {"count": sl.count, "val": val}
        scaler = getattr(self.learn, "scaler", None)
        if scaler is not None and scaler.is_enabled():  # fp16 only; bf16 needs no scaling
            state["scaler"] = scaler.state_dict()
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


class RestoreState(Callback):
    """On resume, the checkpoint's RNG state, and within a phase its optimizer, GradScaler
    and smoothed-loss state, put back when the fit starts (after MixedPrecision has made its
    scaler and the Recorder has reset its smoothed loss), on the training device."""

    order = 75

    def __init__(self, checkpoint: dict, *, optimizer: bool):
        self.checkpoint, self.optimizer = checkpoint, optimizer

    def before_fit(self):
        from fastai.torch_core import to_device

        ckpt = self.checkpoint
        if self.optimizer:
            from countnet_classify.optim import FusedAdam, from_fastai_state

            device = next(self.learn.model.parameters()).device
            opt_state = ckpt["opt"]
            if "hypers" in opt_state and isinstance(self.learn.opt, FusedAdam):
                opt_state = from_fastai_state(opt_state, self.learn.opt)  # an older countnet's
            self.learn.opt.load_state_dict(to_device(opt_state, device))
            scaler = getattr(self.learn, "scaler", None)
            if scaler is not None and "scaler" in ckpt:
                scaler.load_state_dict(ckpt["scaler"])
            recorder = getattr(self.learn, "recorder", None)
            if recorder is not None and "smooth_loss" in ckpt:
                recorder.smooth_loss.count = ckpt["smooth_loss"]["count"]
                recorder.smooth_loss.val = ckpt["smooth_loss"]["val"]  # CPU, as fastai keeps it
        if "rng" in ckpt:  # checkpoints written before countnet saved it have none
            set_rng_state(ckpt["rng"], self.learn.dls)


def load_checkpoint(run_dir: Path) -> dict | None:
    """Our own checkpoint, still read weights-only (plain tensors and numbers), on the CPU
    (RestoreState moves the optimizer state to the training device)."""
    from fastcore.foundation import L

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "hypers" in state["opt"]:  # written by fastai's own Optimizer, which keeps an L
        state["opt"]["hypers"] = L(state["opt"]["hypers"])
    return state


class PreciseBN(Callback):
    """Re-estimate every BatchNorm layer's running statistics with the current weights, over
    ``n_images`` training images (train mode, no gradients), before each validation.

    From scratch at one-cycle's peak learning rates the weights move faster than BatchNorm's
    running averages (momentum 0.1) follow them: validation, which uses those averages, sat
    at chance for most of training while the training loss fell (measured on the default
    45-50 set: 0.83 with the running averages vs 0.40 re-estimated, after epoch 2). The
    re-estimated statistics stay in the model, so the exported weights and `countnet
    predict` use them too. Costs about n_images forward passes an epoch.
    """

    order = 55  # after TrainEvalCallback (-10) has set eval mode, which it restores

    def __init__(self, n_images: int = 1024):
        self.n_images = n_images

    def before_validate(self):
        from countnet_classify.distributed import current
        from countnet_classify.model import batchnorms
        from countnet_classify.precision import autocast_for

        bns = batchnorms(self.learn.model)
        # In a data-parallel run every rank takes its share (from its shard of dls.train)
        # and DataParallel averages the statistics.
        group = current()
        n_images = -(-self.n_images // group.size) if group else self.n_images
        if not bns or n_images <= 0:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        channels_last = any(type(cb).__name__ == "ChannelsLast" for cb in self.learn.cbs)
        seen = 0
        self.learn.model.train()
        try:
            with torch.no_grad():
                # Batches are drawn outside autocast, as training draws them: under bf16
                # autocast the batch transforms' sampling grid is bf16 and blurs the images
                # (dihedral at 64 px: pixel std -4%), which skewed these statistics enough
                # to lift the varying-size set's error from 0.06 to 0.39 (BENCHMARKS.md).
                for xb, *_ in self.learn.dls.train:
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with autocast_for(self.learn):
                        self.learn.model(xb)
                    seen += len(xb)
                    if seen >= n_images:
                        break
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
            self.learn.model.eval()
