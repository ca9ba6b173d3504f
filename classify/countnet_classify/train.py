"""`countnet train`: screen the data, build a fastai Learner, run the LR finder, train
(fine_tune semantics when pretrained, fit_one_cycle from scratch, or Caffe's inv/step),
checkpoint every epoch, then write the plots, weights and tables of the run folder."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from countnet.atomic import check_replaceable, exclusive, write_text_atomic
from countnet.errors import CountnetError
from countnet.versions import package_versions
from countnet_classify import distributed, optim, outputs, phases, plots, regression
from countnet_classify.cache import decoded_splits
from countnet_classify.callbacks import (
    CHECKPOINT,
    METRICS_FIELDS,
    REGRESSION_FIELDS,
    Checkpoint,
    MetricsTable,
    PreciseBN,
    load_checkpoint,
)
from countnet_classify.config import DEVICES, RunSpec, auto_batch_size
from countnet_classify.cost import COST_JSON, model_cost
from countnet_classify.data import make_cached_dataloaders, make_dataloaders
from countnet_classify.model import (
    build_model,
    check_input_size,
    file_sha256,
    imagenet_state_dict,
    make_learner,
)
from countnet_classify.outputs import read_rows, write_rows
from countnet_classify.precision import (
    apply_precision,
    resolve_precision,
    use_channels_last,
    uses_gemm_grads,
)
from countnet_classify.schedules import caffe_scheduler  # also patches fit_one_cycle onto Learner
from countnet_classify.screen import IMBALANCE_RATIO, Screened, screen
from countnet_classify.transforms import resolve_transforms, transform_warnings

AUTO_SCRATCH_RULE = "slide"
AUTO_FALLBACK = ("valley", "minimum")  # when the sweep was too short for the rule above
PREDICTIONS_CSV = "predictions.csv"  # --task regression: every validation and test image
PREDICTIONS_FIELDS = ("split", "path", "count", "seen", "prediction", "rounded")


@dataclass
class TrainResult:
    run_dir: Path
    learner: Any
    metrics: list[dict]
    record: dict


def resolve_device(choice: str) -> torch.device:
    if choice not in DEVICES:
        raise CountnetError(f"unknown --device {choice!r}; choose one of {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise CountnetError("--device cuda: no CUDA device is available here; use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _prepare_folder(spec: RunSpec, say) -> tuple[Path, Path, dict | None]:
    final = spec.run_dir
    partial = outputs.partial_dir(final)
    # A partial folder without config.yaml was interrupted before training started (while
    # screening or finding the LR): nothing in it is worth keeping, so it never blocks.
    if partial.is_dir() and not (partial / outputs.CONFIG).is_file():
        if spec.resume:
            say(f"run {spec.run_name!r} was interrupted before its first epoch: starting over")
        shutil.rmtree(partial)
        if spec.resume and not final.exists():
            return final, partial, None
    if spec.resume:
        if not partial.is_dir():
            if final.is_dir():
                raise CountnetError(f"run {final} already finished: nothing to resume")
            raise CountnetError(
                f"no interrupted run named {spec.run_name!r} to resume in {final.parent}"
            )
        saved = outputs.read_config(partial)
        diff = spec.resume_diff(saved["resume_key"])
        if diff:
            raise CountnetError(
                f"--resume: run {spec.run_name!r} was started with different options "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())})"
            )
        return final, partial, saved
    if final.exists() and not spec.force:
        raise CountnetError(f"run {final} already exists: choose another --name or pass --force")
    # --force replaces a finished run (it has config.yaml) or an empty folder, nothing else.
    check_replaceable(final, force=True, what="run", replaceable=_is_run)
    if partial.exists():
        if not spec.force:
            raise CountnetError(
                f"an interrupted run {spec.run_name!r} exists: pass --resume to continue it "
                "or --force to start over"
            )
        shutil.rmtree(partial)
    return final, partial, None


def _is_run(folder: Path) -> bool:
    return (folder / outputs.CONFIG).is_file()


def _describe_data(sc: Screened) -> dict[str, Any]:
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


def _dataset_params(root: Path) -> dict | None:
    """A countnet-generated set's DatasetSpec, for the record."""
    p = root / "dataset.json"
    if p.is_file():
        try:
            return json.loads(p.read_text()).get("spec")
        except (json.JSONDecodeError, AttributeError):
            return None
    return None


