"""Generation throughput at 224 px: countnet's generator vs. the blog's matplotlib way and
a naive Pillow drawer, all measured in this run on this machine (compare ratios, not
seconds: machines here are shared and noisy).

    uv run python bench/gen_throughput.py [--images 600] [--workers 1 2]

Every method renders the same kind of image (45-50 circles, 224 px, PNG to disk) and is
timed end to end including the PNG write. Per-core figures come from one process;
scaling comes from ``countnet_gen.writer.generate`` with 1..W workers.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from countnet_gen.cpus import usable_cpus
from countnet_gen.spec import DatasetSpec, color_rgb
from countnet_gen.writer import ImageJob, _init_worker, _write_chunk, generate

SIZE = 224


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
        ax.scatter(rng.random(k), rng.random(k), s=40)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.axis("off")
        fig.savefig(out / f"mpl_{i}.png", dpi=100)
        plt.close(fig)
    return n / (time.perf_counter() - t0)


def bench_pillow(n: int, out: Path) -> float:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    fg = color_rgb("#1f77b4")
    t0 = time.perf_counter()
    for i in range(n):
        k = int(rng.integers(45, 51))
        im = Image.new("RGB", (SIZE, SIZE), "white")
        draw = ImageDraw.Draw(im)
        for x, y in rng.uniform(6, SIZE - 6, (k, 2)):
            draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill=fg)
        im.save(out / f"pil_{i}.png")
    return n / (time.perf_counter() - t0)


def bench_countnet_core(spec: DatasetSpec, n: int, out: Path) -> float:
    """One process, no pool: the per-core figure."""
    for c in spec.classes:
        (out / "train" / str(c)).mkdir(parents=True, exist_ok=True)
    _init_worker(spec.to_dict(), str(out))
    jobs = [ImageJob(spec.classes[i % len(spec.classes)], i, "train") for i in range(n)]
    t0 = time.perf_counter()
    _write_chunk(jobs)
    return n / (time.perf_counter() - t0)


def bench_countnet_workers(spec: DatasetSpec, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    generate(spec, out / f"w{workers}", workers=workers, force=True)
    return spec.n_images / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=600, help="images per per-core measurement")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, usable_cpus()])
    ap.add_argument("--scaling-images", type=int, default=6000, help="images per scaling run")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    args = ap.parse_args()
    n = args.images
    cases = {
        "fixed r6, overlap allowed": DatasetSpec(counts=(45, 50), per_class=n // 6, size=SIZE),
        "fixed r6, --no-overlap": DatasetSpec(
            counts=(45, 50), per_class=n // 6, size=SIZE, no_overlap=True
        ),
        "r4-12, --no-overlap": DatasetSpec(
            counts=(45, 50), per_class=n // 6, size=SIZE, radius=(4, 12), no_overlap=True
        ),
    }
    tmp = Path(tempfile.mkdtemp(prefix="countnet-bench-", dir=args.dir))
    try:
        print(
            f"# gen_throughput: {platform.node()} {platform.processor() or platform.machine()}, "
            f"{usable_cpus()} usable cores, {n} images per figure, {SIZE} px, 45-50 circles, PNGs "
            f"written to {tmp.parent}"
        )
        mpl = bench_matplotlib(max(n // 4, 50), tmp)
        pil = bench_pillow(n, tmp)
        print(f"{'method':44s} {'images/s/core':>14s} {'vs matplotlib':>14s}")
        print(f"{'matplotlib scatter + savefig (baseline)':44s} {mpl:14.0f} {1.0:13.1f}x")
        print(f"{'naive Pillow ImageDraw.ellipse':44s} {pil:14.0f} {pil / mpl:13.1f}x")
        for label, spec in cases.items():
            d = tmp / label.replace(" ", "_").replace(",", "")
            rate = bench_countnet_core(spec, n, d)
            print(f"{'countnet ' + label:44s} {rate:14.0f} {rate / mpl:13.1f}x")
        print()
        spec = DatasetSpec(counts=(45, 50), per_class=max(args.scaling_images // 6, 1), size=SIZE)
        base = None
        print(
            f"{'workers':>8s} {'images/s':>10s} {'speed-up':>9s} {'efficiency':>11s}  "
            f"(generate(), {spec.n_images} images, fixed r6)"
        )
        for w in args.workers:
            rate = bench_countnet_workers(spec, w, tmp)
            base = base or rate
            print(f"{w:8d} {rate:10.0f} {rate / base:8.2f}x {rate / base / w:10.0%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
