"""The main job's training recipe: each candidate architecture trained on the default
workflow's own sets and budgets, all in this run, beside the current default (ratios).

    uv run python bench/main_job_recipe.py [--archs resnet18,xresnet18_half] [--only count-45-50]
    uv run python bench/main_job_recipe.py | tee bench/results/main_job_recipe_$(date +%F).txt

The experiments, their sets and every option come from config/config.yaml (train: defaults,
then each experiment's own; `transforms: select` trains select_transforms' default preset);
only --arch changes, so a row's time and error are the candidate's on the job as it runs.
The sets are generated from the config's DatasetSpecs into --out (kept there: a second
run reuses them). The first arch is the baseline. Each row: the final error (MAE on unseen
counts for regression), the target the main job holds it to, the epoch it was first met,
the training seconds, and the time against the baseline's on the same experiment. The
last line sums the training time of every experiment per arch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

from countnet.tables import read_csv
from countnet_classify import run_folder
from countnet_classify.devices import cpu_features
from countnet_classify.spec import RunSpec
from countnet_classify.train import train
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate

REPO = Path(__file__).resolve().parents[1]
# issue #30's accuracy targets (the report's content must not change in kind)
TARGETS = {"count-1-5": 0.01, "count-45-50": 0.02, "count-45-50-var": 0.05,
           "count-45-50-regression": 0.25}  # fmt: skip
SKIP = ("probes", "optional")  # workflow keys that are not run options


def experiment_specs(config: dict, data_root: Path, runs: Path, arch: str) -> dict[str, RunSpec]:
    """The config's generated-set experiments as RunSpecs, with ``arch``."""
    base = dict(config.get("train", {}))
    preset = config.get("select_transforms", {}).get("default", "dihedral")
    out = {}
    for name, entry in config["experiments"].items():
        if str(entry["data"]) not in config["datasets"]:
            continue  # a folder of the user's own (paintings): not part of the job here
        opts = {**base, **{k: v for k, v in entry.items() if k not in SKIP}}
        if opts.get("transforms") == "select":
            opts["transforms"] = preset
        if opts.get("pretrained") == "auto":
            opts["pretrained"] = False  # offline: the job trains from scratch
        opts.update(data=str(data_root / entry["data"]), arch=arch, name=f"{name}-{arch}",
                    runs_dir=str(runs), quiet=True, force=True)  # fmt: skip
        out[name] = RunSpec.from_dict(opts)
    return out


def ensure_sets(config: dict, root: Path) -> None:
    for name, entry in config["datasets"].items():
        if not (root / name / "dataset.json").is_file():
            spec = DatasetSpec.from_dict({**entry, "name": name})
            generate(spec, root / name, workers=os.cpu_count() or 1)


def score(run_dir: Path, regression: bool) -> tuple[float, list[float], float]:
    """(the final figure, the per-epoch figure, the training seconds): error_rate, or for
    regression the MAE on unseen counts at the end and the validation MAE per epoch."""
    summary = run_folder.read_config(run_dir)["summary"]
    rows = read_csv(run_dir / "metrics.csv")
    if regression:
        final, column = summary["regression"]["unseen"]["mae"], "mae"
    else:
        final, column = summary["final_error_rate"], "error_rate"
    return final, [float(r[column]) for r in rows], summary["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archs", default="resnet18,xresnet18_half")
    ap.add_argument("--only", default="", help="comma-separated experiments (default: all)")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "countnet-recipe")
    args = ap.parse_args()
    import torch

    config = yaml.safe_load(args.config.read_text())
    ensure_sets(config, args.out / "datasets")
    archs = args.archs.split(",")
    cpu = cpu_features()
    print(
        f"# main_job_recipe {time.strftime('%Y-%m-%d %H:%M')}: {platform.node()} {cpu['model']}, "
        f"{cpu['instructions']} ({'native bf16' if cpu['native_bf16'] else 'fp32'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.config.name}, archs {', '.join(archs)}",
        flush=True,
    )
    print(f"{'experiment':24s} {'arch':18s} {'final':>7s} {'target':>7s} {'met at':>7s} "
          f"{'train s':>8s} {'vs ' + archs[0]:>12s}", flush=True)  # fmt: skip
    totals, base_secs = dict.fromkeys(archs, 0.0), {}
    only = set(filter(None, args.only.split(",")))
    data, runs = args.out / "datasets", args.out / "runs"
    specs = {a: experiment_specs(config, data, runs, a) for a in archs}
    for name in specs[archs[0]]:
        if only and name not in only:
            continue
        for arch in archs:  # interleaved: the host's drift hits every arch alike
            spec = specs[arch][name]
            with contextlib.redirect_stdout(io.StringIO()):
                train(spec, say=lambda m: None, figures=False)
            final, per_epoch, secs = score(spec.run_dir, spec.task == "regression")
            totals[arch] += secs
            target = TARGETS.get(name)
            met = next((i + 1 for i, v in enumerate(per_epoch) if target and v <= target), None)
            base = base_secs.setdefault(name, secs)  # the first arch's
            print(f"{name:24s} {arch:18s} {final:7.4f} "
                  f"{(f'{target:.2f}' if target else '-'):>7s} "
                  f"{(f'{met}/{spec.epochs}' if met else '-'):>7s} {secs:8.1f} "
                  f"{secs / base:11.2f}x", flush=True)  # fmt: skip
    print(
        "total train s: "
        + ", ".join(f"{a} {t:.0f}" for a, t in totals.items())
        + f"; ratio {archs[-1]}/{archs[0]} {totals[archs[-1]] / max(totals[archs[0]], 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
