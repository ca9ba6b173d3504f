"""How many images a generator worker makes together (writer.RENDER_BATCH) and how many
summed images share one canvas (render.SUM_PIXELS): each value against one image at a
time, measured in this run (ratios, not seconds: machines here are shared and noisy).

    uv run python bench/gen_batch.py [--images 320] [--repeats 5] [--batches 1 8 16 32 64]

A worker's whole job per image, as ``countnet gen`` does it (writer._write_chunk: placement,
coverage indices, PNG encoding, the file write, the manifest row), with countnet's malloc
setting, into fresh folders that are deleted only at the end (see bench/gen_throughput.py).
Values run interleaved, each round starting one value later; medians. The images are the
same whatever the values (tests/test_gen_render.py). A batch of 1 is today's code one image
at a time, which pays for the batching's bookkeeping: against the code before batching,
see bench/gen_before_after.py.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from countnet.malloc import retain_freed_memory
from countnet_gen import render, writer
from countnet_gen.spec import DatasetSpec

CASES = {
    "224 px, fixed r6, --no-overlap": {"size": 224, "radius": 6, "no_overlap": True},
    "224 px, r4-12, --no-overlap": {"size": 224, "radius": "4-12", "no_overlap": True},
    "224 px, fixed r6, overlap allowed": {"size": 224, "radius": 6},
    "64 px, r1.5-3, --no-overlap": {"size": 64, "radius": "1.5-3", "no_overlap": True},
}


def rate(spec: DatasetSpec, n: int, out: Path) -> float:
    """A worker's images/s on n images of ``spec`` written under ``out``."""
    for c in spec.classes:
        (out / "train" / str(c)).mkdir(parents=True)
    writer._init_worker(spec.to_dict(), str(out))
    jobs = [writer.ImageJob(spec.classes[i % len(spec.classes)], i, "train") for i in range(n)]
    t0 = time.perf_counter()
    writer._write_chunk(jobs)
    return n / (time.perf_counter() - t0)


def sweep(spec: DatasetSpec, n: int, values: list, set_value, repeats: int, tmp: Path) -> dict:
    """Each value's median rate and its rounds, values interleaved and rotated per round."""
    rates: dict = {v: [] for v in values}
    for r in range(repeats):
        for v in values[r % len(values) :] + values[: r % len(values)]:
            set_value(v)
            rates[v].append(rate(spec, n, Path(tempfile.mkdtemp(dir=tmp))))
    return {v: (statistics.median(x), x) for v, x in rates.items()}


def show(title: str, res: dict, label) -> None:
    base = next(iter(res.values()))[0]
    print(f"{title}")
    for v, (med, runs) in res.items():
        each = " ".join(f"{x:.0f}" for x in runs)
        print(f"  {label(v):>14s} {med:8.0f} images/s  {med / base:5.2f}x  ({each})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=320, help="images per value per round")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    args = ap.parse_args()
    retain_freed_memory()  # as in a countnet gen worker
    batch, sum_pixels = writer.RENDER_BATCH, render.SUM_PIXELS
    tmp = Path(tempfile.mkdtemp(prefix="countnet-bench-", dir=args.dir))
    print(
        f"# gen_batch {time.strftime('%Y-%m-%d %H:%M')}: {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; {args.images} images per value "
        f"per round, {args.repeats} interleaved rounds (median), 45-50 circles, PNGs written to "
        f"{tmp.parent}; RENDER_BATCH {batch}, SUM_PIXELS {sum_pixels} in the code"
    )
    try:
        for title, kw in CASES.items():
            spec = DatasetSpec.from_dict({"range": "45-50", "per_class": 10, **kw})
            res = sweep(
                spec,
                args.images,
                args.batches,
                lambda v: setattr(writer, "RENDER_BATCH", v),
                args.repeats,
                tmp,
            )
            show(f"RENDER_BATCH, {title} (vs 1)", res, lambda v: f"{v} image{'s' * (v > 1)}")
        writer.RENDER_BATCH = batch
        title = "224 px, fixed r6, overlap allowed"  # the summed path
        spec = DatasetSpec.from_dict({"range": "45-50", "per_class": 10, **CASES[title]})
        # summed canvases of one image (as before batching), the code's, and unlimited
        values = [224 * 224, sum_pixels, 1 << 40]
        res = sweep(
            spec,
            args.images,
            values,
            lambda v: setattr(render, "SUM_PIXELS", v),
            args.repeats,
            tmp,
        )
        names = {values[0]: "1 image", values[1]: f"{sum_pixels} px", values[2]: "unlimited"}
        show(f"SUM_PIXELS, {title}, RENDER_BATCH {batch}", res, names.__getitem__)
    finally:
        writer.RENDER_BATCH, render.SUM_PIXELS = batch, sum_pixels
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
