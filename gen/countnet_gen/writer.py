"""Files: render every image of a DatasetSpec into train/<count>/ and valid/<count>/,
with manifest.csv (one row per image, every circle) and dataset.json, atomically.

Each image's randomness comes from SeedSequence(seed, spawn_key=(layout key, count, index)),
so the pixels do not depend on how the work is split across processes or batches
(make_images), and two sets with different parameters (the layout key hashes them) never
share an image.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import multiprocessing as mp
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, features

from countnet.atomic import check_replaceable, exclusive, staging_dir
from countnet.cpus import usable_cpus
from countnet.errors import CountnetError
from countnet.malloc import retain_freed_memory
from countnet.tables import csv_text, read_csv
from countnet.versions import package_versions
from countnet_gen import PIXELS_VERSION
from countnet_gen.distractors import RING_WIDTH, SHAPES
from countnet_gen.outdir import (
    DATASET_JSON,
    MANIFEST,
    MAX_DATASET_JSON,
    check_out,
    is_dataset,
    resolve_out,
)
from countnet_gen.render import RIM, coverage_u8_many, palette
from countnet_gen.sampler import GAP, sample_layouts
from countnet_gen.spec import DatasetSpec, color_rgb

MANIFEST_FIELDS = ("path", "split", "count", "circles")
# PNG zlib level 1 with the run-length strategy: lossless like any setting, and these images
# (long runs of background between short anti-aliased rims) come out smaller and faster with
# Z_RLE than with deflate's string matching. Figures: BENCHMARKS.md, "Generation throughput".
PNG_LEVEL = 1
PNG_STRATEGY = zlib.Z_RLE  # dataset.json records both
# Images placed and drawn together (make_images), sharing their NumPy calls: most of the gain
# is reached by 64 at every size measured (BENCHMARKS.md, "Generation throughput", gen_batch).
RENDER_BATCH = 64


@dataclass(frozen=True)
class ImageJob:
    count: int
    index: int
    split: str

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.count}/{self.count:03d}_{self.index:06d}.png"


def plan_images(spec: DatasetSpec) -> list[ImageJob]:
    """Every image of the dataset, in a fixed order; the last n_valid of each class are
    the validation split, and every image of a held-out count is in test/."""
    return [
        ImageJob(count, i, _split(spec, count, i))
        for count in spec.classes
        for i in range(spec.per_class)
    ]


def _split(spec: DatasetSpec, count: int, index: int) -> str:
    if count in spec.holdout:
        return "test"
    return "train" if index < spec.n_train else "valid"


@functools.lru_cache(maxsize=16)
def _layout_key(spec: DatasetSpec) -> int:
    return spec.layout_key()  # a hash of the whole spec: once per spec, not per image


@functools.lru_cache(maxsize=16)
def _distractor_plan(spec: DatasetSpec):
    return spec.distractor_plan()  # likewise once per spec


def image_rng(spec: DatasetSpec, count: int, index: int) -> np.random.Generator:
    key = (_layout_key(spec), count, index)
    return np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=key))


class Rendered(NamedTuple):
    circles: np.ndarray  # (n, 3): x, y, r
    index: np.ndarray  # (size, size) uint8 coverage indices into the palette
    distractors: np.ndarray  # (k, 5): x, y, r, angle, shape index (sampler.sample_layout)


def make_image(spec: DatasetSpec, job: ImageJob) -> Rendered:
    """One image's objects and pixels: a pure function of spec and job."""
    return next(make_images(spec, [job]))


def make_images(spec: DatasetSpec, jobs: list[ImageJob]) -> Iterator[Rendered]:
    """``make_image`` of each job, in order, made RENDER_BATCH at a time: the same images,
    with fewer NumPy calls each (sampler.sample_layouts, render.coverage_u8_many); one
    batch's pixels in memory at a time."""
    for batch in _chunks(jobs, RENDER_BATCH):
        yield from _make_batch(spec, batch)


def _make_batch(spec: DatasetSpec, jobs: list[ImageJob]) -> list[Rendered]:
    rngs = [image_rng(spec, job.count, job.index) for job in jobs]
    layouts = sample_layouts(
        rngs,
        [job.count for job in jobs],
        spec.size,
        spec.radius,
        spec.no_overlap,
        _distractor_plan(spec),
    )
    # --no-overlap objects share no pixel while the gap exceeds both anti-aliased rims
    disjoint = spec.no_overlap and GAP >= 2 * RIM
    index = coverage_u8_many(layouts, spec.size, disjoint=disjoint)
    return [Rendered(c, idx, d) for (c, d), idx in zip(layouts, index, strict=True)]


def encode_png(index_img: np.ndarray, pal: bytes) -> bytes:
    im = Image.frombytes("P", index_img.shape[::-1], index_img.tobytes())
    im.putpalette(pal)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=PNG_LEVEL, compress_type=PNG_STRATEGY)
    return buf.getvalue()


def _circles_json(circles: np.ndarray) -> str:
    return json.dumps(np.round(circles, 3).tolist(), separators=(",", ":"))


