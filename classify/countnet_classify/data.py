"""fastai DataLoaders from a screened dataset: vetted files, a fixed split, natural class
order, RGB decoding of any image mode, a squish resize (so `countnet predict` can repeat
it exactly) and the chosen augmentation preset on the batch.

Two loaders feed the same Learner. ``make_dataloaders`` decodes PNG/JPEG files every
batch (fastai's DataBlock). ``make_cached_dataloaders`` — the default for training —
gathers whole batches of uint8 pixels from the decoded cache (countnet_classify.cache) with
one indexing operation; the batch travels to the device as uint8 and fastai's batch
transforms (IntToFloatTensor, the augmentation preset, Normalize) run there. For
--task regression both give the count each class folder names as a float target."""

from __future__ import annotations

import numpy as np
import torch
from fastai.data.block import CategoryBlock, DataBlock, RegressionBlock
from fastai.data.core import DataLoaders, TfmdDL
from fastai.data.transforms import CategoryMap, IndexSplitter, IntToFloatTensor
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import TensorBase, TensorCategory, TensorImage
from fastai.vision.data import ImageBlock

from countnet_classify.images import RGBImage, item_transforms
from countnet_classify.labels import count_values
from countnet_classify.screen import Screened
from countnet_classify.transforms import batch_transforms


def _label(item):
    return item[1]


def _count(item):
    return float(item[1])


def _path(item):
    return item[0]


def make_dataloaders(
    sc: Screened,
    *,
    size: int,
    bs: int,
    transforms: str,
    workers: int,
    device,
    seed: int,
    regression: bool = False,
):
    valid_idx = [i for i, it in enumerate(sc.items) if it[2]]
    if regression:
        y_block, get_y = RegressionBlock(), _count
    else:
        # sort=False: CategoryBlock would sort the vocab again, lexicographically ('10' < '8')
        y_block, get_y = CategoryBlock(vocab=sc.classes, sort=False), _label
    block = DataBlock(
        blocks=(ImageBlock(cls=RGBImage), y_block),
        get_x=_path,
        get_y=get_y,
        splitter=IndexSplitter(valid_idx),
        item_tfms=item_transforms(size),
        batch_tfms=batch_transforms(transforms),
    )
    n_train = len(sc.items) - len(valid_idx)
    # Lists, not tuples: fastai transforms map over tuples element by element.
    dls = block.dataloaders(
        [list(it) for it in sc.items], bs=min(bs, n_train), num_workers=workers, device=device
    )
    return seed_loaders(dls, seed)


def seed_loaders(dls: DataLoaders, seed: int) -> DataLoaders:
    """Seed each loader's own shuffling RNG (fastai's DataLoader keeps a random.Random that
    ``dataloaders(seed=...)`` does not reach): both loaders shuffle identically.

    Each loader's one trial batch (``n_inp``, which fastai otherwise makes at the first
    training batch, augmented, drawing on the global RNGs) is made here, before training:
    so a run resumed in a fresh process draws the same random numbers as the uninterrupted
    one, which made it long before the epoch it resumes at."""
    for i, dl in enumerate(dls.loaders):
        dl.n_inp  # noqa: B018  (computed and cached on first access)
        dl.rng.seed(seed + i)
    return dls


class CachedSplit:
    """One split of the decoded cache as a fastai dataset: items are row indices (the
    loader gathers pixels a batch at a time); ``split_idx`` tells fastai's batch
    transforms whether to augment (0, train) or not (1, valid). ``labels``: class indices
    (int64), or counts (float32) for --task regression."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, vocab, split_idx):
        self.images, self.labels, self.vocab, self.split_idx = images, labels, vocab, split_idx
        self.regression = labels.dtype.kind == "f"
        self.c = 1 if self.regression else len(vocab)
        # what fastai infers for a CategoryBlock (a regression run passes its own loss)
        self.loss_func = None if self.regression else CrossEntropyLossFlat()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> int:
        return i


class CachedDL(TfmdDL):
    """A TfmdDL whose batches are gathered from uint8 arrays: ``images[idx]`` for a whole
    batch (sorted indices read a memory map in file order), as NCHW uint8 tensors — in
    channels_last memory (a view of the NHWC rows, no copy) when ``channels_last``, else
    contiguous, as the file path makes them (so fp32 numbers match it exactly)."""

    channels_last = False

    def create_item(self, s):
        return 0 if s is None else s

    def do_batch(self, b):
        idx = np.asarray(b, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        x = np.empty((len(idx), *self.dataset.images.shape[1:]), np.uint8)
        x[order] = self.dataset.images[idx[order]]
        xb = torch.from_numpy(x).permute(0, 3, 1, 2)
        if not self.channels_last:
            xb = xb.contiguous()
        yb = torch.from_numpy(self.dataset.labels[idx])
        return TensorImage(xb), (TensorBase if self.dataset.regression else TensorCategory)(yb)


def make_cached_dataloaders(
    decoded,
    *,
    bs: int,
    transforms: str,
    device,
    seed: int,
    channels_last: bool = False,
    regression: bool = False,
) -> DataLoaders:
    """Train/valid DataLoaders over the decoded cache (see ``make_dataloaders``);
    ``regression``: the targets are the counts the class names give, not class indices."""
    vocab = CategoryMap(decoded.classes, sort=False)
    values = count_values(decoded.classes) if regression else None
    after_batch = [IntToFloatTensor(), *batch_transforms(transforms)]
    dls = []
    for split, split_idx in (("train", 0), ("valid", 1)):
        labels = decoded.labels[split]
        ys = values[labels] if values is not None else labels
        ds = CachedSplit(decoded.images[split], ys, vocab, split_idx)
        train = split_idx == 0
        dls.append(
            CachedDL(
                ds,
                bs=min(bs, len(ds)) if train else bs,
                shuffle=train,
                drop_last=train,
                num_workers=0,
                after_batch=after_batch,
                device=device,
            )
        )
    for dl in dls:
        dl.channels_last = channels_last
    return seed_loaders(DataLoaders(*dls, device=device), seed)
