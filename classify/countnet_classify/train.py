"""`countnet train`: prepare (options, run folder, data, loaders) -> a fastai Learner -> the
learning rate (given, or the LR finder's) -> fit through the phases (fine_tune semantics
when pretrained, fit_one_cycle from scratch, or Caffe's inv/step), checkpointing every
epoch -> finish (figures, weights, tables). Data-parallel runs (--gpus N, torchrun) go
through the same steps in every process."""

from __future__ import annotations

import contextlib
import time

from fastai.callback.progress import ProgressCallback
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import set_seed

from countnet.atomic import exclusive
from countnet.errors import CountnetError
from countnet.tables import read_csv
from countnet_classify import optim, phases, regression, run_folder
from countnet_classify.cache import decoded_splits
from countnet_classify.callbacks.checkpoint import Checkpoint, read_checkpoint
from countnet_classify.callbacks.metrics import METRICS_FIELDS, REGRESSION_FIELDS, MetricsTable
from countnet_classify.callbacks.precise_bn import PreciseBN
from countnet_classify.callbacks.precision import apply_precision
from countnet_classify.devices import use_channels_last
from countnet_classify.finish import TrainResult, finish_run
from countnet_classify.lr import find_lr
from countnet_classify.model import make_learner
from countnet_classify.parallel.group import check_processes, current, join_launcher, share
from countnet_classify.parallel.launch import launch
from countnet_classify.parallel.shard import DataParallel
from countnet_classify.prepare import PreparedRun, check_spec, loaders, prepare_run, workers_for
from countnet_classify.record import run_record
from countnet_classify.schedules import caffe_scheduler  # also patches fit_one_cycle onto Learner
from countnet_classify.screen import check_data_root
from countnet_classify.spec import RunSpec
from countnet_classify.weights import imagenet_state_dict


def train(spec: RunSpec, *, say=print, figures: bool = True, cbs: tuple = ()) -> TrainResult | None:
    """Train per ``spec``; returns the finished run folder and the learner. ``figures=False``
    skips the interpretation plots (select-transforms' candidates, which nobody looks at);
    ``cbs``: extra fastai callbacks for every phase. The run's lock (``.<name>.lock`` beside
    it) keeps a second process (another shell, the workflow) from training, resuming or
    replacing the same run at the same time.

    ``spec.gpus`` > 1 starts that many processes and returns when they finish (the learner
    stays in them: ``learner`` is None; rank 0 prints the messages). Under torchrun every
    process calls this; ranks other than 0 return None (countnet_classify.parallel)."""
    group = join_launcher(spec)
    if group is None and spec.gpus > 1:
        if cbs:
            raise CountnetError("internal: extra callbacks cannot reach --gpus processes")
        check_data_root(spec.data)  # a mistyped DATA first, as one process reports it
        check_spec(spec)  # bad options stop here, before N processes start
        check_processes(spec, spec.gpus)
        run_dir = launch(spec, train, say=say, figures=figures)
        return TrainResult(
            run_dir,
            None,
            read_csv(run_dir / "metrics.csv"),
            run_folder.read_config(run_dir),
        )
    if group is not None and not group.leader:
        _follow(spec, cbs)
        return None
    shared = False
    try:
        with exclusive(spec.run_dir, "run"):
            t_start = time.perf_counter()
            run = prepare_run(spec, say)
            with run_folder.dropped_on_error(run.partial, keep=run.saved is not None):
                learn = build_learner(spec, run)
                # Found once and recorded: --resume reuses it instead of running it again.
                lr = (run.saved or {}).get("lr") or find_lr(
                    learn, spec, run.partial, run.quiet, say
                )
                base_lr = float(lr["used"])
                schedule = plan_phases(spec, base_lr)
                record = run_record(spec, run, learn, lr, schedule)
                run_folder.write_config(run.partial, record)
            ckpt, ckpt_file = run.checkpoint or (None, None)
            if group is not None:
                share(_plan(run, base_lr, checkpoint=ckpt_file))
                shared = True
            say(f"learning rate: {base_lr:.3g} ({record['lr']['source']})")

            t_train = time.perf_counter()
            fit_run(spec, run, learn, schedule, say=say, cbs=cbs, checkpoint=ckpt)
            session = {"train": time.perf_counter() - t_train, "wall": t_start}
            return finish_run(spec, run, learn, record, say=say, figures=figures, session=session)
    except BaseException:
        if group is not None and not shared:  # the other ranks wait for the plan: stop them
            with contextlib.suppress(Exception):
                share(None)
        raise


