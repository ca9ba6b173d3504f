"""Generation throughput at 224 px: countnet's generator vs. the blog's matplotlib way and
a Pillow drawer, all measured in this run on this machine (compare ratios, not seconds:
machines here are shared and noisy).

    uv run python bench/gen_throughput.py [--images 300] [--repeats 3] [--workers 1 2]
    uv run python bench/gen_throughput.py | tee bench/results/gen_throughput_$(date +%F).txt

Every method renders the same images' worth of work (45-50 circles, 224 px) and is timed end
to end including the PNG write, on the same number of images. The baselines get countnet's
PNG settings: the Pillow drawer writes an 8-bit palette PNG (fg/bg blend, like countnet's)
with countnet's zlib level and strategy; matplotlib writes its own RGBA PNG (that is how
the blog made its images). Methods run interleaved, ``--repeats`` rounds, and each figure
is the median; each round starts one method later, so none is always first or last.
Every method runs with countnet's malloc setting (countnet/malloc.py), as a ``countnet
gen`` worker does: set once, for the whole process. Scaling runs
``countnet_gen.writer.generate`` (fixed r6, --no-overlap) with 1 worker (always measured:
the base of the efficiency) and each ``--workers`` value, also interleaved with medians.

The file system is timed beside them, every round, and printed apart: countnet's own PNG
files (r4-12) created and written into class folders as a worker writes them, nothing
drawn. What it costs here bounds every method's rate, and it moves: on a journal-less
ext4 (this project's VMs) creating a file scans past the inodes deleted in the last minutes
(the kernel's ``recently_deleted``, found with perf): 0.4-0.6 ms a file within minutes of
a mass deletion (a test run, an earlier run's clean-up), 0.02-0.05 ms otherwise. So every
round writes into new folders and nothing is deleted until the end, and a run started right
after another (or after tests) shows that one's deletions in its file-system line.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL

from countnet.cpus import usable_cpus
from countnet.malloc import retain_freed_memory
from countnet_gen.render import palette
from countnet_gen.spec import DatasetSpec, color_rgb
from countnet_gen.writer import (
    PNG_LEVEL,
    PNG_STRATEGY,
    ImageJob,
    _init_pool_worker,
    _write_chunk,
    encode_png,
    generate,
    make_images,
)

SIZE = 224
FG = "#1f77b4"
FILES = "the file system alone"


def bench_matplotlib(n: int, out: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n):
        k = int(rng.integers(45, 51))
        fig = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.scatter(rng.random(k), rng.random(k), s=40, c=FG)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.axis("off")
        fig.savefig(out / f"mpl_{i}.png", dpi=100)
        plt.close(fig)
    return n / (time.perf_counter() - t0)


def bench_pillow(n: int, out: Path) -> float:
    """ImageDraw.ellipse per circle (radius 6, overlap allowed) into an 8-bit palette image
    with countnet's palette, saved with countnet's zlib level and strategy: countnet's output
    format, drawn the obvious way (Pillow's ellipses are not anti-aliased)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    pal = palette(color_rgb(FG), color_rgb("#ffffff")).tobytes()
    t0 = time.perf_counter()
    for i in range(n):
        k = int(rng.integers(45, 51))
        im = Image.new("P", (SIZE, SIZE), 0)
        im.putpalette(pal)
        draw = ImageDraw.Draw(im)
        for x, y in rng.uniform(6, SIZE - 6, (k, 2)):
            draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill=255)
        im.save(out / f"pil_{i}.png", compress_level=PNG_LEVEL, compress_type=PNG_STRATEGY)
    return n / (time.perf_counter() - t0)


def bench_countnet_core(spec: DatasetSpec, n: int, out: Path) -> float:
    """One process, no pool, set up as a pool worker is: the per-core figure."""
    for c in spec.classes:
        (out / "train" / str(c)).mkdir(parents=True, exist_ok=True)
    _init_pool_worker(spec.to_dict(), str(out))
    jobs = [ImageJob(spec.classes[i % len(spec.classes)], i, "train") for i in range(n)]
    t0 = time.perf_counter()
    _write_chunk(jobs)
    return n / (time.perf_counter() - t0)


def bench_files_only(pngs: list[bytes], out: Path) -> float:
    """Only the files: the given PNGs written into 6 class folders, as a worker does."""
    for c in range(6):
        (out / "train" / str(c)).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, data in enumerate(pngs):
        (out / "train" / str(i % 6) / f"{i:06d}.png").write_bytes(data)
    return len(pngs) / (time.perf_counter() - t0)


