"""What a run folder's config.yaml records: the options, what they resolved to, the data
(fingerprint, class counts), package versions, the learning rate and, when the run is
complete, its summary."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from countnet.versions import package_versions
from countnet_classify import optim, phases
from countnet_classify.devices import cpu_features, uses_gemm_grads
from countnet_classify.parallel.group import current
from countnet_classify.screen import IMBALANCE_RATIO, Screened
from countnet_classify.spec import RunSpec
from countnet_gen.outdir import read_dataset_json, valid_spec


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_data(sc: Screened) -> dict[str, Any]:
    """The vetted data as config.yaml records it (``data``)."""
    counts = sc.counts()
    return {
        "root": str(sc.root.resolve()),
        "layout": sc.layout,
        "fingerprint": sc.fingerprint,
        "classes": sc.classes,
        "n_images": len(sc.items),
        "n_train": sum(sc.counts(False).values()),
        "n_valid": sum(sc.counts(True).values()),
        "class_counts": {c: counts[c] for c in sc.classes},
        "valid_class_counts": {c: sc.counts(True)[c] for c in sc.classes},
        "imbalance_ratio": round(sc.imbalance, 3),
        "imbalanced": sc.imbalance > IMBALANCE_RATIO,
        "skipped": len(sc.skipped),
    }


def dataset_params(root: Path) -> dict | None:
    """A countnet-generated set's DatasetSpec, for the record."""
    meta = read_dataset_json(root)
    # a damaged, forged or oversized dataset.json: the record goes without
    return meta["spec"] if valid_spec(meta) is not None else None


def target_dict(target: tuple[float, float] | None) -> dict | None:
    """--task regression: the training counts' mean and std, as recorded."""
    return {"mean": target[0], "std": target[1]} if target else None


def weights_sha256(run) -> str | None:
    """The sha256 of the ImageNet weights the run started from (on --resume, as recorded
    then: the checkpoint, not today's file, holds the weights)."""
    if run.saved:
        return run.saved["resolved"].get("weights_sha256")
    if not run.weights_source:
        return None
    with open(run.weights_source, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def resolved(spec: RunSpec, run, learn, schedule: list[phases.Phase]) -> dict[str, Any]:
    """What the options resolved to: device, precision, head, schedule, batch, optimizer."""
    group = current()
    return {
        "name": spec.run_name,
        "task": spec.task,
        **({"loss": spec.loss, "target": target_dict(run.target)} if run.regression else {}),
        "transforms": run.transforms,
        "transforms_reason": run.transforms_reason,
        "device": str(run.device),
        "precision": run.precision,
        "channels_last": run.channels_last,
        # bf16 weight gradients of tiny convolutions from a GEMM (convgrad.py)
        "tiny_conv_grads": uses_gemm_grads(run.precision, run.device),
        # the host's class of CPU (bf16 or not), so a time in a report says where it came from
        "cpu": cpu_features(),
        **spec.head_layout,
        "pretrained": spec.uses_pretrained,
        "weights_source": run.weights_source,
        "weights_sha256": weights_sha256(run),
        "schedule": phases.describe(schedule),
        "total_epochs": phases.total_epochs(schedule),
        "batch_size": run.bs,
        # data-parallel processes (--gpus / torchrun), each taking batch_size / processes
        "processes": group.size if group else 1,
        "optimizer": optim.describe(
            learn.opt_func,
            momentum_cycled=any(
                "moms" not in p.fit_kwargs and p.policy == "one-cycle" for p in schedule
            ),
        ),
        "loader": spec.loader,
        "dataloader_workers": run.workers if spec.loader == "files" else 0,
        "phases": [p.to_dict(len(learn.splitter(learn.model))) for p in schedule],
    }


def run_record(spec: RunSpec, run, learn, lr: dict, schedule: list[phases.Phase]) -> dict[str, Any]:
    """config.yaml of a run that is starting (or resuming): options, what they resolved to,
    data, versions, the learning rate."""
    return {
        "run": spec.to_dict(),
        "resolved": resolved(spec, run, learn, schedule),
        "seed": spec.seed,
        "data": run.data_info,
        "dataset_params": dataset_params(run.screened.root),
        "versions": package_versions(),
        "resume_key": spec.resume_key(),
        "started": (run.saved or {}).get("started") or now(),
        "status": "running",
        "lr": lr,
    }


def summary(
    spec: RunSpec, metrics: list[dict], total: int, session: dict, regression: dict | None
) -> dict[str, Any]:
    """A finished run's summary: final and best error, epochs, times."""
    errors = [float(m["error_rate"]) for m in metrics]
    return {
        "name": spec.run_name,
        "final_error_rate": errors[-1],
        "best_error_rate": min(errors),
        "best_epoch": int(metrics[errors.index(min(errors))]["epoch"]),
        "epochs": total,
        # Every epoch's time from metrics.csv: all sessions of a resumed run, not only this one.
        "train_seconds": round(sum(float(m["time"]) for m in metrics), 2),
        "session_train_seconds": round(session["train"], 2),
        # This session's: a killed session's wall time is not known.
        "wall_seconds": round(time.perf_counter() - session["wall"], 2),
        **({"regression": regression} if regression else {}),
    }