def train(spec: RunSpec, *, say=print, figures: bool = True, cbs: tuple = ()) -> TrainResult | None:
    """Train per ``spec``; returns the finished run folder and the learner. ``figures=False``
    skips the interpretation plots (select-transforms' candidates, which nobody looks at);
    ``cbs``: extra fastai callbacks for every phase. The run's lock (``.<name>.lock`` beside
    it) keeps a second process (another shell, the workflow) from training, resuming or
    replacing the same run at the same time.

    ``spec.gpus`` > 1 starts that many processes and returns when they finish (the learner
    stays in them: ``learner`` is None; rank 0 prints the messages). Under torchrun every
    process calls this; ranks other than 0 return None (countnet_classify.distributed)."""
    group = distributed.join_launcher(spec)
    if group is None and spec.gpus > 1:
        if cbs:
            raise CountnetError("internal: extra callbacks cannot reach --gpus processes")
        check_spec(spec)  # bad options stop here, before N processes start
        distributed.check_processes(spec, spec.gpus)
        return _finished(distributed.launch(spec, say=say, figures=figures))
    if group is not None and not group.leader:
        _follow(spec, cbs)
        return None
    shared = False
    try:
        with exclusive(spec.run_dir, "run"):
            t_start = time.perf_counter()
            run = prepare_run(spec, say)
            learn = build_learner(spec, run)
            # Found once and recorded: --resume reuses it instead of running the finder again.
            lr = (run.saved or {}).get("lr") or _find_lr(learn, spec, run.partial, run.quiet)
            base_lr = float(lr["used"])
            schedule = plan_phases(spec, base_lr)
            record = run_record(spec, run, learn, lr, schedule)
            outputs.write_config(run.partial, record)
            ckpt = load_checkpoint(run.partial) if spec.resume else None
            if group is not None:
                distributed.share(_plan(run, base_lr, resumed=ckpt is not None))
                shared = True
            say(f"learning rate: {base_lr:.3g} ({record['lr']['source']})")

            t_train = time.perf_counter()
            fit_run(spec, run, learn, schedule, say=say, cbs=cbs, checkpoint=ckpt)
            return finish_run(
                spec,
                run,
                learn,
                record,
                say=say,
                figures=figures,
                session={"train": time.perf_counter() - t_train, "wall": t_start},
            )
    except BaseException:
        if group is not None and not shared:  # the other ranks wait for the plan: stop them
            with contextlib.suppress(Exception):
                distributed.share(None)
        raise


def _plan(run: PreparedRun, lr: float, *, resumed: bool) -> dict:
    """What rank 0 decided that the other ranks of a data-parallel run train by."""
    return {
        "partial": run.partial,
        "screened": run.screened,
        "target": run.target,
        "bs": run.bs,
        "lr": lr,
        "resumed": resumed,
    }


def _follow(spec: RunSpec, cbs: tuple) -> None:
    """A data-parallel rank other than 0: train its shards by rank 0's plan, write nothing.
    Returns at once when rank 0 stopped before training (it reports why)."""
    plan = distributed.share()
    if plan is None:
        return
    transforms, device, precision = check_spec(spec)
    channels_last = use_channels_last(precision, device)
    state_dict = imagenet_state_dict(spec.arch, spec.weights)[0] if spec.uses_pretrained else None
    sc, target, bs = plan["screened"], plan["target"], plan["bs"]
    # rank 0 built the cache before sharing the plan: this only maps it
    decoded = (
        decoded_splits(sc, spec.size, say=_no_log, progress=False)
        if spec.loader == "cache"
        else None
    )
    workers = _workers(spec, device)
    dls, file_dls = _loaders(
        spec, sc, decoded, target, bs, transforms, device, channels_last, workers
    )
    run = PreparedRun(
        spec.run_dir, plan["partial"], None, sc, {}, dls, file_dls, transforms, device,
        precision, channels_last, bs, workers, True, state_dict, None, target, [],
    )  # fmt: skip
    learn = build_learner(spec, run)
    ckpt = load_checkpoint(run.partial) if plan["resumed"] else None
    fit_run(spec, run, learn, plan_phases(spec, plan["lr"]), say=_no_log, cbs=cbs, checkpoint=ckpt)


