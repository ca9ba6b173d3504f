"""One process against N data-parallel processes (`countnet train --gpus N`), same run.

    uv run python bench/data_parallel.py [--processes 2] [--device cpu] [--epochs 2]
    uv run python bench/data_parallel.py | tee bench/results/data_parallel_$(date +%F).txt
    uv run python bench/data_parallel.py --device cuda --processes 4 --size 224   # a GPU box

Each configuration trains the same set (the default workflow's count-45-50 shape: 45-50
circles, 64 px, --no-overlap; --per-class images a count), the same model and options
(ResNet-34 from scratch, bs 64, fixed LR, no LR finder), one after the other, --repeats
times interleaved. Printed: training images/s from the run's own per-epoch times
(metrics.csv: training steps, PreciseBN and validation; process start-up, screening and
figures excluded), the wall time of the whole run, and the final error rate. The baseline
is the one-process run measured in the same invocation; the last line reads
`ratios: N/1=...` (training images/s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path

from countnet_classify.spec import RunSpec
from countnet_classify.train import train
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate


def run_once(data: Path, runs: Path, name: str, processes: int, args) -> dict:
    spec = RunSpec(
        data=str(data), arch=args.arch, pretrained=False, size=args.size, bs=args.bs,
        epochs=args.epochs, lr=3e-3, lr_find_iters=0, device=args.device, gpus=processes,
        runs_dir=str(runs), name=name, force=True, quiet=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the runs' epoch lines
        res = train(spec, say=lambda m: None)
    wall = time.perf_counter() - t0
    n_train = res.record["data"]["n_train"]
    seconds = sum(float(m["time"]) for m in res.metrics)
    steps = n_train // res.record["resolved"]["batch_size"]
    return {
        "ips": steps * res.record["resolved"]["batch_size"] * len(res.metrics) / seconds,
        "wall": wall,
        "error": float(res.metrics[-1]["error_rate"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--radius", type=float, default=2.0)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="keep set and runs here (default: temp)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="countnet-ddp-bench-") if args.out is None else None
    out = Path(tmp.name) if tmp else args.out
    import torch

    from countnet_classify.devices import resolve_precision

    precision = resolve_precision("auto", torch.device(args.device))
    print(f"# data_parallel: {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, {args.arch} {args.size} px, bs {args.bs}, "
          f"{args.epochs} epoch(s), device {args.device}, precision {precision}, "
          f"{torch.get_num_threads()} thread(s) in one process, "
          f"{max(1, torch.get_num_threads() // args.processes)} in each of "
          f"{args.processes}")  # fmt: skip
    spec = DatasetSpec(counts=(45, 50), per_class=args.per_class, size=args.size,
                       radius=args.radius, no_overlap=True)  # fmt: skip
    data = generate(spec, out / "count-45-50", force=True)
    configs = {"1": 1, str(args.processes): args.processes}
    results: dict[str, list[dict]] = {k: [] for k in configs}
    for rep in range(args.repeats):
        for key, n in configs.items():
            r = run_once(data, out / "runs", f"p{key}", n, args)
            results[key].append(r)
            print(
                f"repeat {rep + 1}  {key} process(es): {r['ips']:7.1f} images/s training, "
                f"wall {r['wall']:6.1f} s, final error_rate {r['error']:.4f}",
                flush=True,
            )
    med = {k: statistics.median(r["ips"] for r in v) for k, v in results.items()}
    for k, v in med.items():
        print(f"{k} process(es): {v:.1f} images/s (median of {args.repeats})")
    print(f"ratios: {args.processes}/1={med[str(args.processes)] / med['1']:.2f}")


if __name__ == "__main__":
    main()
