"""The classical counter: circles counted without learning (scikit-image), the baseline
beside every CNN count (`countnet baseline`).

Each image becomes a foreground coverage map (its pixels projected onto the set's fg-bg
colour line: dataset.json's colours, or for any other folder the two sides of Otsu's
threshold over the training images), thresholded at one half and cut into connected
components (``skimage.measure.label``). Each component is measured once: its area, its
roundness (area over the disc reaching its farthest pixel: a circle 1, a square about
0.65, a triangle about 0.45), its holes (a ring has one), and the watershed segments of its
distance transform (``skimage.segmentation.watershed`` from the transform's h-maxima: one
per circle in a blob of overlapping ones). A component then counts as 0 (a distractor:
holed, or one segment and not round, or too small), or by the fitted method as 1, its area
over one circle's, its segments, or the larger of the last two.

The few parameters (one circle's area, the shape and size filters, the method) are chosen
by a grid search on the training split alone, then the counter is scored on valid/ and
test/ as a CNN is: rounded count != label is an error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing as mp
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import expand_labels, watershed

from countnet.atomic import exclusive, staging_dir
from countnet.cpus import usable_cpus
from countnet.errors import CountnetError
from countnet.names import printable
from countnet.tables import write_csv
from countnet_gen.outdir import read_dataset_json

METHOD = "threshold + label + shape filters + distance-transform watershed (scikit-image)"
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# A distance-transform maximum must stand this many pixels above the saddle to its
# neighbour to seed a segment: lower splits one circle at its pixel steps.
H_MAX = 0.5
# How far beyond a shape's edge its anti-aliased rim reaches (measured on gen's circles of
# radius 1.5 to 6): a disc's farthest rim point, less this, is its radius.
RIM_REACH = 0.4
# A component at least this round is one disc: no holes, no segments looked for.
ROUND_ENOUGH = 0.9
OTSU_SAMPLE = 256  # training images whose pixels place Otsu's threshold (no dataset.json)
POOL_FROM = 1500  # images from which a process pool pays for its start-up (skimage imports)
CHUNK = 256  # images a worker measures per task
COUNT_BY = ("one", "area", "watershed", "max")  # how a component that passes becomes a count
ROUNDNESS = (0.0, 0.7, 0.8, 0.85, 0.9, 0.95)  # 0: the shape filter off
MIN_AREA = (0.0, 0.25, 0.5, 0.7, 0.85)  # a component smaller than this share of a circle is noise
SEGMENT_AREA = (0.2, 0.4)  # a watershed segment smaller than this share of a circle is not one
AREA_QUANTILES = (5, 15, 25, 35, 50, 65, 75, 85, 95)  # of the round components' areas
AREA_SCALE = (0.8, 0.9, 1.1, 1.2)  # of their median
PRED_FIELDS = ("path", "split", "count", "prediction", "error")


@dataclass(frozen=True)
class Params:
    """What the grid search on the training split chose."""

    fg: tuple[float, float, float]
    bg: tuple[float, float, float]
    colours: str  # "dataset.json" or "otsu"
    circle_area: float  # one circle's area in pixels
    min_roundness: float  # 0: shape filter off
    min_area: float  # share of circle_area
    segment_area: float  # share of circle_area
    count_by: str  # one of COUNT_BY
    train_error_rate: float = 0.0
    train_mae: float = 0.0


@dataclass
class Features:
    """Every component of a batch of images: its image, area, roundness, holes and the
    areas of its watershed segments (``seg_region`` indexes ``area``)."""

    image: np.ndarray
    area: np.ndarray
    roundness: np.ndarray
    holes: np.ndarray
    seg_region: np.ndarray
    seg_area: np.ndarray
    n_images: int

    @staticmethod
    def join(parts: list[Features]) -> Features:
        fields = ("image", "area", "roundness", "holes", "seg_region", "seg_area")
        offset_img = np.cumsum([0] + [p.n_images for p in parts])
        offset_reg = np.cumsum([0] + [len(p.area) for p in parts])
        cols = {f: [] for f in fields}
        for p, oi, orr in zip(parts, offset_img, offset_reg, strict=False):
            for f in fields:
                v = getattr(p, f)
                cols[f].append(v + oi if f == "image" else v + orr if f == "seg_region" else v)
        joined = {f: np.concatenate(v) if v else np.zeros(0) for f, v in cols.items()}
        joined["image"] = joined["image"].astype(np.int64)
        joined["seg_region"] = joined["seg_region"].astype(np.int64)
        return Features(**joined, n_images=int(offset_img[-1]))


# -- one image -----------------------------------------------------------
def read_coverage(path: Path, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """An image's foreground coverage (0..1: how far each pixel lies from the background
    towards the foreground colour); transparency is composited onto white. A palette image
    (countnet gen's) is mapped through its 256 entries rather than per pixel. Not
    images.open_rgb: that module imports fastai, seconds a worker process need not pay."""
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba)
        if im.mode == "P":
            lut = coverage(np.asarray(im.getpalette("RGB"), np.float32).reshape(-1, 3), fg, bg)
            return lut[np.asarray(im)]
        return coverage(np.asarray(im.convert("RGB"), np.float32), fg, bg)


def coverage(rgb: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Each pixel projected onto the line from ``bg`` (0) to ``fg`` (1)."""
    axis = fg - bg
    return ((rgb - bg) @ axis) / float(axis @ axis)


def measure(cov: np.ndarray) -> tuple[np.ndarray, ...]:
    """(area, roundness, holes, segment region, segment area) of each component of
    ``cov > 0.5``. Holes and watershed segments are looked for only in a component that is
    not round (a disc has neither): most components of most sets are skipped."""
    mask = cov > 0.5
    lab, n = label(mask, connectivity=1, return_num=True)
    # the anti-aliased rim just outside each component is part of its area
    grown = expand_labels(lab, 1)
    inside = grown > 0
    idx, w = grown[inside], np.clip(cov[inside], 0, 1)
    ys, xs = np.nonzero(inside)
    area = np.bincount(idx, w, minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(idx, w * ys, minlength=n + 1)[1:] / area
        cx = np.bincount(idx, w * xs, minlength=n + 1)[1:] / area
    # the edge lies (coverage - 1/2) px beyond a pixel's centre: the farthest edge point
    reach = np.hypot(ys - cy[idx - 1], xs - cx[idx - 1]) + w - 0.5
    far = np.zeros(n)
    np.maximum.at(far, idx - 1, reach)
    roundness = area / (np.pi * np.maximum(far - RIM_REACH, 0.5) ** 2)
    holes = np.zeros(n)
    seg_region, seg_area = [np.arange(n)], [area]
    odd = np.flatnonzero(roundness < ROUND_ENOUGH)
    if odd.size:
        seg_area[0] = np.where(roundness < ROUND_ENOUGH, 0.0, area)
    boxes = ndimage.find_objects(lab) if odd.size else []
    for k in odd:
        comp = np.pad(lab[boxes[k]] == k + 1, 1)
        holes[k] = np.count_nonzero(ndimage.binary_fill_holes(comp) & ~comp)
        segs = _segment_areas(comp, area[k]) if holes[k] == 0 else area[k : k + 1]
        seg_region.append(np.full(len(segs), k))
        seg_area.append(segs)
    region, seg = np.concatenate(seg_region), np.concatenate(seg_area)
    keep = seg > 0
    return area, roundness, holes, region[keep], seg[keep]


def _segment_areas(comp: np.ndarray, area: float) -> np.ndarray:
    """Areas of the watershed segments of one component's mask (``area`` in all), seeded
    by the h-maxima of its distance transform: one per circle of a blob of overlapping
    ones. Pixel counts, scaled to ``area``, which counts the anti-aliased rim too."""
    dist = ndimage.distance_transform_edt(comp)
    markers, n = label(h_maxima(dist, H_MAX), connectivity=2, return_num=True)
    if n <= 1:  # one segment: the watershed would only return the mask
        return np.array([area])
    pixels = np.bincount(watershed(-dist, markers, mask=comp)[comp], minlength=n + 1)[1:]
    return pixels * (area / max(1, pixels.sum()))


# -- many images (a process pool's worker side) ----------------------------
_W: dict = {}


def _init_worker(fg: tuple, bg: tuple) -> None:
    _W.update(fg=np.array(fg, np.float32), bg=np.array(bg, np.float32))


def _init_pool_worker(fg: tuple, bg: tuple) -> None:
    """A pool worker ignores Ctrl-C: the parent reports it once and ends the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(fg, bg)


def _measure_chunk(paths: list[str]) -> Features | str:
    """Features of ``paths``, or the one-line reason the first unreadable one fails."""
    parts = []
    for path in paths:
        try:
            cov = read_coverage(Path(path), _W["fg"], _W["bg"])
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            return f"cannot read image {printable(path)}: {e}"
        area, rnd, holes, seg_region, seg_area = measure(cov)
        parts.append(
            Features(np.zeros(len(area), np.int64), area, rnd, holes, seg_region, seg_area, 1)
        )
    return Features.join(parts)


@contextlib.contextmanager
def _mapper(fg: tuple, bg: tuple, workers: int) -> Iterator[Callable]:
    """An ordered map over chunks: this process's own for one worker, else a pool's (spawn,
    as the generator's: fork would copy a large parent)."""
    if workers == 1:
        _init_worker(fg, bg)
        yield map
        return
    ctx = mp.get_context("spawn")
    if threading.current_thread() is not threading.main_thread():
        pool = ctx.Pool(workers, _init_pool_worker, (fg, bg))
    else:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            pool = ctx.Pool(workers, _init_pool_worker, (fg, bg))
        finally:
            signal.signal(signal.SIGINT, previous)
    with pool:
        yield pool.imap


def measure_images(paths: list[Path], fg: tuple, bg: tuple, workers: int | None = None) -> Features:
    """Features of every image in ``paths`` (in order), on a process pool where it pays."""
    if workers is None:
        workers = usable_cpus() if len(paths) >= POOL_FROM else 1
    chunks = [[str(p) for p in paths[i : i + CHUNK]] for i in range(0, len(paths), CHUNK)]
    parts = []
    with _mapper(fg, bg, min(workers, max(1, len(chunks)))) as imap:
        for part in imap(_measure_chunk, chunks):
            if isinstance(part, str):
                raise CountnetError(part)
            parts.append(part)
    return Features.join(parts) if parts else Features.join([])


# -- counting, fitting -------------------------------------------------------
def count_components(f: Features, p: Params) -> np.ndarray:
    """Each image's count under ``p``: the sum of its components' counts."""
    a = p.circle_area
    segs = np.bincount(
        f.seg_region[f.seg_area >= p.segment_area * a], minlength=len(f.area)
    ).astype(np.float64)
    single = segs <= 1
    if p.count_by == "one":
        n = np.ones(len(f.area))
    elif p.count_by == "area":
        n = np.maximum(1, np.rint(f.area / a))
    elif p.count_by == "watershed":
        n = np.maximum(1, segs)
    else:
        n = np.maximum(np.maximum(1, segs), np.rint(f.area / a))
    drop = f.area < p.min_area * a
    if p.min_roundness > 0:  # a holed component, or one not round that splits no further
        drop |= (f.holes > 0) | (single & (f.roundness < p.min_roundness))
    n = np.where(drop, 0.0, n)
    return np.bincount(f.image, weights=n, minlength=f.n_images)


def candidates(f: Features, fg: tuple, bg: tuple, colours: str) -> Iterator[Params]:
    """The grid searched. One circle's area among the round components' areas: their
    quantiles (distractors may be round too: a ring whose hole the pixels lose) and a
    few around their median."""
    round_ = f.area[(f.roundness >= ROUND_ENOUGH) & (f.holes == 0)]
    round_ = round_ if round_.size else f.area
    if not round_.size:
        round_ = np.ones(1)
    areas = [*np.percentile(round_, AREA_QUANTILES), *(np.median(round_) * np.array(AREA_SCALE))]
    areas = sorted({round(float(a), 3) for a in areas if a > 0})
    seen = set()
    # simplest first (a tie keeps the earlier): count by, then the filters, then the area
    for by, rnd, min_area, area, seg in itertools.product(
        COUNT_BY, ROUNDNESS, MIN_AREA, areas, SEGMENT_AREA
    ):
        uses_seg = by in COUNT_BY[2:] or rnd > 0  # the shape filter spares a blob that splits
        uses_area = by != "one" or min_area > 0 or uses_seg
        key = (by, rnd, min_area, area if uses_area else 0, seg if uses_seg else 0)
        if key not in seen:  # a parameter the rule does not use: one candidate, not several
            seen.add(key)
            yield Params(fg, bg, colours, area, rnd, min_area, seg, by)


def fit(f: Features, labels: np.ndarray, fg: tuple, bg: tuple, colours: str) -> Params:
    """The candidate with the fewest training errors (then the lowest MAE; the earlier, i.e.
    simpler, on a tie)."""
    best, best_key = None, None
    for p in candidates(f, fg, bg, colours):
        pred = count_components(f, p)
        key = (float(np.mean(pred != labels)), float(np.mean(np.abs(pred - labels))))
        if best_key is None or key < best_key:
            best, best_key = p, key
        if key == (0.0, 0.0):
            break  # perfect on train: nothing later can beat it
    if best is None:
        raise CountnetError("no training image to fit the classical counter on")
    return Params(**{**asdict(best), "train_error_rate": best_key[0], "train_mae": best_key[1]})


# -- a set -----------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    name: str
    paths: list[Path]
    counts: np.ndarray


def read_set(root: Path) -> dict[str, Split]:
    """A counting set's splits (train/ and valid/, test/ where present), each image with
    the count its class folder names; anything else is refused in one line."""
    if not root.is_dir():
        raise CountnetError(f"{printable(str(root))}: no such folder")
    splits = {}
    for name in SPLITS:
        folder = root / name
        if not folder.is_dir():
            continue
        paths, counts = [], []
        for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not (cls.name.isascii() and cls.name.isdigit()):
                raise CountnetError(
                    f"{printable(str(cls))}: class folders must be named by counts (0, 1, 2, "
                    "...): the classical counter counts circles"
                )
            files = sorted(f for f in cls.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            special = next((f for f in files if _special(f)), None)
            if special is not None:  # opening a FIFO would wait for a writer forever
                raise CountnetError(
                    f"cannot read image {printable(str(special))}: not a regular file (a "
                    "FIFO, socket or device)"
                )
            paths += files
            counts += [int(cls.name)] * len(files)
        splits[name] = Split(name, paths, np.array(counts, np.float64))
    where = printable(str(root))
    if not splits.get("train") or not splits["train"].paths:
        raise CountnetError(f"{where} has no train/<count>/ images to fit the counter on")
    if not any(splits.get(n) and splits[n].paths for n in SPLITS[1:]):
        raise CountnetError(f"{where} has no valid/<count>/ or test/<count>/ images to score")
    return splits


def _special(path: Path) -> bool:
    """Whether ``path`` is a FIFO, socket or device (a missing file or a symlink loop is
    not: opening it fails at once, with its own reason)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def colours(root: Path, train: Split) -> tuple[tuple, tuple, str]:
    """(fg, bg, where from): dataset.json's colours, else the mean colours on each side of
    Otsu's threshold over a sample of training images (the rarer side is foreground)."""
    try:
        spec = (read_dataset_json(root) or {})["spec"]  # a regular file of sane size only
        fg, bg = (_hex_rgb(spec["fg"]), _hex_rgb(spec["bg"]))
        if fg == bg:  # a damaged or foreign dataset.json: no line to project onto
            raise ValueError("fg is bg")
        return fg, bg, "dataset.json"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    step = max(1, len(train.paths) // OTSU_SAMPLE)
    pixels = []
    for path in train.paths[::step]:
        try:
            with Image.open(path) as im:
                pixels.append(np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise CountnetError(f"cannot read image {printable(str(path))}: {e}") from None
    rgb = np.concatenate(pixels)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if gray.min() == gray.max():
        raise CountnetError(f"{printable(str(root))}: the training images are one flat colour")
    high = gray > threshold_otsu(gray)
    fg_side = high if high.mean() < 0.5 else ~high
    fg, bg = rgb[fg_side].mean(0), rgb[~fg_side].mean(0)
    return tuple(float(v) for v in fg), tuple(float(v) for v in bg), "otsu"


def _hex_rgb(text: str) -> tuple[float, float, float]:
    h = str(text).lstrip("#")
    if len(h) != 6:
        raise ValueError(text)
    return tuple(float(int(h[i : i + 2], 16)) for i in (0, 2, 4))


def scores(pred: np.ndarray, counts: np.ndarray) -> dict:
    """error_rate (the rounded count is not the label) and MAE, over all and per count."""
    per_count = {}
    for c in np.unique(counts):
        sel = counts == c
        per_count[str(int(c))] = {
            "n": int(sel.sum()),
            "error_rate": float(np.mean(np.rint(pred[sel]) != c)),
            "mae": float(np.mean(np.abs(pred[sel] - c))),
        }
    return {
        "images": int(len(counts)),
        "error_rate": float(np.mean(np.rint(pred) != counts)) if len(counts) else 0.0,
        "mae": float(np.mean(np.abs(pred - counts))) if len(counts) else 0.0,
        "per_count": per_count,
    }


def run_baseline(root: Path, workers: int | None = None) -> tuple[dict, list[dict]]:
    """Fit on ``root``'s train/, score on valid/ and test/: (metrics, prediction rows)."""
    splits = read_set(root)
    fg, bg, source = colours(root, splits["train"])
    train = splits["train"]
    params = fit(measure_images(train.paths, fg, bg, workers), train.counts, fg, bg, source)
    scored = [s for n, s in splits.items() if n != "train" and s.paths]
    paths = [p for s in scored for p in s.paths]
    pred = count_components(measure_images(paths, fg, bg, workers), params)
    counts = np.concatenate([s.counts for s in scored])
    names = [s.name for s in scored for _ in s.paths]
    metrics = {"set": root.name, "path": str(root), **scores(pred, counts)}
    metrics.update(method=METHOD, params=asdict(params), splits={})
    for s in scored:
        sel = np.array([n == s.name for n in names])
        metrics["splits"][s.name] = {k: v for k, v in scores(pred[sel], counts[sel]).items()}
    rows = [
        {"path": str(p.relative_to(root)), "split": n, "count": int(c),
         "prediction": int(y), "error": int(abs(y - c))}
        for p, n, c, y in zip(paths, names, counts, pred, strict=True)
    ]  # fmt: skip
    return metrics, rows


def write_baseline(metrics: dict, rows: list[dict], final: Path) -> Path:
    """metrics.json and predictions.csv into ``final``, replacing an earlier baseline's
    folder (never anything else) in one rename."""
    with (
        exclusive(final, "baseline"),
        staging_dir(final, force=True, what="baseline folder", replaceable=is_baseline) as tmp,
    ):
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_csv(tmp / "predictions.csv", PRED_FIELDS, rows)
    return final


def is_baseline(folder: Path) -> bool:
    """Whether ``folder`` holds a baseline's files and nothing else."""
    names = {p.name for p in folder.iterdir()}
    return names <= {"metrics.json", "predictions.csv"} and "metrics.json" in names


def baseline_into(data: Path | str, out: Path | str, workers: int | None = None, say=print) -> None:
    """The workflow's baseline job: the counter fitted on ``data``'s train/, scored, and
    written to ``out``."""
    metrics, rows = run_baseline(Path(data).resolve(), workers)
    write_baseline(metrics, rows, Path(out))
    say(
        f"{metrics['set']}: {metrics['images']} images, error_rate {metrics['error_rate']:.4f}, "
        f"MAE {metrics['mae']:.3f} ({metrics['params']['count_by']})"
    )