def _finished(run_dir: Path) -> TrainResult:
    """A run trained in other processes, as its folder records it."""
    return TrainResult(
        run_dir, None, read_rows(run_dir / "metrics.csv"), outputs.read_config(run_dir)
    )


@dataclass
class PreparedRun:
    """Everything known before the model exists: folders, the vetted data, the device."""

    final: Path
    partial: Path
    saved: dict | None  # the interrupted run's config.yaml, on --resume
    screened: Screened
    data_info: dict
    dls: Any
    file_dls: Any  # () -> fastai's file DataLoaders (figures need file items)
    transforms: str
    device: torch.device
    precision: str
    channels_last: bool
    bs: int
    workers: int
    quiet: bool
    state_dict: dict | None
    weights_source: str | None
    target: tuple[float, float] | None  # --task regression: the training counts' mean, std
    test_items: list[tuple[Path, int]]  # --task regression: the test split's (image, count)

    @property
    def regression(self) -> bool:
        return self.target is not None


def check_spec(spec: RunSpec) -> tuple[str, torch.device, str]:
    """Every check of a run's options that needs neither its data nor its folder: the
    transforms preset or file, device, precision, an LR rule without the finder, a --size
    the network cannot take. One line before anything is written; a sweep runs it for
    every run before the first starts. Returns what the first three resolve to."""
    transforms = resolve_transforms(spec.transforms)
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    if spec.lr_find_iters == 0 and lr_rule(spec):
        raise CountnetError(f"--lr {spec.lr} needs the LR finder: set --lr-find-iters > 0")
    # feature maps that shrink to nothing: a traceback in the LR finder otherwise
    check_input_size(build_model(spec.arch, 2, spec.head, spec.dropout), spec.size)
    return transforms, device, precision


def prepare_run(spec: RunSpec, say) -> PreparedRun:
    """Resolve the options, check the run folder and the data, build the DataLoaders."""
    transforms, device, precision = check_spec(spec)
    channels_last = use_channels_last(precision, device)
    final, partial, saved = _prepare_folder(spec, say)
    state_dict, weights_source = None, None
    if spec.uses_pretrained:  # before screening: a missing weights file fails fast
        state_dict, weights_source = imagenet_state_dict(spec.arch, spec.weights)
    sc = screen(spec.data, valid_pct=spec.valid_pct, seed=spec.seed)
    if saved and saved["data"]["fingerprint"] != sc.fingerprint:
        raise CountnetError(
            f"--resume: the files under {spec.data} changed since run {spec.run_name!r} started"
        )
    target, test_items, test_skipped = None, [], []
    data_info = _describe_data(sc)
    if spec.task == "regression":  # before anything is written: class names must be counts
        regression.count_values(sc.classes)  # every class folder names a count, once each
        target = regression.standardisation(
            np.array([int(lbl) for _, lbl, v in sc.items if not v], np.float32)
        )
        test_items, test_skipped, test_info = regression.screen_test(sc.root)
        data_info.update(test_info)
        if saved and saved["data"].get("test_fingerprint") != data_info.get("test_fingerprint"):
            raise CountnetError(
                f"--resume: the files under {spec.data}/test changed since run "
                f"{spec.run_name!r} started"
            )
    for warning in transform_warnings(spec.transforms, transforms, spec.data):
        say(warning)
    say(
        f"data: {data_info['n_images']} images in {len(sc.classes)} classes "
        f"({data_info['n_train']} train / {data_info['n_valid']} valid, {sc.layout}); "
        f"skipped {len(sc.skipped)} unreadable file(s)"
    )
    say("class counts: " + ", ".join(f"{c}={n}" for c, n in data_info["class_counts"].items()))
    if "test_class_counts" in data_info:
        say(
            "test split (predicted after training): "
            + ", ".join(f"{c}={n}" for c, n in data_info["test_class_counts"].items())
            + f"; skipped {len(test_skipped)} unreadable file(s)"
        )
    if data_info["imbalanced"]:
        say(
            f"warning: classes are imbalanced (largest/smallest = {sc.imbalance:.1f} > "
            f"{IMBALANCE_RATIO:g}); error_rate may flatter the majority class"
        )
    quiet = spec.quiet or not _is_tty()
    # Decoded before the run folder exists: an interrupted build leaves no run to resume.
    decoded = (
        decoded_splits(sc, spec.size, say=say, progress=not quiet)
        if spec.loader == "cache"
        else None
    )
    partial.mkdir(parents=True, exist_ok=True)
    if transforms != spec.transforms:  # chosen by a select-transforms JSON: keep its table
        shutil.copyfile(spec.transforms, partial / "transforms.json")
    outputs.write_skipped(partial, sc.root, [*sc.skipped, *test_skipped])
    workers = _workers(spec, device)
    bs = auto_batch_size(data_info["n_train"]) if spec.bs == "auto" else spec.bs
    group = distributed.current()
    if group is not None:  # the run's whole batch, bs/N per process
        bs = distributed.split_batch(bs, data_info["n_train"], group.size)
    bs = min(bs, data_info["n_train"])
    if saved and saved["resolved"].get("batch_size", bs) != bs:  # --gpus N with --bs auto
        raise CountnetError(
            f"--resume: run {spec.run_name!r} trains batches of "
            f"{saved['resolved']['batch_size']}, which do not split evenly over "
            f"{group.size if group else 1} process(es): resume on a number that divides it"
        )
    dls, file_dls = _loaders(
        spec, sc, decoded, target, bs, transforms, device, channels_last, workers
    )
    return PreparedRun(
        final, partial, saved, sc, data_info, dls, file_dls, transforms, device, precision,
        channels_last, bs, workers, quiet, state_dict, weights_source, target, test_items,
    )  # fmt: skip