def _distractors_json(distractors: np.ndarray) -> str:
    """[shape, x, y, r, angle in degrees] per distractor."""
    rows = [
        [SHAPES[int(s)], *np.round([x, y, r], 3).tolist(), round(float(np.degrees(a)), 2)]
        for x, y, r, a, s in distractors
    ]
    return json.dumps(rows, separators=(",", ":"))


# -- worker side ---------------------------------------------------------
_W: dict = {}


def _init_worker(spec_dict: dict, root: str) -> None:
    spec = DatasetSpec.from_dict(spec_dict)
    _W.update(
        spec=spec, root=Path(root), pal=palette(color_rgb(spec.fg), color_rgb(spec.bg)).tobytes()
    )


def _init_pool_worker(spec_dict: dict, root: str) -> None:
    """A worker process of generate()'s pool: its own process, so its malloc may be tuned.
    Ctrl-C reaches the whole process group: the parent reports it once and ends the pool,
    where each worker would otherwise print its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    retain_freed_memory()  # else each image page-faults its temporaries back in
    _init_worker(spec_dict, root)


def _write_chunk(jobs: list[ImageJob]) -> list[tuple]:
    spec, root, pal = _W["spec"], _W["root"], _W["pal"]
    rows = []
    for job, image in zip(jobs, make_images(spec, jobs), strict=True):
        (root / job.relpath).write_bytes(encode_png(image.index, pal))
        row = (job.relpath, job.split, job.count, _circles_json(image.circles))
        if spec.distractors[1]:
            row += (_distractors_json(image.distractors),)
        rows.append(row)
    return rows


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def generate(
    spec: DatasetSpec,
    out: Path | str | None = None,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate ``spec`` into ``out`` (default datasets/<derived name>) and return its path,
    symlinks resolved (``outdir``: a link's target is written, the link stays).

    ``workers``: processes to use (default: the CPUs this process may use; 1 runs in this
    process).
    ``progress(done, total)`` is called as images complete.
    """
    final = resolve_out(out if out is not None else spec.out_dir())
    if workers is None:
        workers = usable_cpus()
    if workers < 1:
        raise CountnetError(f"--workers must be at least 1, got {workers}")
    jobs = plan_images(spec)
    # Checked before the lock (a refused run creates nothing), and again under it.
    check_out(final, force=force)
    check_replaceable(final, force=force, replaceable=is_dataset)
    with exclusive(final, "dataset"):
        check_out(final, force=force)
        with staging_dir(final, force=force, replaceable=is_dataset) as tmp:
            _make_folders(spec, tmp)
            rows = _write_images(spec, tmp, jobs, workers, progress)
            _write_manifest(tmp / MANIFEST, manifest_fields(spec), rows)
            (tmp / DATASET_JSON).write_text(json.dumps(dataset_metadata(spec), indent=2) + "\n")
    return final


def _make_folders(spec: DatasetSpec, root: Path) -> None:
    """Every trained count's train/ and valid/ folder, even an empty one (--valid-pct 0):
    training then says which split lacks images instead of misreading the layout; and each
    held-out count's test/ folder."""
    folders = [(sp, c) for sp in ("train", "valid") for c in spec.trained_classes]
    for split, count in folders + [("test", c) for c in spec.holdout]:
        (root / split / str(count)).mkdir(parents=True, exist_ok=True)


