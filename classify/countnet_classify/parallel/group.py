"""This process's place in a data-parallel run (rank, size, backend), how it joins the
process group, and the collectives the other modules use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from countnet.errors import CountnetError
from countnet_classify.devices import resolve_device

# Ranks other than 0 wait in one collective while rank 0 screens the data, builds the cache
# and runs the LR finder, and while it validates: minutes, on a large set hours. A process
# that dies is noticed by the launcher (which stops the others), not by this timeout.
WAIT = timedelta(hours=12)
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run."""

    rank: int
    size: int
    local_rank: int
    backend: str

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where collectives put their tensors: NCCL needs the process's GPU."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


_group: Group | None = None


def current() -> Group | None:
    """This process's group in a data-parallel run, or None in a single-process run."""
    return _group


def uses_cuda(device: str) -> bool:
    """Whether --device ``device`` trains on CUDA."""
    return resolve_device(device).type == "cuda"


def _launcher_size() -> int:
    """The processes a launcher (torchrun) started, 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def join(rank: int, size: int, local_rank: int, device: str, init_method: str) -> Group:
    global _group
    cuda = uses_cuda(device)
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend, init_method=init_method, rank=rank, world_size=size, timeout=WAIT
    )
    _group = Group(rank, size, local_rank, backend)
    return _group


def join_launcher(spec) -> Group | None:
    """Under torchrun (or any launcher that sets RANK and WORLD_SIZE > 1): join its process
    group once; None when this process trains alone."""
    if _group is not None:
        return _group
    size = _launcher_size()
    if size <= 1:
        return None
    if spec.gpus not in (1, size):
        raise CountnetError(
            f"--gpus {spec.gpus}, but the launcher started {size} processes: drop --gpus "
            "under torchrun, or give the same number"
        )
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    if local_size != size:
        # rank 0's decoded cache and checkpoints live on its machine only
        raise CountnetError(
            f"countnet trains data-parallel on one machine: the launcher started {size} "
            f"processes, {local_size} of them here"
        )
    check_processes(spec, size, launcher=True)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    group = join(rank, size, local, spec.device, "env://")
    # fastai reads these to all-gather every metric and loss (maybe_gather); DataParallel
    # does the distributed part itself, so fastai sees one process.
    for key in LAUNCHER_ENV:
        os.environ.pop(key, None)
    return group


def refuse_launcher(command: str) -> None:
    """`countnet sweep` and select-transforms run whole trainings one after another: under
    torchrun each process would run them all."""
    if _launcher_size() > 1:
        raise CountnetError(
            f"{command} does not run under torchrun: run it in one process and give "
            "--gpus N, which each of its runs then trains with"
        )


def check_processes(spec, n: int, *, launcher: bool = False) -> None:
    """N processes for ``spec`` (before any starts): devices for them, and a batch that
    splits evenly. ``launcher``: torchrun started them, CPU processes included."""
    if n <= 1:
        return
    cuda = uses_cuda(spec.device)  # --device cuda without CUDA: one line there
    if not cuda and spec.device != "cpu" and not launcher:
        raise CountnetError(
            f"--gpus {n}: no CUDA device here; pass --device cpu to train with {n} CPU "
            "processes instead"
        )
    if cuda and torch.cuda.device_count() < n:
        raise CountnetError(f"{n} processes: only {torch.cuda.device_count()} CUDA device(s) here")
    if isinstance(spec.bs, int) and spec.bs % n:
        raise CountnetError(
            f"--bs {spec.bs} does not split evenly over {n} processes: give a multiple of {n}"
        )


def split_batch(bs: int, n_train: int, size: int) -> int:
    """The run's batch (``bs``, at most the training images) rounded down to a multiple of
    the processes, so each takes bs/size."""
    bs = min(bs, n_train)
    if bs < size:
        raise CountnetError(f"{n_train} training images cannot make a batch for {size} processes")
    return bs - bs % size


def share(obj=None):
    """Rank 0's ``obj`` on every rank (itself in a single-process run)."""
    if _group is None:
        return obj
    box = [obj if _group.leader else None]
    dist.broadcast_object_list(box, src=0, device=_group.device)
    return box[0]