def _workers(spec: RunSpec, device: torch.device) -> int:
    return spec.workers if spec.workers is not None else (0 if device.type == "cpu" else 8)


def _loaders(spec: RunSpec, sc: Screened, decoded, target, bs, transforms, device,
             channels_last, workers):  # fmt: skip
    """(the training DataLoaders, a function giving fastai's file DataLoaders)."""

    def file_dls():
        return make_dataloaders(
            sc, size=spec.size, bs=bs, transforms=transforms, workers=workers, device=device,
            seed=spec.seed, regression=target is not None,
        )  # fmt: skip

    if decoded is None:
        return file_dls(), file_dls
    dls = make_cached_dataloaders(
        decoded, bs=bs, transforms=transforms, device=device, seed=spec.seed,
        channels_last=channels_last, regression=target is not None,
    )  # fmt: skip
    return dls, file_dls


def build_learner(spec: RunSpec, run: PreparedRun):
    """The fastai Learner: model (seeded after the loaders, so both loaders start it
    alike), metrics, precision and memory layout, and a quiet logger for logs."""
    from fastai.callback.progress import ProgressCallback
    from fastai.metrics import accuracy, error_rate
    from fastai.torch_core import set_seed

    set_seed(spec.seed, reproducible=True)
    task = (
        {"metrics": regression.metrics(), "loss_func": regression.loss_func(spec.loss)}
        if run.regression
        else {"metrics": [error_rate, accuracy]}
    )
    learn = make_learner(
        run.dls,
        spec.arch,
        run.state_dict,
        pretrained=spec.uses_pretrained,
        head=spec.head,
        head_dropout=spec.dropout,
        target=run.target,
        opt_func=optim.opt_func(spec.opt, spec.momentum, spec.wd),
        path=run.partial,
        model_dir=".tmp",
        **task,
    )
    if run.quiet:
        learn.remove_cb(ProgressCallback)
        learn.logger = _no_log  # fastai prints raw log lists when no progress bar is shown
    apply_precision(learn, run.precision, run.device, channels_last=run.channels_last)
    return learn