def _plan(run: PreparedRun, lr: float, *, checkpoint) -> dict:
    """What rank 0 decided that the other ranks of a data-parallel run train by."""
    return {
        "partial": run.partial,
        "screened": run.screened,
        "target": run.target,
        "bs": run.bs,
        "lr": lr,
        "checkpoint": checkpoint,  # the file rank 0 resumes from (None: from the start)
    }


def _follow(spec: RunSpec, cbs: tuple) -> None:
    """A data-parallel rank other than 0: train its shards by rank 0's plan, write nothing.
    Returns at once when rank 0 stopped before training (it reports why)."""
    plan = share()
    if plan is None:
        return
    (transforms, transforms_reason), device, precision = check_spec(spec)
    channels_last = use_channels_last(precision, device)
    state_dict = imagenet_state_dict(spec.arch, spec.weights)[0] if spec.uses_pretrained else None
    sc, target, bs = plan["screened"], plan["target"], plan["bs"]
    # rank 0 built the cache before sharing the plan: this only maps it
    decoded = (
        decoded_splits(sc, spec.size, say=_no_log, progress=False)
        if spec.loader == "cache"
        else None
    )
    workers = workers_for(spec, device)
    dls, file_dls = loaders(
        spec, sc, decoded, target, bs, transforms, device, channels_last, workers
    )
    run = PreparedRun(
        final=spec.run_dir, partial=plan["partial"], saved=None, screened=sc, data_info={},
        dls=dls, file_dls=file_dls, transforms=transforms, transforms_reason=transforms_reason,
        device=device, precision=precision, channels_last=channels_last, bs=bs,
        workers=workers, quiet=True, state_dict=state_dict, weights_source=None,
        target=target, test_items=[],
    )  # fmt: skip
    learn = build_learner(spec, run)
    ckpt = read_checkpoint(plan["checkpoint"]) if plan["checkpoint"] else None
    fit_run(spec, run, learn, plan_phases(spec, plan["lr"]), say=_no_log, cbs=cbs, checkpoint=ckpt)


def build_learner(spec: RunSpec, run: PreparedRun):
    """The fastai Learner: model (seeded after the loaders, so both loaders start it
    alike), metrics, precision and memory layout, and a quiet logger for logs."""
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
    group = current()
    if checkpoint:
        done = int(checkpoint["epoch"])
        say(f"resuming after epoch {done}/{total}")
        if done >= total:
            say("all epochs were already completed")

    def callbacks(phase: phases.Phase, offset: int) -> list:
        fields = REGRESSION_FIELDS if run.regression else METRICS_FIELDS
        writers = [
            MetricsTable(run.partial, offset, total, echo=run.quiet, fields=fields),
            Checkpoint(run.partial, offset, phase.name),
        ]
        if group is not None and not group.leader:
            writers = []
        parallel = [DataParallel(group, spec.seed, offset)] if group is not None else []
        return [PreciseBN(spec.precise_bn), *writers, *parallel, *cbs]

    def caffe(phase: phases.Phase, n_iter: int):
        return caffe_scheduler(
            phase.policy, float(phase.lr), phase.epochs * n_iter, gamma=spec.lr_gamma,
            power=spec.lr_power, stepsize=spec.lr_step,
        )  # fmt: skip

    phases.fit_phases(learn, schedule, callbacks, checkpoint=checkpoint, schedule=caffe)


def _no_log(*args, **kwargs) -> None:
    pass
