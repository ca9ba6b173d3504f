"""The lowest image layer: any still image decoded to 8-bit RGB (``open_rgb``), as fastai's
``RGBImage``, and squish-resized to the training size (``item_transforms``), so training,
the decoded cache, evaluation and `countnet predict` all see the same pixels (``decode``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from PIL import Image


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode any still image to 8-bit RGB; transparency is composited onto white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im, dtype=np.float64)
            peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            im = Image.fromarray(np.clip(arr * 255.0 / peak, 0, 255).astype(np.uint8), "L")
        elif im.mode == "F":
            arr = np.asarray(im, dtype=np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else arr * 0
            im = Image.fromarray(arr.astype(np.uint8), "L")
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return im.convert("RGB")


class RGBImage(PILImage):
    """PILImage decoded by countnet's open_rgb (16-bit, alpha, palette handled)."""

    @classmethod
    def create(cls, fn, **kwargs):
        if isinstance(fn, PILImage | cls):
            return fn
        return cls(open_rgb(fn))


def item_transforms(size: int) -> list:
    return [Resize(size, method=ResizeMethod.Squish)]


def decode(path: Path, size: int) -> np.ndarray:
    """Pixels (size, size, 3) uint8 exactly as the file loader makes them for validation."""
    img = RGBImage.create(path)
    for tfm in item_transforms(size):
        img = tfm(img, split_idx=1)
    return np.asarray(img, dtype=np.uint8)