def plan_phases(spec: RunSpec, lr: float) -> list[phases.Phase]:
    return phases.plan(
        policy=spec.lr_policy,
        pretrained=spec.uses_pretrained,
        epochs=spec.epochs,
        freeze_epochs=spec.freeze_epochs,
        lr=lr,
        momentum=spec.momentum,
    )


def run_record(
    spec: RunSpec, run: PreparedRun, learn, lr: dict, schedule: list[phases.Phase]
) -> dict[str, Any]:
    """What config.yaml records: options, what they resolved to (the phases among them),
    data, versions, the learning rate."""
    n_groups = len(learn.splitter(learn.model))
    return {
        "run": spec.to_dict(),
        "resolved": {
            "name": spec.run_name,
            "task": spec.task,
            **({"loss": spec.loss, "target": _target_dict(run)} if run.regression else {}),
            "transforms": run.transforms,
            "device": str(run.device),
            "precision": run.precision,
            "channels_last": run.channels_last,
            # bf16 weight gradients of tiny convolutions from a GEMM (convgrad.py)
            "tiny_conv_grads": uses_gemm_grads(run.precision, run.device),
            **spec.head_layout,
            "pretrained": spec.uses_pretrained,
            "weights_source": run.weights_source,
            "weights_sha256": _weights_sha256(run),
            "schedule": phases.describe(schedule),
            "total_epochs": phases.total_epochs(schedule),
            "batch_size": run.bs,
            # data-parallel processes (--gpus / torchrun), each taking batch_size / processes
            "processes": group.size if (group := distributed.current()) else 1,
            "optimizer": optim.describe(
                learn.opt_func,
                momentum_cycled=any(
                    "moms" not in p.fit_kwargs and p.policy == "one-cycle" for p in schedule
                ),
            ),
            "loader": spec.loader,
            "dataloader_workers": run.workers if spec.loader == "files" else 0,
            "phases": [p.to_dict(n_groups) for p in schedule],
        },
        "seed": spec.seed,
        "data": run.data_info,
        "dataset_params": _dataset_params(run.screened.root),
        "versions": package_versions(),
        "resume_key": spec.resume_key(),
        "started": (run.saved or {}).get("started")
        or datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
        "lr": lr,
    }


def _target_dict(run: PreparedRun) -> dict | None:
    return {"mean": run.target[0], "std": run.target[1]} if run.target else None


def _weights_sha256(run: PreparedRun) -> str | None:
    """The sha256 of the ImageNet weights the run started from (on --resume, as recorded
    then: the checkpoint, not today's file, holds the weights)."""
    if run.saved:
        return run.saved["resolved"].get("weights_sha256")
    return file_sha256(run.weights_source) if run.weights_source else None


def fit_run(
    spec: RunSpec,
    run: PreparedRun,
    learn,
    schedule: list[phases.Phase],
    *,
    say,
    cbs=(),
    checkpoint: dict | None = None,
) -> None:
    """Train through the phases, continuing from ``checkpoint`` (--resume); afterwards
    the learner holds the final weights. In a data-parallel run rank 0 alone writes."""
    total = phases.total_epochs(schedule)
    ckpt = checkpoint
    group = distributed.current()
    if ckpt:
        done = int(ckpt["epoch"])
        say(f"resuming after epoch {done}/{total}")
        if done >= total:
            say("all epochs were already completed")

    def callbacks(phase: phases.Phase, offset: int) -> list:
        writers = [
            MetricsTable(
                run.partial,
                offset,
                total,
                echo=run.quiet,
                fields=REGRESSION_FIELDS if run.regression else METRICS_FIELDS,
            ),  # fmt: skip
            Checkpoint(run.partial, offset, phase.name),
        ]
        if group is not None and not group.leader:
            writers = []
        parallel = [distributed.DataParallel(group, spec.seed, offset)] if group is not None else []
        return [PreciseBN(spec.precise_bn), *writers, *parallel, *cbs]

    def caffe(phase: phases.Phase, n_iter: int):
        return caffe_scheduler(
            phase.policy, float(phase.lr), phase.epochs * n_iter, gamma=spec.lr_gamma,
            power=spec.lr_power, stepsize=spec.lr_step,
        )  # fmt: skip

    phases.fit_phases(learn, schedule, callbacks, checkpoint=ckpt, schedule=caffe)