def _chunk_size(n_jobs: int, workers: int) -> int:
    """Images a worker writes per task: small enough for a smooth progress bar, large enough
    to amortise IPC. Whole batches of RENDER_BATCH images (made together) where a chunk holds
    more than one: a small set keeps its small chunks, so every worker still gets some."""
    chunk = max(1, min(256, n_jobs // (workers * 8) or 1))
    if chunk > RENDER_BATCH:
        chunk = -(-chunk // RENDER_BATCH) * RENDER_BATCH
    return chunk


def _write_images(
    spec: DatasetSpec,
    root: Path,
    jobs: list[ImageJob],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[tuple]:
    """Every job's PNG under ``root``, in chunks; the manifest rows, in job order."""
    rows: list[tuple] = []
    with _chunk_mapper(spec, root, workers) as imap:
        for part in imap(_write_chunk, _chunks(jobs, _chunk_size(len(jobs), workers))):
            rows.extend(part)
            if progress:
                progress(len(rows), len(jobs))
    return rows


@contextlib.contextmanager
def _chunk_mapper(spec: DatasetSpec, root: Path, workers: int) -> Iterator[Callable]:
    """An ordered, lazy map over chunks: this process's own for one worker, else a pool's."""
    if workers == 1:
        _init_worker(spec.to_dict(), str(root))
        yield map
        return
    # spawn: fork would copy a possibly large parent (e.g. a Snakemake or torch process).
    # Workers are born ignoring SIGINT (kept across exec): a Ctrl-C while one still imports,
    # before its initializer runs, would print that worker's traceback. Only the main
    # thread may set handlers (a caller running this in a worker thread gets no Ctrl-C there).
    ctx, args = mp.get_context("spawn"), (spec.to_dict(), str(root))
    if threading.current_thread() is not threading.main_thread():
        pool = ctx.Pool(workers, _init_pool_worker, args)
    else:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            pool = ctx.Pool(workers, _init_pool_worker, args)
        finally:
            signal.signal(signal.SIGINT, previous)
    with pool:
        yield pool.imap


def manifest_fields(spec: DatasetSpec) -> tuple[str, ...]:
    return MANIFEST_FIELDS + (("distractors",) if spec.distractors[1] else ())


DISTRACTORS_NOTE = (
    "manifest column distractors: [shape, x, y, r, angle] each; r: radius of the circle the "
    f"shape is inscribed in (a ring's outer radius; rings {RING_WIDTH:.3g} of it wide); angle "
    "in degrees"
)


def dataset_metadata(spec: DatasetSpec) -> dict:
    """dataset.json: the spec, the split sizes, the file format and the versions that made it."""
    trained = len(spec.trained_classes)
    meta = {
        "spec": spec.to_dict(),
        "classes": spec.classes,
        "n_images": spec.n_images,
        "n_train": spec.n_train * trained,
        "n_valid": spec.n_valid * trained,
        "image_format": "PNG, 8-bit palette (coverage index into a fg/bg blend)",
        "png": {"zlib_level": PNG_LEVEL, "zlib_strategy": "Z_RLE"},
        "coordinates": "x, y, r in pixels; pixel (i, j) covers [j, j+1) x [i, i+1)",
    }
    if spec.distractors[1]:
        meta["distractors"] = DISTRACTORS_NOTE
    meta["pixels_version"] = PIXELS_VERSION
    if spec.holdout:  # held-out counts (--holdout): only in test/, all their images
        meta["test_classes"] = list(spec.holdout)
        meta["n_test"] = spec.per_class * len(spec.holdout)
    # PNG bytes depend on Pillow, its zlib (or zlib-ng) and the settings above; pixels do not
    meta["versions"] = {
        **package_versions(),
        "zlib": features.version("zlib"),
        "zlib_ng": features.version("zlib_ng"),
    }
    return meta


def _write_manifest(path: Path, fields: tuple[str, ...], rows: list[tuple]) -> None:
    path.write_text(csv_text(fields, rows), newline="")  # csv's own CRLF line ends, kept


def read_manifest(root: Path | str) -> list[dict]:
    """Rows of a dataset's manifest with ``circles`` decoded to an (n, 3) array."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise CountnetError(f"{root} has no {MANIFEST}: it was not made by countnet gen")
    try:  # a damaged or hand-edited manifest: one line naming it, not a traceback
        rows = read_csv(path)
        for row in rows:
            row["count"] = int(row["count"])
            circles = json.loads(row["circles"])
            row["circles"] = np.asarray(circles, dtype=np.float64).reshape(-1, 3)
            # (shape, x, y, r, angle in degrees) tuples; none in sets made without distractors
            row["distractors"] = [tuple(d) for d in json.loads(row.get("distractors") or "[]")]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CountnetError(f"{path} is damaged ({type(e).__name__}: {e})") from None
    return rows


def read_dataset_spec(root: Path | str) -> DatasetSpec:
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        raise CountnetError(f"{root} has no {DATASET_JSON}: it was not made by countnet gen")
    if path.stat().st_size > MAX_DATASET_JSON:
        raise CountnetError(f"{path} is damaged (over {MAX_DATASET_JSON >> 20} MB)")
    try:  # a damaged or hand-edited dataset.json: one line naming it
        return DatasetSpec.from_dict(json.loads(path.read_text(encoding="utf-8"))["spec"])
    except CountnetError as e:  # a spec gen would refuse: say so, naming the file
        raise CountnetError(f"{path} is damaged ({e})") from None
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CountnetError(f"{path} is damaged ({type(e).__name__}: {e})") from None


def generate_logged(
    spec: DatasetSpec, out: Path | str, *, workers: int, say: Callable[[str], None]
) -> Path:
    """``generate`` for workflow jobs, replacing ``out`` (Snakemake owns the output path and
    has already cleared it), saying as it runs what is being made, progress every 10%, then
    the summary (the job says the error that stops it)."""
    import time

    say(f"generating {spec.n_images} images of {spec.to_dict()} into {out} ({workers} workers)")
    t0 = time.perf_counter()
    marks = iter(range(10, 101, 10))
    mark = next(marks)

    def progress(done: int, total: int) -> None:
        nonlocal mark
        while mark is not None and done * 100 >= mark * total:
            say(f"{done}/{total} images ({mark}%)")
            mark = next(marks, None)

    path = generate(spec, out, workers=workers, force=True, progress=progress)
    dt = time.perf_counter() - t0
    say(f"generated {spec.n_images} images in {dt:.1f}s ({spec.n_images / dt:.0f} images/s)")
    return path
