"""A training step with and without countnet.malloc.retain_freed_memory_for_training (glibc
keeping freed memory for the next step), each in fresh processes, alternating, same run.

    uv run python bench/train_malloc.py [--rounds 3] [--arch resnet34] [--size 64] [--bs 64]

Each process builds the model (countnet's precision for this CPU: bf16 autocast +
channels_last + TinyConvGrads where the CPU has native bf16, else fp32), takes 3 warm-up
steps on random tensors, then times 8 and counts their minor page faults. Prints both
settings' images/s and faults per step for every round, the medians, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, time, torch
sys.path.insert(0, sys.argv[5])  # bench/, for bare_step
from bare_step import make_step
from countnet.malloc import retain_freed_memory_for_training
from countnet_classify.devices import resolve_precision, uses_gemm_grads
tuned, arch, size, bs = sys.argv[1] == "1", sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if tuned:
    assert retain_freed_memory_for_training()
cpu = torch.device("cpu")
precision = resolve_precision("auto", cpu)
step = make_step(arch, size, bs, bf16=precision == "bf16",
                 gemm_grads=uses_gemm_grads(precision, cpu))
for _ in range(3):
    step()
f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
for _ in range(8):
    step()
dt = time.perf_counter() - t0
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"rate": 8 * bs / dt, "faults": faults / 8, "precision": precision}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bs", type=int, default=64)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"glibc defaults": [], "retained": []}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, "1" if name == "retained" else "0", args.arch,
                 str(args.size), str(args.bs), str(Path(__file__).parent)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name].append(json.loads(out.stdout.splitlines()[-1]))
        print(
            f"round {r + 1}: "
            + "  ".join(
                f"{k} {v[-1]['rate']:.1f} images/s, {v[-1]['faults']:.0f} faults/step"
                for k, v in runs.items()
            )
        )
    med = {k: statistics.median(x["rate"] for x in v) for k, v in runs.items()}
    faults = {k: statistics.median(x["faults"] for x in v) for k, v in runs.items()}
    print(
        f"{args.arch}, {args.size} px, bs {args.bs}, {runs['retained'][0]['precision']}, "
        f"{platform.machine()}; median of {args.rounds} rounds"
    )
    for k in runs:
        print(f"{k:15s} {med[k]:7.1f} images/s  {faults[k]:8.0f} minor faults/step")
    print(f"ratio: retained/defaults={med['retained'] / med['glibc defaults']:.2f}")


if __name__ == "__main__":
    main()