def finish_run(
    spec: RunSpec, run: PreparedRun, learn, record: dict, *, say, figures: bool, session: dict
) -> TrainResult:
    """Figures, weights, the summary; then the partial folder becomes the run folder."""
    partial = run.partial
    metrics = read_rows(partial / "metrics.csv")
    total = record["resolved"]["total_epochs"]
    if len(metrics) != total:
        raise CountnetError(f"internal: {len(metrics)} epochs recorded, {total} expected")
    # Predicted before the figures swap in file loaders: the training loaders' pixels.
    evaluated = (
        regression.evaluate(learn, run.screened, run.test_items, spec.size, run.bs)
        if run.regression
        else None
    )
    if evaluated:
        write_rows(partial / PREDICTIONS_CSV, PREDICTIONS_FIELDS, evaluated[0])
    if figures:
        if spec.loader == "cache":
            # Figures through fastai's own file pipeline: interpretation and show_batch need
            # the file items, and the pixels are the same (the cache holds exactly them).
            learn.dls = _with_same_normalization(run.file_dls(), learn.dls)
        _write_figures(learn, partial, metrics, evaluated[0] if evaluated else None)
    outputs.export_weights(
        partial,
        learn.model,
        {
            "arch": spec.arch,
            **spec.head_layout,
            "task": spec.task,
            **({"target": _target_dict(run)} if run.regression else {}),
            "classes": list(run.screened.classes),
            "size": spec.size,
            "resize": "squish",
            "normalize": _normalize_stats(learn),
            "n_in": 3,
            "format": "safetensors state dict of countnet_classify.model.build_model"
            "(arch, n, head, head_dropout, regression)",
        },
    )
    n_out = 1 if run.regression else len(run.screened.classes)
    cost = model_cost(
        spec.arch, size=spec.size, classes=n_out, head=spec.head,
        head_dropout=spec.dropout, device=run.device, batch=min(64, run.bs),
    )  # fmt: skip
    write_text_atomic(partial / COST_JSON, json.dumps(cost, indent=2) + "\n")
    errors = [float(m["error_rate"]) for m in metrics]
    summary = {
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
        **({"regression": evaluated[1]} if evaluated else {}),
    }
    record.update(
        status="complete", summary=summary, finished=datetime.now(UTC).isoformat(timespec="seconds")
    )
    outputs.write_config(partial, record)
    shutil.rmtree(partial / ".tmp", ignore_errors=True)
    outputs.finish(partial, run.final)
    # After the rename: a run killed just before it still has the checkpoint, so --resume
    # loads the trained weights and finishes instead of retraining from nothing.
    (run.final / CHECKPOINT).unlink(missing_ok=True)
    learn.path = run.final
    counted = ""
    if evaluated:
        reg = evaluated[1]
        counted = f", MAE {reg['seen']['mae']:.3f} on seen counts" + (
            f", {reg['unseen']['mae']:.3f} on unseen" if "unseen" in reg else ""
        )
    say(
        f"done: final error_rate {errors[-1]:.4f} (best {min(errors):.4f}){counted}; "
        f"run folder {run.final}"
    )
    return TrainResult(run.final, learn, metrics, record)


