"""A data-parallel rank's share of each training batch (``shard``) and the callback that
trains the learner's model as DistributedDataParallel (``DataParallel``)."""

from __future__ import annotations

import hashlib
import math

import torch
import torch.distributed as dist
from fastai.callback.core import Callback, CancelValidException
from fastai.torch_core import set_seed

from countnet_classify.model import batchnorms
from countnet_classify.parallel.group import Group, current


class ShardedLoader:
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
        t = torch.tensor(idxs, dtype=torch.long, device=current().device)
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
    cls = type(f"Sharded{type(dl).__name__}", (ShardedLoader, type(dl)), {})
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
    digest = hashlib.sha256(f"countnet/{seed}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
