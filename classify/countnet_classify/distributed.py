"""One run on several devices: ``countnet train --gpus N`` (N processes, one per GPU, or
with ``--device cpu`` N CPU processes), or one process per device started by ``torchrun``.
PyTorch's DistributedDataParallel trains inside the same fastai Learner, so the run
folder, the callbacks and --resume are those of a single-process run.

The batch rule: ``--bs`` is the whole run's batch, split evenly over the N processes
(bs/N each); an epoch has the same number of optimizer steps as in one process, and the
learning rate (the LR finder's, found at --bs, or --lr) means the same. To train bigger
batches on more devices, raise --bs and --lr together (the linear scaling rule) yourself.

Rank 0 does everything a single process does besides its share of the training steps: it
screens the data, builds the decoded cache, runs the LR finder, validates, checkpoints and
writes the run folder. The other ranks receive what it decided, train on their shards,
re-estimate BatchNorm statistics with it (averaged over the ranks), and write nothing.
On CUDA BatchNorm is synchronised across GPUs during training (as fastai's distributed
default); PyTorch's SyncBatchNorm has no CPU implementation, so CPU processes normalise
each by its own shard's batch.

Not fastai's ``fastai.distributed``: the module cannot be imported without Hugging Face
accelerate (its ``DistributedTrainer`` is built on it), and its ``DistributedDL``
broadcasts the shuffled order through CUDA tensors, so it cannot run CPU processes (gloo),
which is how CI tests this. ``shard`` below does that loader's job on any backend, and
``DataParallel`` the trainer's. fastai also reads WORLD_SIZE to all-gather every metric
and loss; the processes hide it from fastai (``join_launcher``), as the callback does the
distributed part itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from fastai.callback.core import Callback, CancelValidException

from countnet.atomic import write_text_atomic
from countnet.errors import USER_ERRORS, CountnetError, one_line
from countnet.malloc import retain_freed_memory_for_training

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


def _uses_cuda(device: str) -> bool:
    """Whether --device ``device`` trains on CUDA (train.resolve_device's answer)."""
    from countnet_classify.train import resolve_device

    return resolve_device(device).type == "cuda"


def _launcher_size() -> int:
    """The processes a launcher (torchrun) started, 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _join(rank: int, size: int, local_rank: int, device: str, init_method: str) -> Group:
    global _group
    cuda = _uses_cuda(device)
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
    group = _join(rank, size, local, spec.device, "env://")
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
    cuda = _uses_cuda(spec.device)  # --device cuda without CUDA: one line there
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


def launch(spec, *, say=print, figures: bool = True) -> Path:
    """Train ``spec`` in ``spec.gpus`` processes started here; returns the run folder. What
    rank 0 says and prints comes back here (``say``, and this process's sys.stdout and
    sys.stderr — a workflow job's log, a test's capture — not the inherited descriptors); a
    user error it raises comes back as this one's. When one process fails the others are
    stopped (they would wait for it in the next collective)."""
    from multiprocessing.connection import wait

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    output, rank0_output = ctx.Pipe(duplex=False)
    pump = threading.Thread(target=_pump, args=(output, say), daemon=True)
    with tempfile.TemporaryDirectory(prefix="countnet-ddp-") as tmp:
        store = f"file://{Path(tmp) / 'store'}"
        # Each process gets its share of this one's threads (a workflow job's `threads`):
        # N processes of all of them each would oversubscribe the cores.
        threads = max(1, torch.get_num_threads() // spec.gpus)
        tty = (sys.stdout.isatty(), sys.stderr.isatty())
        procs = mp.start_processes(
            _worker,
            args=(spec, figures, store, tmp, os.getpid(), rank0_output, tty, threads),
            nprocs=spec.gpus,
            join=False,
            start_method="spawn",
        )
        rank0_output.close()  # the workers hold it now: the pump ends when they have exited
        pump.start()
        running = {p.sentinel: (i, p) for i, p in enumerate(procs.processes)}
        codes: dict[int, int] = {}
        stopped: set[int] = set()  # terminated here, after another failed
        try:
            while running:
                for sentinel in wait(list(running)):
                    i, p = running.pop(sentinel)
                    p.join()
                    codes[i] = p.exitcode
                    if p.exitcode and not stopped:
                        for j, other in running.values():
                            if other.is_alive():  # one that died meanwhile died by itself
                                stopped.add(j)
                                other.terminate()
        finally:
            for _, p in running.values():
                p.terminate()
                p.join()
            pump.join(timeout=10)
        reports = {r: json.loads(f.read_text()) for r in codes if (f := _report(tmp, r)).is_file()}
    if not any(codes.values()):
        return spec.run_dir
    for rank in sorted(reports):
        if reports[rank]["kind"] == "user":
            raise CountnetError(reports[rank]["text"])
    # A process killed from outside (the out-of-memory killer) is the cause; the others
    # then fail in their next collective.
    for rank, code in sorted(codes.items()):
        if code < 0 and not (rank in stopped and code == -signal.SIGTERM):
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
            raise CountnetError(f"training process {rank} died ({how}): continue with --resume")
    if reports:
        raise RuntimeError(reports[min(reports)]["text"])  # a bug: its traceback
    rank = min(r for r, c in codes.items() if c and r not in stopped)
    raise CountnetError(f"training process {rank} failed (exit code {codes[rank]})")


def _report(folder: str, rank: int) -> Path:
    """Why worker ``rank`` stopped (JSON: kind "user" or "bug", text)."""
    return Path(folder) / f"rank{rank}.json"


def _worker(
    rank: int, spec, figures: bool, store: str, tmp: str, parent: int, output, tty, threads: int
) -> None:
    _die_with_parent(parent)
    if rank == 0:
        sys.stdout, sys.stderr = _Relay(output, 1, tty[0]), _Relay(output, 2, tty[1])
        say = _Relay(output, 3, False).say
    else:
        output.close()
        say = _silent

    def report(kind: str, text: str) -> None:
        write_text_atomic(_report(tmp, rank), json.dumps({"kind": kind, "text": text}))

    retain_freed_memory_for_training()  # a process of countnet's own, as `countnet train`
    try:
        torch.set_num_threads(threads)
        _join(rank, spec.gpus, rank, spec.device, store)
        from countnet_classify.train import train

        train(spec, say=say, figures=figures)
    except KeyboardInterrupt:  # Ctrl-C reaches every process; the launching one says so
        sys.exit(130)
    except USER_ERRORS as e:  # one line, as `countnet` reports them in one process
        report("user", one_line(e))
        sys.exit(2)
    except Exception:
        import traceback

        report("bug", f"training process {rank} failed:\n{traceback.format_exc()}")
        sys.exit(1)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class _Relay(io.TextIOBase):
    """A worker's sys.stdout (1), sys.stderr (2) or say (3), sent to the launching process
    (``_pump``)."""

    def __init__(self, conn, stream: int, tty: bool):
        self.conn, self.stream, self.tty = conn, stream, tty

    def write(self, text: str) -> int:
        if text:
            self.conn.send((self.stream, text))
        return len(text)

    def say(self, msg: str) -> None:
        self.write(msg)

    def isatty(self) -> bool:
        return self.tty


def _pump(conn, say) -> None:
    """Give what rank 0 prints and says to this process's stdout, stderr and ``say``."""
    while True:
        try:
            stream, text = conn.recv()
        except (EOFError, OSError):
            return
        if stream == 3:
            say(text)
            continue
        target = sys.stdout if stream == 1 else sys.stderr
        target.write(text)
        target.flush()


def _silent(msg: str) -> None:
    pass


def _die_with_parent(parent: int) -> None:
    """A worker dies with the process that started it (SIGKILL included): an orphan would
    keep training, and hold the run's lock, after `countnet train` was killed."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


class _Shard:
    """Mixed into a copy of the training loader (``shard``): rank 0's shuffled order, cut
    to whole batches of the run (drop_last, as one process drops its last partial batch)
    or else padded, and every world-th index of it from this rank's own. Rank r's k-th
    batch of bs/N is then the r-th stride of the positions a single process's k-th batch
    of bs takes: together the ranks train on exactly its batches, as many an epoch."""

    rank, world = 0, 1
    source = None  # the training loader this shards

    # The source's shuffling RNG, read and replaced through it: fastai's loaders swap in a
    # new random.Random every epoch (randomize), and checkpoints save the source's.
    @property
    def rng(self):
        return self.source.rng if self.source is not None else self._rng

    @rng.setter
    def rng(self, value):
        if self.source is not None:
            self.source.rng = value
        else:
            self._rng = value

    def get_idxs(self):
        idxs = list(super().get_idxs())  # only rank 0's order is used
        t = torch.tensor(idxs, dtype=torch.long, device=_group.device)
        dist.broadcast(t, 0)
        idxs = t.cpu().tolist()
        if self.drop_last:
            idxs = idxs[: len(idxs) - len(idxs) % (self.bs * self.world)]
        else:
            idxs += (idxs * self.world)[: -len(idxs) % self.world]
        return idxs[self.rank :: self.world]

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // (self.bs * self.world)
        return math.ceil(math.ceil(self.n / self.world) / self.bs)


def shard(dl, group: Group):
    """A copy of the training loader ``dl`` that yields this rank's bs/N of each batch,
    shuffled by ``dl``'s RNG."""
    cls = type(f"Sharded{type(dl).__name__}", (_Shard, type(dl)), {})
    new = dl.new(cls=cls, bs=dl.bs // group.size)
    new.rank, new.world, new.source = group.rank, group.size, dl
    if hasattr(dl, "channels_last"):  # CachedDL's batch layout
        new.channels_last = dl.channels_last
    return new


class DataParallel(Callback):
    """Trains the learner's model as DistributedDataParallel on this rank's shard of each
    batch (the shard stands in for ``dls.train`` during the fit, so PreciseBN draws from it
    too); the other events see the plain model. Before each validation every rank's
    BatchNorm statistics (PreciseBN's, re-estimated on every rank) are averaged, so all
    ranks hold one model; rank 0 alone validates (the others go on to the next epoch and
    meet it at its first batch). Each step's loss is averaged over the ranks, so rank 0's
    losses.csv and train_loss are the whole batch's. Ranks other than 0 draw their own
    augmentations: their random streams are seeded from (seed, epoch, rank) every epoch,
    which a resumed run repeats (rank 0's are in the checkpoint)."""

    # after ChannelsLast (11) sets the memory layout and PreciseBN (55) re-estimates
    # BatchNorm; before ProgressCallback (60) sizes its bar by the loader
    order = 58

    def __init__(self, group: Group, seed: int = 0, offset: int = 0):
        self.group, self.seed, self.offset = group, seed, offset

    def before_fit(self):
        model = self.learn.model
        if self.group.backend == "nccl":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.learn.model = model
        ids = [torch.cuda.current_device()] if self.group.backend == "nccl" else None
        self.ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.whole = self.learn.dls.loaders[0]
        self.learn.dls.loaders[0] = shard(self.whole, self.group)

    def before_epoch(self):
        if not self.group.leader:
            from fastai.torch_core import set_seed

            set_seed(rank_seed(self.seed, self.offset + self.epoch, self.group.rank))

    def before_train(self):
        self.learn.model = self.ddp
        self.ddp.train()

    def after_step(self):
        loss = self.learn.loss.detach().clone()
        dist.all_reduce(loss)
        self.learn.loss = loss / self.group.size

    def after_train(self):
        self.learn.model = self.ddp.module

    def before_validate(self):
        from countnet_classify.model import batchnorms

        for bn in batchnorms(self.learn.model):
            for buf in (bn.running_mean, bn.running_var):
                if buf is not None:
                    dist.all_reduce(buf)
                    buf.div_(self.group.size)
        if not self.group.leader:
            raise CancelValidException()

    def after_fit(self):
        self.learn.model = self.ddp.module
        self.learn.dls.loaders[0] = self.whole


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of a rank's random streams in an epoch: distinct for every (seed, epoch,
    rank), the same in a resumed run."""
    import hashlib

    digest = hashlib.sha256(f"countnet/{seed}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