def _no_log(*args, **kwargs) -> None:
    pass


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _find_lr(learn, spec: RunSpec, run_dir: Path, quiet: bool) -> dict[str, Any]:
    """Run fastai's LR finder, save lr_find.png with every suggestion marked."""
    from fastai.callback.schedule import minimum, slide, steep, valley

    rule = lr_rule(spec)
    if spec.lr_find_iters == 0:
        if rule:
            raise CountnetError(f"--lr {spec.lr} needs the LR finder: set --lr-find-iters > 0")
        return {"used": float(spec.lr), "source": "--lr (LR finder skipped)", "suggestions": {}}
    with contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(learn.no_bar())
        learn.lr_find(num_it=spec.lr_find_iters, suggest_funcs=None, show_plot=False)
    # fastai's own slicing of the sweep, but each suggestion on its own: a short or early-
    # diverging sweep may not support all four, and one failing must not sink the others.
    n = spec.lr_find_iters
    rec = learn.recorder
    lrs, losses = torch.tensor(rec.lrs[n // 10 : -5]), torch.tensor(rec.losses[n // 10 : -5])
    finite = torch.isfinite(losses)
    if not finite.all():
        cut = int((~finite).nonzero()[0])
        lrs, losses = lrs[:cut], losses[:cut]
    suggestions, points = {}, []
    for func in (minimum, steep, valley, slide):
        try:
            lr, point = func(lrs, losses, n)
        except (IndexError, RuntimeError, ValueError):
            continue
        if lr == lr and lr > 0:  # not NaN
            suggestions[func.__name__] = float(lr)
            points.append(point)
    rec.plot_lr_find(suggestions=points, nms=list(suggestions))
    plots.save_current(run_dir / "lr_find.png")
    if not rule:
        return {"used": float(spec.lr), "source": "--lr", "suggestions": suggestions}
    why = f" (--lr auto, {'fine-tuning' if spec.uses_pretrained else 'from scratch'})"
    if rule not in suggestions and spec.lr == "auto":
        # A short sweep (few batches) may not support slide's window; auto falls back on
        # the next rule rather than stopping, and says so.
        fallback = next((r for r in AUTO_FALLBACK if r in suggestions), None)
        if fallback:
            why = f" (--lr auto: no {rule} suggestion from {len(rec.lrs)} steps)"
            rule = fallback
    if rule not in suggestions:
        raise CountnetError(
            f"the LR finder's {len(rec.lrs)} steps gave no {rule} suggestion: raise "
            "--lr-find-iters or pass --lr VALUE"
        )
    return {
        "used": suggestions[rule],
        "source": f"LR finder, {rule} suggestion" + (why if spec.lr == "auto" else ""),
        "rule": rule,
        "suggestions": suggestions,
    }


def lr_rule(spec: RunSpec) -> str | None:
    """The LR finder suggestion ``spec.lr`` asks for, or None for a fixed number. ``auto``
    is valley when fine-tuning (fastai's default) and AUTO_SCRATCH_RULE from scratch, the
    rule that won on the default sets and a small real set (BENCHMARKS.md)."""
    if not isinstance(spec.lr, str):
        return None
    if spec.lr == "auto":
        return "valley" if spec.uses_pretrained else AUTO_SCRATCH_RULE
    return spec.lr


def _with_same_normalization(new, old):
    """``new`` DataLoaders with ``old``'s Normalize (vision_learner adds one when pretrained)."""
    from fastai.data.transforms import Normalize

    norms = [t for t in old.after_batch.fs if isinstance(t, Normalize)]
    if norms:
        new.add_tfms(norms, "after_batch")
    return new


def _normalize_stats(learn) -> dict | None:
    from fastai.data.transforms import Normalize

    for t in learn.dls.after_batch.fs:
        if isinstance(t, Normalize):
            return {"mean": t.mean.flatten().tolist(), "std": t.std.flatten().tolist()}
    return None


def _write_figures(
    learn, run_dir: Path, metrics: list[dict], predictions: list[dict] | None = None
) -> None:
    """Learning curves and a batch; a classifier's confusion matrix and top losses, or a
    regression's predicted-vs-true scatter and residuals by count (``predictions``)."""
    from fastai.interpret import ClassificationInterpretation

    plots.plot_losses(read_rows(run_dir / "losses.csv"), metrics, run_dir / "losses.png")
    with learn.no_bar():
        if predictions is not None:
            plots.plot_scatter(predictions, run_dir / "scatter.png")
            plots.plot_residuals(predictions, run_dir / "residuals.png")
        else:
            interp = ClassificationInterpretation.from_learner(learn)
            interp.plot_confusion_matrix(figsize=(5, 5))
            plots.save_current(run_dir / "confusion_matrix.png")
            k = min(9, len(learn.dls.valid_ds))
            interp.plot_top_losses(k, nrows=3 if k > 3 else 1)
            plots.save_current(run_dir / "top_losses.png")
        learn.dls.show_batch(max_n=9, show=True)
        plots.save_current(run_dir / "batch.png")
