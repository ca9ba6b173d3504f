"""What fsync before every temp-then-rename (countnet/atomic.py) costs the default workflow.

    uv run python bench/fsync_cost.py [--rounds 3] [--train-per-class 100] [--epochs 2]

A full `snakemake all` is too long to repeat on a shared 2-core host, so this measures the
workflow's own stages, in this process, with countnet's code as the workflow runs it, each
with its same-run baseline, and extrapolates:

1. gen: the default config's count-1-5 dataset as the gen rule makes it (generate(), one
   staged folder flushed by one syncfs before its rename), with the syncs on, then off,
   interleaved over --rounds rounds; medians.
2. train: one training run with the default config's train: options (ResNet-18, 48 px,
   dihedral, PreciseBN) on a smaller count-1-5 (--train-per-class), --epochs epochs, syncs
   on then off. Every fsync is timed and listed by file (checkpoints and metrics.csv are
   written every epoch; config.yaml, the weights, model.json, plots once a run).
3. extrapolation: the time blocked in syncs, per image generated (scaled by pixels) and per
   epoch and per run trained, times the default config's images, epochs and runs.

"Off" replaces countnet.atomic's fsync_file, fsync_dir and flush_file_system by no-ops in
this process only: a measuring device, not an option (countnet has none to turn them off).
Without them the kernel writes the same pages back later, in the background; what fsync
adds is the wait, which is what "blocked" counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import yaml

import countnet.atomic as atomic
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate

ROOT = Path(__file__).resolve().parents[1]
SYNCS = ("fsync_file", "fsync_dir", "flush_file_system")
PER_EPOCH = ("checkpoint.pt", "checkpoint.prev.pt", "metrics.csv")  # written every epoch


class SyncLog:
    """Every sync call while installed: (function, file name) -> [calls, seconds]."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.calls.values())

    @property
    def count(self) -> int:
        return int(sum(n for n, _ in self.calls.values()))


@contextlib.contextmanager
def syncs(on: bool, log: SyncLog | None = None) -> Iterator[None]:
    """countnet.atomic's syncs timed into ``log`` (on) or replaced by no-ops (off)."""
    originals = {name: getattr(atomic, name) for name in SYNCS}

    # the file last synced: a folder's sync after it makes that file's rename durable
    last = ["a staged folder"]

    def timed(name: str, fn):
        def wrapper(path):
            t = time.perf_counter()
            try:
                return fn(path)
            finally:
                shown = f"rename of {last[0]}" if name == "fsync_dir" else file_name(path)
                last[0] = shown if name == "fsync_file" else "a staged folder"
                entry = log.calls[(name, shown)]
                entry[0] += 1
                entry[1] += time.perf_counter() - t

        return wrapper

    for name, fn in originals.items():
        setattr(atomic, name, timed(name, fn) if on else (lambda path: None))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(atomic, name, fn)


def file_name(path) -> str:
    """A temp file's name (.checkpoint.pt.x1y2.tmp) as the name it is renamed to."""
    name = Path(path).name
    if name.startswith(".") and atomic.PARTIAL in name:
        return "a staged folder (syncfs)"
    if name.startswith(".") and name.endswith(".tmp"):
        return name[1:-4].rsplit(".", 1)[0]
    return name


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def dataset_spec(entry: dict, **overrides) -> DatasetSpec:
    return DatasetSpec.from_dict({**entry, **overrides})


