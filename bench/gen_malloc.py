"""The generator with and without countnet.malloc.retain_freed_memory (glibc keeping freed
heap memory instead of trimming it at every free), each in a fresh process, since malloc
settings are per process. Rounds alternate which goes first; medians and their ratio.

    uv run python bench/gen_malloc.py [--images 400] [--repeats 5]

Per image, as ``countnet gen`` does in a pool worker (writer._init_pool_worker, then
_write_chunk): placement, coverage indices, PNG encoding, the file write, the manifest row;
224 px, 45-50 circles, --no-overlap, fixed radius 6 and radii 4-12.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {"fixed r6": "6", "r4-12": "4-12"}

CHILD = """
import json, sys, tempfile, time
from pathlib import Path
import countnet.malloc as malloc
from countnet_gen import writer
from countnet_gen.spec import DatasetSpec
tuned, n, radius = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3]
if not tuned:
    writer.retain_freed_memory = lambda: False  # glibc's defaults, as before
spec = DatasetSpec.from_dict(
    {"range": "45-50", "size": 224, "radius": radius, "no_overlap": True, "per_class": n}
)
with tempfile.TemporaryDirectory() as tmp:
    for c in spec.classes:
        (Path(tmp) / "train" / str(c)).mkdir(parents=True)
    writer._init_pool_worker(spec.to_dict(), tmp)  # as generate()'s pool starts a worker
    jobs = [writer.ImageJob(c, i, "train") for i in range(n) for c in spec.classes][:n]
    writer._write_chunk(jobs[:20])  # warm-up
    t0 = time.perf_counter()
    writer._write_chunk(jobs)
    print(json.dumps(n / (time.perf_counter() - t0)))
"""


def run(tuned: bool, images: int, radius: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "1" if tuned else "0", str(images), radius],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import numpy
    import PIL

    print(
        f"# gen_malloc {time.strftime('%Y-%m-%d %H:%M')}: {platform.machine()}, "
        f"{platform.libc_ver()[0]} {platform.libc_ver()[1]}, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, Pillow {PIL.__version__}; {args.images} images per "
        f"process, {args.repeats} rounds (median), PNGs to {tempfile.gettempdir()}"
    )
    for name, radius in CASES.items():
        rates: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.repeats):
            for tuned in (r % 2 == 0, r % 2 == 1):
                rates[tuned].append(run(tuned, args.images, radius))
        before, after = statistics.median(rates[False]), statistics.median(rates[True])
        rounds = " ".join(
            f"{b:.0f}/{a:.0f}" for b, a in zip(rates[False], rates[True], strict=True)
        )
        print(
            f"{name:9s} glibc defaults {before:6.0f}  retain_freed_memory {after:6.0f} "
            f"images/s/core  ratio {after / before:.2f}  (rounds, before/after: {rounds})"
        )


if __name__ == "__main__":
    main()
