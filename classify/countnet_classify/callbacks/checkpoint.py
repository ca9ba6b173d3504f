"""checkpoint.pt: what --resume continues from, written atomically after every epoch and
read back weights-only; the one before it is kept as checkpoint.prev.pt, so a damaged
newest file still leaves a run to continue. The RNG streams it saves and restores."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.torch_core import to_device
from fastcore.foundation import L

from countnet.atomic import atomic_path
from countnet.errors import CountnetError
from countnet_classify.callbacks.epochs import EpochAware
from countnet_classify.optim import FusedAdam, from_fastai_state
from countnet_classify.run_folder import CHECKPOINTS

CHECKPOINT, PREVIOUS = CHECKPOINTS


def _plain(obj):
    """Make optimizer state loadable with torch.load(weights_only=True): NumPy -> Python."""
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
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    device = torch.device(dls.device or "cpu")
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    for dl, s in zip(dls.loaders, state["loaders"], strict=True):
        dl.rng.setstate(s)


class Checkpoint(EpochAware):
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
            self.save(0)

    def after_epoch(self):
        if not self._cancelled:
            self.save(self.global_epoch)

    def save(self, epoch: int) -> None:
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
            keep_previous(self.path)


def keep_previous(path: Path) -> None:
    """Make ``path``'s current file the previous checkpoint before it is replaced: a hard
    link renamed into place, so ``path`` itself never goes missing (a plain rename where the
    filesystem has no hard links; the loader then falls back to the previous one)."""
    if not path.is_file():
        return
    prev = path.with_name(PREVIOUS)
    link = path.with_name(f".{PREVIOUS}.link.tmp")  # a temp name: swept on resume if left
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:
        os.replace(path, prev)
        return
    try:
        os.replace(link, prev)
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        raise


class RestoreState(Callback):
    """On resume, the checkpoint's RNG state, and within a phase its optimizer, GradScaler
    and smoothed-loss state, put back when the fit starts (after MixedPrecision has made its
    scaler and the Recorder has reset its smoothed loss), on the training device."""

    order = 75

    def __init__(self, checkpoint: dict, *, optimizer: bool):
        self.checkpoint, self.optimizer = checkpoint, optimizer

    def before_fit(self):
        ckpt = self.checkpoint
        if self.optimizer:
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


def load_checkpoint(run_dir: Path, say=print) -> tuple[dict, Path] | None:
    """The newest readable checkpoint of ``run_dir`` and its file (None: it has none). A
    damaged or missing checkpoint.pt falls back to checkpoint.prev.pt, saying so; when
    none is readable, one line says why."""
    files = [Path(run_dir) / n for n in CHECKPOINTS]
    if not any(f.is_file() for f in files):
        return None
    problems = []
    for path in files:
        if not path.is_file():
            problems.append(f"{path.name} is missing")
            continue
        try:
            state = read_checkpoint(path)
        except CountnetError as e:
            problems.append(str(e))
            continue
        if problems:
            say(f"{'; '.join(problems)}: resuming from {path} (epoch {state['epoch']})")
        return state, path
    raise CountnetError(f"cannot resume from {Path(run_dir)}: {'; '.join(problems)}")


def read_checkpoint(path: Path) -> dict:
    """Our own checkpoint, still read weights-only (plain tensors and numbers), on the CPU
    (RestoreState moves the optimizer state to the training device); a truncated, empty or
    foreign file is one line."""
    if path.stat().st_size == 0:
        raise CountnetError(f"{path.name} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's errors for a damaged zip or pickle vary by version
        why = " ".join(str(e).split())[:100] or type(e).__name__
        raise CountnetError(f"{path.name} is unreadable (truncated or damaged: {why})") from None
    if not isinstance(state, dict) or not {"epoch", "model", "opt"} <= set(state):
        raise CountnetError(f"{path.name} is not a countnet checkpoint")
    if "hypers" in state["opt"]:  # written by fastai's own Optimizer, which keeps an L
        state["opt"]["hypers"] = L(state["opt"]["hypers"])
    return state
