"""The workflow's jobs that run countnet_classify (the Snakefile's shell rules train,
sweep_run, select_transforms, probes, baseline, sweep_summary and report): ``python -m
countnet_classify.job``, the request as JSON on stdin (countnet.jobs; nothing is unpickled),
the job's output its log.

Each job is a process of its own, which Snakemake starts directly: a ``run:`` block would
cost a second Snakemake process that parses the whole workflow again (seconds a job), and
Snakemake's own SIGTERM handler lets a ``run:`` block go on to its end, so SLURM's signal
(--signal, a time limit, a preemption) would never stop training at a safe point. Here
countnet's handler gets it, as `countnet train`'s does, and a training job resumes the
interrupted run a stopped job left, so the rerun equals an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from countnet.errors import CountnetError
from countnet.jobs import run_job
from countnet.malloc import retain_freed_memory_for_training
from countnet_classify import run_folder
from countnet_classify.spec import RunSpec


def train_resuming(spec: RunSpec, say: Callable[[str], None]) -> None:
    """Train ``spec`` (with force: the output is Snakemake's). An interrupted run of the same
    options in its partial folder is resumed from its last checkpoint; one started with other
    options (the config changed) is started over, saying so; a damaged one is reported by
    --resume's checks and, forced, started over."""
    # here, not at import: a baseline or report job never loads torch
    from countnet_classify.train import train

    partial = run_folder.partial_dir(spec.run_dir)
    if (partial / run_folder.CONFIG).is_file() or run_folder.holds_epochs(partial):
        try:
            key = run_folder.read_config(partial).get("resume_key")
        except (CountnetError, OSError):
            key = None
        key = key if isinstance(key, dict) else None
        diff = spec.resume_diff(key) if key is not None else {}
        if diff:
            say(
                f"the interrupted run in {partial} was started with other options "
                f"({', '.join(sorted(diff))}): starting it over"
            )
        else:
            if key is not None:
                say(f"resuming the interrupted run in {partial} from its last checkpoint")
            spec = dataclasses.replace(spec, resume=True)
    train(spec, say=say)


def train_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    train_resuming(RunSpec.from_dict(request["spec"]), say)


def select_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    # here, not at import: a baseline job never loads torch
    from countnet_classify.experiments.select import select_transforms

    options = {k: request[k] for k in ("candidates", "default") if request.get(k)}
    select_transforms(RunSpec.from_dict(request["spec"]), request["out"], say=say, **options)


def probes_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    """Every probed run scored on its probe sets, in one process: the forward passes take
    seconds, importing torch for each run would take longer."""
    # here, not at import: a baseline job never loads torch
    from countnet_classify.scoring import evaluate_into

    for run in request["runs"]:
        evaluate_into(run["run"], run["sets"], run["out"], say=say)


def baseline_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    # here, not at import: the classical counter needs scikit-image, training does not
    from countnet_classify.classical import baseline_into

    baseline_into(request["data"], request["out"], workers=request["threads"], say=say)


def summary_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    """A sweep's spec and summaries, once its runs are done."""
    # here, not at import: matplotlib, for the summaries' figures only
    from countnet_classify.experiments.sweep.results import write_summaries
    from countnet_classify.experiments.sweep.spec import Sweep, write_spec

    sweep = Sweep.from_dict(request["sweep"], request["out"])
    write_spec(sweep)
    write_summaries(sweep)
    say(f"summarised {len(sweep.specs())} run(s) of sweep {request['out']}")


def report_job(request: dict[str, Any], say: Callable[[str], None]) -> None:
    """The report of the workflow's runs, sweeps, probes (a folder per probed run, a
    subfolder per probe) and classical scores."""
    # here, not at import: the report's figures and page only
    from countnet_classify.report import write_report

    probes = [p for d in request["probes"] for p in sorted(Path(d).iterdir()) if p.is_dir()]
    folders = [*request["runs"], *request["sweeps"], *probes, *request["baselines"]]
    md, page = write_report(folders, request["out"])
    say(f"wrote {page} and {md} for {len(request['runs'])} run(s), "
        f"{len(request['sweeps'])} sweep(s)")  # fmt: skip


JOBS = {"train": train_job, "select": select_job, "probes": probes_job, "baseline": baseline_job,
        "sweep_summary": summary_job, "report": report_job}  # fmt: skip
TORCH_JOBS = ("train", "select", "probes")


def main() -> int:
    """The job's process: {"job": one of JOBS (train when absent), "threads": N, ...the
    job's own keys} from stdin."""
    request = json.loads(sys.stdin.read())
    name = request.get("job", "train")

    def work(say: Callable[[str], None]) -> None:
        if name in TORCH_JOBS:
            import torch  # here, not at import: the workflow's plan never needs it

            torch.set_num_threads(int(request["threads"]))
            retain_freed_memory_for_training()
        JOBS[name](request, say)

    training = "the last epoch's checkpoint is kept; rerun to resume"
    return run_job(work, then=training if name == "train" else "rerun to do it again")


if __name__ == "__main__":
    sys.exit(main())
