"""What writing RGB PNGs instead of countnet's 8-bit palette PNGs would cost the generator:
time to encode and bytes per image, beside the time to draw it (docs/interop.md says why
the palette stays).

    uv run python bench/png_modes.py [--images 300] [--repeats 3]

The same 224 px images of 45-50 circles (r4-12, --no-overlap, countnet's default colours)
are drawn once, then encoded in memory, no file written: as `countnet gen` does (palette,
zlib level 1, run-length strategy), as RGB with the same settings, and as RGB with
Pillow's defaults (level 6). Methods run interleaved, ``--repeats`` rounds, medians.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time

import numpy as np
import PIL
from PIL import Image

from countnet.malloc import retain_freed_memory
from countnet_gen.render import palette
from countnet_gen.spec import DatasetSpec, color_rgb
from countnet_gen.writer import PNG_LEVEL, PNG_STRATEGY, ImageJob, encode_png, make_images

SIZE = 224


def rgb_png(rgb: np.ndarray, **settings) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", **settings)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    retain_freed_memory()  # as a countnet gen worker
    spec = DatasetSpec(counts=(45, 50), per_class=max(args.images // 6, 5), size=SIZE,
                       radius=(4, 12), no_overlap=True)  # fmt: skip
    jobs = [ImageJob(spec.classes[i % 6], i, "train") for i in range(args.images)]
    pal = palette(color_rgb(spec.fg), color_rgb(spec.bg))
    t0 = time.perf_counter()
    index = [r.index for r in make_images(spec, jobs)]
    draw_ms = (time.perf_counter() - t0) * 1e3 / len(jobs)
    rgb = [pal[i] for i in index]
    countnet = {"compress_level": PNG_LEVEL, "compress_type": PNG_STRATEGY}
    pal_bytes = pal.tobytes()
    methods = {
        "palette, level 1 + RLE (countnet gen)": lambda: [encode_png(i, pal_bytes) for i in index],
        "RGB, level 1 + RLE": lambda: [rgb_png(x, **countnet) for x in rgb],
        "RGB, Pillow's defaults (level 6)": lambda: [rgb_png(x) for x in rgb],
    }  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in methods}
    sizes: dict[str, float] = {}
    names = list(methods)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            pngs = methods[name]()
            times[name].append((time.perf_counter() - t0) * 1e3 / len(jobs))
            sizes[name] = statistics.mean(map(len, pngs)) / 1024
    print(
        f"# png_modes {time.strftime('%Y-%m-%d %H:%M')}: {platform.node()} "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}; {len(jobs)} images, {SIZE} px, 45-50 circles r4-12 "
        f"--no-overlap, {args.repeats} interleaved rounds (median); drawing: {draw_ms:.3f} ms"
    )
    base = statistics.median(times[names[0]]) + draw_ms
    print(f"{'encoding':40s} {'ms/image':>9s} {'KiB/image':>10s} {'draw+encode':>12s}  rounds")
    for name in names:
        med = statistics.median(times[name])
        each = " ".join(f"{v:.3f}" for v in times[name])
        print(f"{name:40s} {med:9.3f} {sizes[name]:10.1f} {(med + draw_ms) / base:11.2f}x  {each}")


if __name__ == "__main__":
    main()