def countnet_pngs(spec: DatasetSpec, n: int) -> list[bytes]:
    pal = palette(color_rgb(spec.fg), color_rgb(spec.bg)).tobytes()
    jobs = [ImageJob(spec.classes[i % len(spec.classes)], i, "train") for i in range(n)]
    return [encode_png(image.index, pal) for image in make_images(spec, jobs)]


def bench_countnet_workers(spec: DatasetSpec, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    generate(spec, out / f"w{workers}", workers=workers, force=True)
    return spec.n_images / (time.perf_counter() - t0)


def medians(methods: dict[str, Callable[[Path], float]], repeats: int, tmp: Path) -> dict:
    """Run every method once per round, rounds interleaved, each round starting one method
    later than the last; each one's median rate."""
    rates: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            d = tmp / f"r{r}" / name.replace(" ", "_").replace(",", "").replace(":", "")
            d.mkdir(parents=True, exist_ok=True)
            rates[name].append(methods[name](d))  # d is kept until the end (docstring)
    return {name: (statistics.median(v), v) for name, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=300, help="images per method per round")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--workers", type=int, nargs="+", default=[usable_cpus()])
    ap.add_argument("--scaling-images", type=int, default=3000, help="images per scaling run")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    args = ap.parse_args()
    # as in a countnet gen worker, for every method alike: malloc settings are per process
    retain_freed_memory()
    n = args.images
    per_class = max(n // 6, 5)  # a valid spec (a validation image per class); jobs: n
    cases = {
        "fixed r6, overlap allowed": DatasetSpec(counts=(45, 50), per_class=per_class, size=SIZE),
        "fixed r6, --no-overlap": DatasetSpec(
            counts=(45, 50), per_class=per_class, size=SIZE, no_overlap=True
        ),
        "r4-12, --no-overlap": DatasetSpec(
            counts=(45, 50), per_class=per_class, size=SIZE, radius=(4, 12), no_overlap=True
        ),
    }
    methods: dict[str, Callable[[Path], float]] = {
        "matplotlib scatter + savefig (baseline)": lambda d: bench_matplotlib(n, d),
        "Pillow ImageDraw.ellipse, palette PNG": lambda d: bench_pillow(n, d),
    }
    for label, spec in cases.items():
        methods[f"countnet {label}"] = lambda d, spec=spec: bench_countnet_core(spec, n, d)
    pngs = countnet_pngs(cases["r4-12, --no-overlap"], n)
    methods[FILES] = lambda d: bench_files_only(pngs, d)
    tmp = Path(tempfile.mkdtemp(prefix="countnet-bench-", dir=args.dir))
    try:
        print(
            f"# gen_throughput {time.strftime('%Y-%m-%d %H:%M')}: {platform.node()} "
            f"{platform.processor() or platform.machine()}, {usable_cpus()} usable cores, "
            f"Python {platform.python_version()}, numpy {np.__version__}, Pillow "
            f"{PIL.__version__}; {n} images per method per round, {args.repeats} interleaved "
            f"rounds (median), {SIZE} px, 45-50 circles, PNGs written to {tmp.parent}"
        )
        res = medians(methods, args.repeats, tmp)
        files = res.pop(FILES)
        mpl = res["matplotlib scatter + savefig (baseline)"][0]
        print(f"{'method':44s} {'images/s/core':>14s} {'vs matplotlib':>14s}  rounds")
        for name, (med, runs) in res.items():
            each = " ".join(f"{v:.0f}" for v in runs)
            print(f"{name:44s} {med:14.0f} {med / mpl:13.1f}x  {each}")
        each = " ".join(f"{1e3 / v:.3f}" for v in files[1])
        print(
            f"# the file system alone: {1e3 / files[0]:.3f} ms to create and write one of "
            f"countnet's r4-12 PNGs (median; rounds {each}), of the "
            f"{1e3 / res['countnet r4-12, --no-overlap'][0]:.3f} ms countnet r4-12 takes an "
            "image in all"
        )
        print()
        spec = DatasetSpec(
            counts=(45, 50),
            per_class=max(args.scaling_images // 6, 5),
            size=SIZE,
            no_overlap=True,
        )
        counts = sorted({1, *args.workers})
        scaling = {str(w): (lambda d, w=w: bench_countnet_workers(spec, w, d)) for w in counts}
        res = medians(scaling, args.repeats, tmp)
        base = res["1"][0]
        print(
            f"{'workers':>8s} {'images/s':>10s} {'speed-up':>9s} {'efficiency':>11s}  rounds "
            f"(generate(), {spec.n_images} images, fixed r6, --no-overlap, vs 1 worker)"
        )
        for w in counts:
            med, runs = res[str(w)]
            each = " ".join(f"{v:.0f}" for v in runs)
            print(f"{w:8d} {med:10.0f} {med / base:8.2f}x {med / base / w:10.0%}  {each}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
