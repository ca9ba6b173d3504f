"""A training run as a workflow job (the Snakefile's train and sweep_run rules).

It trains in a process of its own: Snakemake runs a rule's code in a worker thread, and its
own SIGTERM handler (the main thread's) lets a running job go on to its end, so SLURM's
signal (--signal, a time limit, a preemption) would never stop training at a safe point.
In its own process countnet's handler gets the signal, as `countnet train`'s does. And the
job resumes the interrupted run a stopped job left, so the rerun equals an uninterrupted run.
The spec travels as JSON on stdin: nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from countnet.errors import USER_ERRORS, CountnetError, one_line
from countnet.malloc import retain_freed_memory_for_training
from countnet.signals import SIGTERM_STATUS, Terminated, sigterm_as_interrupt
from countnet_classify import run_folder
from countnet_classify.spec import RunSpec


def train_resuming(spec: RunSpec, say: Callable[[str], None]) -> None:
    """Train ``spec`` (with force: the output is Snakemake's). An interrupted run of the same
    options in its partial folder is resumed from its last checkpoint; one started with other
    options (the config changed) is started over, saying so; a damaged one is reported by
    --resume's checks and, forced, started over."""
    # here: the workflow's process imports this module for run_job, and must not load torch
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


def run_job(spec: RunSpec, threads: int, log: Path | str) -> None:
    """Train ``spec`` in a fresh Python process with ``threads`` compute threads, its output
    in ``log``; a failure or a signal is a CountnetError naming the log."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"spec": spec.to_dict(), "threads": threads})
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "countnet_classify.job"],
            input=payload, text=True, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if proc.returncode == SIGTERM_STATUS:
        raise CountnetError(
            f"training {spec.run_name!r} stopped by SIGTERM at a safe point (see {log}): "
            "rerun the workflow to resume it"
        )
    if proc.returncode != 0:
        raise CountnetError(
            f"training {spec.run_name!r} failed (exit {proc.returncode}): see {log}"
        )


def main() -> int:
    """The job's process: the spec from stdin, SIGTERM as an interruption, one line on error."""
    request = json.loads(sys.stdin.read())
    spec = RunSpec.from_dict(request["spec"])

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        with sigterm_as_interrupt():
            import torch  # here, not at import: the workflow's planning process never needs it

            torch.set_num_threads(int(request["threads"]))
            retain_freed_memory_for_training()
            train_resuming(spec, say)
    except Terminated:
        say("error: terminated (SIGTERM): the last epoch's checkpoint is kept; rerun to resume")
        return SIGTERM_STATUS
    except KeyboardInterrupt:
        say("error: interrupted: the last epoch's checkpoint is kept; rerun to resume")
        return 130
    except USER_ERRORS as e:
        say(f"error: {one_line(e)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
