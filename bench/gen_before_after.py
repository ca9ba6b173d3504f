"""Generator speed, before and after a change, in one process: the sampler, renderer and PNG
encoder of a git revision (default HEAD) against the working tree's, interleaved rounds,
medians. The only way to see a 10-50% change on a VM whose speed moves 2x within minutes
(bench/gen_throughput.py measures against other drawers; this one against countnet
itself). Rounds alternate which path goes first.

    uv run python bench/gen_before_after.py [--rev HEAD~1] [--images 300] [--repeats 7]

Per image, as countnet gen does it: placement, coverage indices, PNG encoding, the file
write and the manifest's circle list; 224 px, 45-50 circles, --no-overlap; images made
RENDER_BATCH at a time where the revision has it; countnet's malloc setting, set once for
both paths, as in a worker. Both paths get the same seeds and must produce the same pixels
(checked on the first round's images), since a change of pixels needs PIXELS_VERSION, not
a benchmark.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from countnet.malloc import retain_freed_memory
from countnet_gen import render, sampler, writer
from countnet_gen.spec import DatasetSpec, color_rgb

ROOT = Path(__file__).resolve().parent.parent
SIZE = 224


def source_at(rev: str, relpath: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{relpath}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def module_at(rev: str, relpath: str, tmp: Path):
    """``relpath`` as it was at ``rev``, imported under a private name."""
    path = tmp / f"{rev.replace('~', '_').replace('/', '_')}_{Path(relpath).name}"
    path.write_text(source_at(rev, relpath))
    spec = importlib.util.spec_from_file_location(f"old_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def png_settings_at(rev: str) -> dict:
    """The revision's PNG save options, read from its writer.py (not imported: it would
    pull in today's modules beside it)."""
    src = source_at(rev, "gen/countnet_gen/writer.py")
    level = re.search(r"^PNG_LEVEL = (\d+)", src, re.M)
    strategy = re.search(r"^PNG_STRATEGY = zlib\.(Z_\w+)", src, re.M)
    kw = {"compress_level": int(level.group(1))}
    if strategy:
        kw["compress_type"] = getattr(zlib, strategy.group(1))
    return kw


def png_encoder(kw: dict, pal: bytes):
    def encode(idx: np.ndarray) -> bytes:
        im = Image.frombytes("P", idx.shape[::-1], idx.tobytes())
        im.putpalette(pal)
        buf = io.BytesIO()
        im.save(buf, format="PNG", **kw)
        return buf.getvalue()

    return encode


def batch_at(rev: str) -> int:
    """The revision's RENDER_BATCH (images made together), 1 before there was one."""
    found = re.search(r"^RENDER_BATCH = (\d+)", source_at(rev, "gen/countnet_gen/writer.py"), re.M)
    return int(found.group(1)) if found else 1


def path_of(sampler_mod, render_mod, png: dict, pal: bytes, batch: int):
    """The revision's per-image work, on images made ``batch`` at a time where it can."""
    encode = png_encoder(png, pal)
    disjoint = "disjoint" in inspect.signature(render_mod.coverage_u8).parameters
    kw = {"disjoint": True} if disjoint else {}

    def layouts(rngs, ns, radius) -> list[tuple[np.ndarray, None]]:
        if hasattr(sampler_mod, "sample_layouts"):
            return sampler_mod.sample_layouts(rngs, ns, SIZE, radius, True)
        return [
            (sampler_mod.sample_circles(g, n, SIZE, radius, True), None)
            for g, n in zip(rngs, ns, strict=True)
        ]

    def indices(objects) -> list[np.ndarray]:
        if hasattr(render_mod, "coverage_u8_many"):
            return list(render_mod.coverage_u8_many(objects, SIZE, **kw))
        return [render_mod.coverage_u8(circles, SIZE, **kw) for circles, _ in objects]

    def many(rngs, ns, radius, outs: list[Path]) -> list[np.ndarray]:
        done = []
        for i in range(0, len(rngs), batch):
            objects = layouts(rngs[i : i + batch], ns[i : i + batch], radius)
            for (circles, _), idx, out in zip(
                objects, indices(objects), outs[i : i + batch], strict=True
            ):
                out.write_bytes(encode(idx))
                writer._circles_json(circles)
                done.append(idx)
        return done

    return many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="the 'before' revision (default HEAD)")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    retain_freed_memory()  # as in a countnet gen worker: for both paths, set once
    pal = render.palette(color_rgb("#1f77b4"), color_rgb("#ffffff")).tobytes()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        before = path_of(
            module_at(args.rev, "gen/countnet_gen/sampler.py", tmp),
            module_at(args.rev, "gen/countnet_gen/render.py", tmp),
            png_settings_at(args.rev),
            pal,
            batch_at(args.rev),
        )
        now = {"compress_level": writer.PNG_LEVEL, "compress_type": writer.PNG_STRATEGY}
        after = path_of(sampler, render, now, pal, writer.RENDER_BATCH)
        print(
            f"# gen_before_after {time.strftime('%Y-%m-%d %H:%M')}: {args.rev} vs working "
            f"tree, Python {sys.version.split()[0]}, numpy {np.__version__}; {args.images} "
            f"images per path per round, {args.repeats} interleaved rounds (median), {SIZE} "
            "px, 45-50 circles, --no-overlap, one process"
        )
        for label, radius in (("fixed r6", (6.0, 6.0)), ("r4-12", (4.0, 12.0))):
            spec = DatasetSpec(counts=(45, 50), per_class=50, size=SIZE, radius=radius)
            rates: dict[str, list[float]] = {"before": [], "after": []}
            pixels: dict[str, list[np.ndarray]] = {}  # the first round's images of each
            pair = [("before", before), ("after", after)]
            for r in range(args.repeats):
                for name, many in pair[:: (-1) ** r]:  # alternate which goes first
                    t0 = time.perf_counter()
                    ns = [spec.classes[i % len(spec.classes)] for i in range(args.images)]
                    rngs = [writer.image_rng(spec, n, i) for i, n in enumerate(ns)]
                    outs = [tmp / f"{name}_{i}.png" for i in range(args.images)]
                    images = many(rngs, ns, radius, outs)
                    rates[name].append(args.images / (time.perf_counter() - t0))
                    pixels.setdefault(name, images)
            if not all(
                np.array_equal(a, b) for a, b in zip(pixels["before"], pixels["after"], strict=True)
            ):
                raise SystemExit(f"{label}: the two revisions draw different pixels")
            b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
            per_round = " ".join(
                f"{y / x:.2f}" for x, y in zip(rates["before"], rates["after"], strict=True)
            )
            print(
                f"{label:9s} before {b:6.0f}  after {a:6.0f} images/s/core  after/before "
                f"{a / b:.2f} (per round: {per_round})"
            )


if __name__ == "__main__":
    main()
