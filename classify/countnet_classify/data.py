"""fastai DataLoaders from a screened dataset: vetted files, a fixed split, natural class
order, RGB decoding of any image mode, a squish resize (so `countnet predict` can repeat
it exactly) and the chosen augmentation preset on the batch."""

from __future__ import annotations

from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.transforms import IndexSplitter
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock

from countnet_classify.screen import Screened, open_rgb
from countnet_classify.transforms import batch_transforms


class RGBImage(PILImage):
    """PILImage decoded by countnet's open_rgb (16-bit, alpha, palette handled)."""

    @classmethod
    def create(cls, fn, **kwargs):
        if isinstance(fn, PILImage | cls):
            return fn
        return cls(open_rgb(fn))


def item_transforms(size: int) -> list:
    return [Resize(size, method=ResizeMethod.Squish)]


def _label(item):
    return item[1]


def _path(item):
    return item[0]


def make_dataloaders(
    sc: Screened, *, size: int, bs: int, transforms: str, workers: int, device, seed: int
):
    valid_idx = [i for i, it in enumerate(sc.items) if it[2]]
    block = DataBlock(
        blocks=(ImageBlock(cls=RGBImage), CategoryBlock(vocab=sc.classes)),
        get_x=_path,
        get_y=_label,
        splitter=IndexSplitter(valid_idx),
        item_tfms=item_transforms(size),
        batch_tfms=batch_transforms(transforms),
    )
    n_train = len(sc.items) - len(valid_idx)
    # Lists, not tuples: fastai transforms map over tuples element by element.
    return block.dataloaders(
        [list(it) for it in sc.items],
        bs=min(bs, n_train),
        num_workers=workers,
        device=device,
        seed=seed,
    )