def bench_gen(spec: DatasetSpec, rounds: int, scratch: Path) -> dict:
    """Wall seconds of generate() with syncs on and off, interleaved; time blocked in them."""
    walls: dict[bool, list[float]] = {True: [], False: []}
    blocked = []
    for r in range(rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            out, log = scratch / f"gen-{r}-{on}", SyncLog()
            with syncs(on, log):
                t = time.perf_counter()
                generate(spec, out, workers=1)
                walls[on].append(time.perf_counter() - t)
            if on:
                blocked.append(log.seconds)
            shutil.rmtree(out)
    return {"on": statistics.median(walls[True]), "off": statistics.median(walls[False]),
            "blocked": statistics.median(blocked)}  # fmt: skip


def train_spec(config: dict, data: Path, runs: Path, name: str, epochs: int, overrides: dict):
    from countnet_classify.spec import RunSpec  # torch is imported only for this stage

    opts = {**config["train"], **overrides, "epochs": epochs, "pretrained": False, "quiet": True}
    return RunSpec.from_dict({**opts, "data": str(data), "runs_dir": str(runs), "name": name})


def bench_train(
    config: dict, data: Path, epochs: int, scratch: Path, overrides: dict
) -> tuple[dict, SyncLog]:
    """One run with syncs on (every call timed), one with them off; wall seconds each."""
    from countnet_classify.train import train  # torch is imported only for this stage

    walls, log = {}, SyncLog()
    for on in (True, False):
        spec = train_spec(config, data, scratch / "runs", f"run-{on}", epochs, overrides)
        with syncs(on, log if on else SyncLog()):
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # its epoch lines
                train(spec, say=lambda m: None, figures=True)
            walls[on] = time.perf_counter() - t
    return {"on": walls[True], "off": walls[False], "blocked": log.seconds}, log


def workflow_work(config: dict) -> dict:
    """The default workflow's images (in pixels of a 48 px image), epochs and runs."""
    pixels = sum(
        len(range(s.counts[0], s.counts[1] + 1)) * s.per_class * (s.size / 48) ** 2
        for s in (dataset_spec(e) for e in config["datasets"].values())
    )
    train, epochs, runs = config["train"], 0, 0
    for entry in config["experiments"].values():
        if entry.get("optional"):
            continue  # a user's folder, absent by default
        epochs += entry.get("epochs", train["epochs"])
        runs += 1
        if entry.get("transforms", train.get("transforms")) == "select":
            n = len(config["select_transforms"]["candidates"])  # at most: some are never trained
            epochs += n * config["select_transforms"].get("epochs", train["epochs"])
            runs += n
    from countnet_classify.experiments.sweep.spec import Sweep  # as the workflow plans it

    for name, sweep in config.get("sweeps", {}).items():
        params = tuple((k, tuple(v)) for k, v in sweep["params"].items())
        base = {"data": "-", "epochs": sweep.get("epochs", train["epochs"])}
        specs = Sweep(base, params, name, seeds=sweep.get("seeds", 3),
                      grid=sweep.get("grid", False)).specs()  # fmt: skip
        epochs += sum(s.epochs for s in specs)
        runs += len(specs)
    return {"images48": pixels, "epochs": epochs, "runs": runs}


def report(gen: dict, n_images: int, tr: dict, log: SyncLog, epochs: int, config: dict) -> None:
    print(
        f"gen count-1-5 ({n_images} images): syncs on {gen['on']:.2f} s, off {gen['off']:.2f} "
        f"s, on/off {gen['on'] / gen['off']:.3f}x; blocked in syncs {gen['blocked']:.3f} s"
    )
    print(f"train ({epochs} epochs): syncs on {tr['on']:.1f} s, off {tr['off']:.1f} s, on/off "
          f"{tr['on'] / tr['off']:.3f}x; blocked in syncs {tr['blocked']:.3f} s "
          f"({log.count} calls, {tr['blocked'] / tr['on']:.2%} of the run)")  # fmt: skip
    per_epoch = 0.0
    for (fn, name), (n, s) in sorted(log.calls.items(), key=lambda kv: -kv[1][1]):
        print(f"  {fn:17s} {name:24s} {int(n):4d} calls {s:8.3f} s  {1000 * s / n:8.1f} ms each")
        per_epoch += s if name.split()[-1] in PER_EPOCH else 0.0
    per_epoch /= epochs
    per_run = tr["blocked"] - per_epoch * epochs
    work = workflow_work(config)
    gen_s = gen["blocked"] / n_images * work["images48"]
    train_s = per_epoch * work["epochs"] + per_run * work["runs"]
    print(
        f"default workflow ({work['images48']:.0f} images in 48 px equivalents, "
        f"{work['epochs']} epochs, {work['runs']} runs): blocked in syncs "
        f"~{gen_s + train_s:.1f} s (gen {gen_s:.1f} s, training {per_epoch:.3f} s/epoch + "
        f"{per_run:.3f} s/run = {train_s:.1f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved gen rounds")
    ap.add_argument("--gen-per-class", type=int, default=None,
                    help="count-1-5's per_class for stage 1 (default: the config's)")  # fmt: skip
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                    help="a train: option over the config's (the test's tiny run)")  # fmt: skip
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp one)")
    args = ap.parse_args()
    config = default_config()
    entry = config["datasets"]["count-1-5"]
    gen_spec = dataset_spec(entry, per_class=args.gen_per_class or entry["per_class"])
    n_images = len(range(gen_spec.counts[0], gen_spec.counts[1] + 1)) * gen_spec.per_class
    print(f"# fsync_cost: {platform.node()} {platform.processor() or platform.machine()}; "
          f"{args.rounds} round(s)")  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="fsync-cost-", dir=args.dir))
    try:
        gen = bench_gen(gen_spec, args.rounds, scratch)
        data = generate(dataset_spec(entry, per_class=args.train_per_class), scratch / "data",
                        workers=1)  # fmt: skip
        overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.set)}
        tr, log = bench_train(config, data, args.epochs, scratch, overrides)
        report(gen, n_images, tr, log, args.epochs, config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
