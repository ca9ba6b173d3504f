"""`countnet sweep`'s loop: every (point, seed) not finished yet trained in turn, the tables
rewritten after each run, the summaries at the end."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from countnet.atomic import exclusive
from countnet.errors import CountnetError
from countnet_classify import run_folder
from countnet_classify.experiments.sweep.checks import check_finished_run, check_runs, finished
from countnet_classify.experiments.sweep.results import write_summaries, write_tables
from countnet_classify.experiments.sweep.spec import SWEEP_JSON, Sweep, is_sweep, write_spec
from countnet_classify.parallel.group import refuse_launcher
from countnet_classify.screen import data_fingerprint
from countnet_classify.train import train


def run_sweep(
    sweep: Sweep,
    *,
    say: Callable[[str], None] = print,
    train_fn: Callable[..., Any] | None = None,
) -> Path:
    """Run every (point, seed) not finished yet, then write the summaries. Returns the
    sweep folder. ``train_fn(spec, say=...)``: the trainer (countnet_classify.train.train)."""
    refuse_launcher("countnet sweep")
    train_fn = train if train_fn is None else train_fn
    out = Path(sweep.out)
    if not Path(sweep.base["data"]).is_dir():
        raise CountnetError(f"data folder {sweep.base['data']} does not exist")
    if out.exists() and not out.is_dir():
        raise CountnetError(f"--out {out} is a file, not a sweep folder")
    if out.is_dir() and any(out.iterdir()) and not is_sweep(out):
        raise CountnetError(
            f"--out {out} exists and is not a countnet sweep (no {SWEEP_JSON}): choose "
            "another --out or --name"
        )
    runs = sweep.runs()
    check_runs([spec for _, _, spec in runs if not finished(spec)])
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "sweep"):
        if any(finished(spec) for _, _, spec in runs):
            data = data_fingerprint(sweep.base["data"])
            for _, _, spec in runs:  # a finished run with other options or data: not reused
                check_finished_run(spec, data)
        write_spec(sweep)
        for i, (point, seed, spec) in enumerate(runs, 1):
            head = f"[{i}/{len(runs)}] {point.label}, seed {seed}"
            if finished(spec):
                say(f"{head}: finished before, skipped")
                continue
            resume = run_folder.partial_dir(spec.run_dir).is_dir()
            say(f"{head}: {'resuming' if resume else 'training'} -> {spec.run_dir}")
            train_fn(dataclasses.replace(spec, resume=resume), say=say)
            write_tables(sweep)  # after every run: an interrupted sweep shows what it has
        write_summaries(sweep)
    return out
