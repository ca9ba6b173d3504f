"""Training-loop extensions as fastai callbacks: the per-epoch table, batch losses,
checkpoints for --resume, and one clean line per epoch for logs."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback

from countnet_classify.outputs import metrics_markdown
from countnet_gen.atomic import atomic_path, write_text_atomic

METRICS_FIELDS = ("epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time")
CHECKPOINT = "checkpoint.pt"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


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
    """metrics.csv (epoch, train_loss, valid_loss, error_rate, accuracy, time) and
    losses.csv (every training batch's loss), rewritten atomically after each epoch."""

    order = 65  # after fastai's Recorder (50) has logged the epoch

    def __init__(self, run_dir: Path, offset: int, total: int, echo: bool):
        super().__init__(offset)
        self.run_dir, self.total, self.echo = Path(run_dir), total, echo
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
            "train_loss": f"{float(log['train_loss']):.6f}",
            "valid_loss": f"{float(log['valid_loss']):.6f}",
            "error_rate": f"{float(log['error_rate']):.6f}",
            "accuracy": f"{float(log['accuracy']):.6f}",
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
        write_rows(self.run_dir / "metrics.csv", METRICS_FIELDS, self.rows)
        write_text_atomic(self.run_dir / "metrics.md", metrics_markdown(self.rows, METRICS_FIELDS))
        if self.echo:
            print(
                f"epoch {n}/{self.total}  train_loss {row['train_loss']}  valid_loss "
                f"{row['valid_loss']}  error_rate {row['error_rate']}  time {row['time']}s",
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


class Checkpoint(_EpochAware):
    """checkpoint.pt after every epoch: model, optimizer and the epoch reached."""

    order = 70

    def __init__(self, run_dir: Path, offset: int, phase: str):
        super().__init__(offset)
        self.path = Path(run_dir) / CHECKPOINT
        self.phase = phase

    def after_epoch(self):
        if self._cancelled:
            return
        state = {
            "epoch": self.global_epoch,
            "phase": self.phase,
            "model": self.learn.model.state_dict(),
            "opt": _plain(self.learn.opt.state_dict()),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


def load_checkpoint(run_dir: Path) -> dict | None:
    """Our own checkpoint, still read weights-only (plain tensors and numbers)."""
    from fastcore.foundation import L

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["opt"]["hypers"] = L(state["opt"]["hypers"])  # fastai's optimizer keeps an L
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
        from countnet_classify.precision import autocast_for

        bns = [
            m
            for m in self.learn.model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        if not bns or self.n_images <= 0:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        channels_last = any(type(cb).__name__ == "ChannelsLast" for cb in self.learn.cbs)
        seen = 0
        self.learn.model.train()
        try:
            with torch.no_grad(), autocast_for(self.learn):
                for xb, *_ in self.learn.dls.train:
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    self.learn.model(xb)
                    seen += len(xb)
                    if seen >= self.n_images:
                        break
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
            self.learn.model.eval()
