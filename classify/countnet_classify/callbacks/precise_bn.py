"""BatchNorm statistics re-estimated with the current weights before each validation."""

from __future__ import annotations

import torch
from fastai.callback.core import Callback

from countnet_classify.callbacks.precision import autocast_for
from countnet_classify.model import batchnorms
from countnet_classify.parallel.group import current


class PreciseBN(Callback):
    """Re-estimate every BatchNorm layer's running statistics with the current weights, over
    ``n_images`` training images (train mode, no gradients), before each validation.

    From scratch at one-cycle's peak learning rates the weights move faster than BatchNorm's
    running averages follow them, so validation on those averages sat at chance while the
    training loss fell (BENCHMARKS.md, "Why validation sat at chance: BatchNorm statistics
    (PreciseBN)"). The re-estimated statistics stay in the model, so the exported weights and
    `countnet predict` use them too. Costs about n_images forward passes an epoch.
    """

    order = 55  # after TrainEvalCallback (-10) has set eval mode, which it restores

    def __init__(self, n_images: int = 1024):
        self.n_images = n_images

    def before_validate(self):
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
                # autocast the transforms' sampling grid is bf16 and blurs the images, which
                # skews these statistics (BENCHMARKS.md, "bf16 hosts: PreciseBN's batches
                # were blurred by autocast").
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
