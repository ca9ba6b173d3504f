"""The lowest image layer: any still image decoded to 8-bit RGB (``open_rgb``), as fastai's
``RGBImage``, and squish-resized to the training size (``item_transforms``), so training,
the decoded cache, evaluation and `countnet predict` all see the same pixels (``decode``).

Decoding memory is bounded: the images a process decodes at once (screening and cache
builds decode on many threads) hold at most DECODE_BUDGET_PIXELS pixels together (an image
larger than that decodes alone), and 16-bit or float images are scaled to 8 bits a strip
of rows at a time, in their own integer type where they are integers. An image costs about
5 bytes a pixel at its peak (its decoded self, 1 to 4 bytes, then RGB's 4 in Pillow), so
decoding holds at most about 5 x DECODE_BUDGET_PIXELS bytes (or 5 x the largest image).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from PIL import Image

DECODE_BUDGET_PIXELS = 2**26  # pixels decoded at once per process: about 320 MiB at peak
STRIP_ROWS = 256  # rows of a 16-bit or float image scaled to 8 bits at a time
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


class PixelBudget:
    """A counting semaphore over pixels: ``hold(n)`` waits until ``n`` more fit under the
    limit (an image over the whole limit waits until nothing else is held). Re-entrant per
    thread: a decode nested in another holds nothing more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        """Nothing held: a forked child (DataLoader workers) has none of its parent's
        decoding threads, and a lock it copied mid-use would never be released."""
        self.used = 0
        self._cond = threading.Condition()
        self._mine = threading.local()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if getattr(self._mine, "held", False):
            yield
            return
        take = max(1, min(pixels, self.limit))
        with self._cond:
            self._cond.wait_for(lambda: self.used + take <= self.limit)
            self.used += take
        self._mine.held = True
        try:
            yield
        finally:
            self._mine.held = False
            with self._cond:
                self.used -= take
                self._cond.notify_all()


BUDGET = PixelBudget(DECODE_BUDGET_PIXELS)
# Pillow's image blocks above glibc's largest mmap threshold (32 MiB): a large image's
# blocks go back to the OS when freed, instead of staying in the heap of each decoding
# thread (`countnet train` keeps up to 1 GB freed per heap: countnet.malloc).
LARGE_BLOCK = 64 << 20
if "PILLOW_BLOCK_SIZE" not in os.environ:
    Image.core.set_block_size(LARGE_BLOCK)
os.register_at_fork(after_in_child=BUDGET.reset)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode any still image to 8-bit RGB; transparency is composited onto white."""
    with Image.open(path) as src, BUDGET.hold(src.width * src.height):
        src.load()
        im = src
        if im.mode in (*SIXTEEN_BIT, "I", "F"):
            im = to_8bit(src)
            src.close()  # frees the wide pixels before the RGB copy is made
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return im.convert("RGB")


def to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grayscale image as 8-bit "L", a strip of rows at a
    time. 16-bit (and "I" above 255) scale 65535 to 255 (v // 257, in integers: equal to
    the float floor(v * 255 / 65535)); float images stretch their own min..max to 0..255."""
    lo, hi = im.getextrema()
    w, h = im.size
    out = np.empty((h, w), np.uint8)
    for y in range(0, h, STRIP_ROWS):
        strip = np.asarray(im.crop((0, y, w, min(h, y + STRIP_ROWS))))
        if im.mode == "F":
            arr = strip.astype(np.float64)
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else arr * 0
            out[y : y + len(strip)] = arr.astype(np.uint8)
        elif im.mode in SIXTEEN_BIT or hi > 255:
            out[y : y + len(strip)] = np.clip(strip, 0, 65535) // 257
        else:
            out[y : y + len(strip)] = np.clip(strip, 0, 255)
    return Image.fromarray(out, "L")


def decoded_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of ``path`` after a full decode as ``open_rgb`` decodes it, within
    the budget until its pixels are freed (screening's check)."""
    with Image.open(path) as head, BUDGET.hold(head.width * head.height):
        return open_rgb(path).size


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
    """Pixels (size, size, 3) uint8 exactly as the file loader makes them for validation:
    fastai's squish ``Resize`` crops and pads by nothing, then resizes bilinearly, which is
    this one resize without its two full-size copies. The full-size pixels stay within the
    budget until resized away."""
    with Image.open(path) as head, BUDGET.hold(head.width * head.height):
        img = open_rgb(path).resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
