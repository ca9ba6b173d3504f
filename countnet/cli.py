"""The `countnet` command over both halves: one verb per stage, each a thin wrapper over
a library function (`gen` from countnet_gen, the rest from countnet_classify).

Errors users can act on (CountnetError, missing files, permissions) end as one line on
stderr and exit code 2; set COUNTNET_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from countnet.app import Typer
from countnet.atomic import check_writable_parent
from countnet.errors import USER_ERRORS, CountnetError, DiskFull, user_error_line
from countnet.malloc import retain_freed_memory_for_training
from countnet.names import printable
from countnet.options import spec_options, spec_values
from countnet.signals import (
    SIGINT_STATUS,
    SIGTERM_STATUS,
    Stopped,
    exit_status,
    sigterm_as_interrupt,
    stop_report,
)
from countnet_classify.spec import ARCHS, SCRATCH_ONLY, RunSpec
from countnet_classify.transforms import PRESETS
from countnet_gen.cli import EXAMPLES as GEN_EXAMPLES
from countnet_gen.cli import gen

app = Typer(
    name="countnet",
    help="What can a CNN learn, and what does it take? Generate counting datasets, train, report.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"countnet {version('countnet')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """What can a CNN learn, and what does it take? Generate counting datasets, train, report."""


app.command("gen", epilog=GEN_EXAMPLES)(gen)

TRAIN_EXAMPLES = """
[bold]Examples[/bold]

  countnet train data/paintings                       [dim]# ResNet-34, ImageNet weights[/dim]

  countnet train datasets/count-45-50_r6_s224_n2000 --epochs 15 --lr 1e-4 --name c4550

  countnet train datasets/count-1-5_r6_s224_n1000 --no-pretrained --size 64 --transforms dihedral

  countnet train datasets/count-1-5_r6_s224_n1000 --arch lenet --opt sgd --lr-policy inv --lr 0.01

  countnet train datasets/count-1-5_r6_s224_n1000 --weights resnet34.pth   [dim]# offline ImageNet weights[/dim]

  countnet train datasets/count-45-50_r4_s128_n1000_nooverlap_holdout-47-49 --task regression --no-pretrained --name reg4550

  countnet train --resume --name c15   [dim]# after an interruption: its own options[/dim]
"""  # noqa: E501 (example lines as typed)


def _run_spec(params: dict) -> RunSpec:
    """A RunSpec from `countnet train`'s parsed options (also what a sweep's are parsed by)."""
    if params.get("data") is None:
        raise CountnetError("give the DATA folder to train on (only --resume may leave it out)")
    return RunSpec(**spec_values(RunSpec, params))


# DATA is optional on the command line: `--resume --name NAME` reads it from the run.
@app.command("train", epilog=TRAIN_EXAMPLES)
@spec_options(RunSpec, overrides={"data": {"default": None}})
def train_cmd(ctx: typer.Context, **options: Any) -> None:
    """Train an image classifier (fastai, transfer learning) and write runs/<name>/.

    Picks the learning rate (--lr auto: the LR finder, or a fixed 3e-3 from scratch on a
    folder that is not a counting set), trains with fit-one-cycle (fine_tune when
    pretrained), checkpoints every epoch and writes metrics.csv/.md, plots,
    model.safetensors + model.json.
    `--resume --name NAME` continues an interrupted run with the options it was started
    with; options given beside it must be the same or ones a resume may change.
    """
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.run_folder import resume_hint, resumed_options

    if options["resume"]:
        given = {k for k in options if _given(ctx, k)}
        options = resumed_options(spec_values(RunSpec, options), given)
    spec = _run_spec(options)
    # after the options' checks: a mistyped option is one line without torch's imports first
    from countnet_classify.train import train

    retain_freed_memory_for_training()  # this process is ours
    try:
        train(spec, say=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt as e:
        raise Stopped(e, resume_hint(spec)) from None


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not its default)."""
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


SWEEP_EXAMPLES = """
[bold]Examples[/bold]

  countnet sweep datasets/count-1-5_r6_s224_n1000 --param lr=0.003,0.01,0.03 --no-pretrained --size 48

  countnet sweep datasets/count-1-5_r6_s224_n1000 --param opt=adam,sgd --param bs=32,64 --seeds 5 --no-pretrained

  countnet sweep datasets/count-1-5_r6_s224_n1000 --grid --param bs=32,64 --param wd=0,0.01 --no-pretrained
"""  # noqa: E501 (example lines as typed)


@app.command(
    "sweep",
    epilog=SWEEP_EXAMPLES,
    options_metavar="DATA [OPTIONS] [countnet train OPTIONS]",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sweep_cmd(
    ctx: typer.Context,
    param: Annotated[
        list[str],
        typer.Option(
            help="NAME=V1,V2,...: a `countnet train` option and its values (repeatable). "
            "Several: one change at a time from the baseline (each first value).",
        ),
    ] = [],  # noqa: B006  (typer reads the default; it is never mutated)
    seeds: Annotated[int, typer.Option(help="Runs per point, seeds 0..N-1.")] = 3,
    grid: Annotated[bool, typer.Option(help="Every combination of the values instead.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="The sweep folder \\[default: runs/<name>].")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Sweep name \\[default: sweep-<data>-<options>].")
    ] = None,
) -> None:
    """Train DATA once per (point, seed) and summarise: mean ± std over seeds.

    Every other `countnet train` option (e.g. --epochs, --no-pretrained, --size) applies to
    all runs. Writes sweep.csv, summary.csv, sweep.md and plots into the sweep folder, one
    run folder per run beside them. Rerun the same command to continue an interrupted sweep:
    finished runs are skipped, an interrupted one resumes.
    """
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.experiments.sweep.runner import run_sweep
    from countnet_classify.experiments.sweep.spec import Sweep

    base, params = _sweep_options(ctx.args, param)
    data = Path(base["data"])
    name = name or f"sweep-{data.resolve().name}-{'-'.join(k for k, _ in params)}"
    sweep = Sweep(base, params, str(out or Path("runs") / name), seeds=seeds, grid=grid)
    retain_freed_memory_for_training()
    try:
        folder = run_sweep(sweep, say=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt as e:
        raise Stopped(e, "rerun the same command to continue the sweep") from None
    typer.echo(f"wrote {folder / 'summary.csv'}, {folder / 'sweep.md'} and the plots", err=True)


def _sweep_options(args: list[str], param: list[str]) -> tuple[dict, tuple]:
    """(the train options given, as RunSpec fields; the --param values, typed) — parsed by
    `countnet train`'s own options, so a sweep takes exactly what train takes."""
    train = typer.main.get_command(app).commands["train"]
    ctx = train.make_context("countnet sweep", list(args))
    if ctx.params.get("data") is None:
        raise CountnetError("give the DATA folder to sweep over")
    given = {k: v for k, v in ctx.params.items() if _given(ctx, k) or k == "data"}
    base = _run_spec(given).to_dict()
    base = {k: v for k, v in base.items() if k in given}
    options = {p.name: p for p in train.params if p.param_type_name == "option"}
    params = []
    for text in param:
        key, sep, values = text.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep:
            raise CountnetError(f"--param {text!r}: write NAME=V1,V2,... (e.g. lr=1e-3,1e-2)")
        if key not in options:
            raise CountnetError(f"--param {key.replace('_', '-')}: not a `countnet train` option")
        opt = options[key]
        items = [v.strip() for v in values.split(",")] if values.strip() else []
        params.append((key, tuple(_option_value(opt, v, ctx) for v in items)))
    return base, tuple(params)


def _option_value(opt, text: str, ctx):
    """``text`` as the value train's option ``opt`` would get from the command line."""
    if opt.is_flag:  # --pretrained/--no-pretrained, --quiet: true/false
        lowered = text.lower()
        if lowered not in ("true", "false", "yes", "no", "1", "0"):
            raise CountnetError(f"--param {opt.name.replace('_', '-')}: {text!r} is not true/false")
        return lowered in ("true", "yes", "1")
    try:
        value = opt.process_value(ctx, text)
    except typer.TyperException as e:
        raise CountnetError(f"--param {opt.name.replace('_', '-')}={text}: {e.message}") from None
    return str(value) if isinstance(value, Path) else value


PREDICT_EXAMPLES = """
[bold]Examples[/bold]

  countnet predict runs/c4550 image1.png image2.png

  countnet predict runs/c4550 photos/ --out preds.csv   [dim]# a folder's images, recursively[/dim]

  countnet predict runs/c4550/model.safetensors datasets/count-45-50_r6_s224_n2000/valid/47/*.png --out preds.csv

  countnet predict runs/c4550/model.onnx image1.png  [dim]# countnet export's file[/dim]

[bold]Exit status[/bold]: 0 every input predicted; 3 some skipped (unreadable, listed on
stderr), the rest predicted; 2 an error (no readable image at all, a bad model), nothing
written.
"""  # noqa: E501 (example lines as typed)

# `countnet predict`'s exit status when some inputs were skipped and the rest predicted
SKIPPED_STATUS = 3


@app.command("predict", epilog=PREDICT_EXAMPLES)
def predict_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder, its model.safetensors / model.json, or an ONNX file from "
            "countnet export."
        ),
    ],
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Images to classify, or folders of them (walked recursively: image files "
            "only, in natural order). Files that do not decode are skipped and listed."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write a CSV (path, prediction, probability, p_<class>...; a regression "
            "run's: path, prediction, count)."
        ),
    ] = None,
) -> None:
    """Classify images with a trained run's weights (weights only: never unpickles); a
    regression run prints each image's count to one decimal and its rounding."""
    # lazy, and before torch's seconds of imports: a damaged run is one line at once
    from countnet_classify.model_meta import check_run

    check_run(run)
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.predict import Predictor, gather, write_csv

    predictor = Predictor(run)  # a bad model is an error before any image is read
    inputs = gather(images)
    for path, why in inputs.skipped:
        typer.echo(f"warning: skipped {printable(str(path))}: {why}", err=True)
    if not inputs.images:
        raise CountnetError(f"no readable image to predict ({inputs.total} input(s) skipped)")
    preds = predictor(inputs.images)
    if out:
        write_csv(preds, out)
        typer.echo(f"wrote {len(preds)} predictions to {out}", err=True)
    else:
        for p in preds:
            typer.echo(p.text())
    if inputs.skipped:
        n, total = len(inputs.skipped), inputs.total
        typer.echo(f"warning: {n} of {total} inputs skipped (not predicted):", err=True)
        for path, _ in inputs.skipped:
            typer.echo(f"  {printable(str(path))}", err=True)
        raise typer.Exit(SKIPPED_STATUS)


EXPORT_EXAMPLES = """
[bold]Examples[/bold]

  countnet export runs/c4550                            [dim]# runs/c4550/model.onnx[/dim]

  countnet export runs/c4550 --format onnx --out c4550.onnx
"""


@app.command("export", epilog=EXPORT_EXAMPLES)
def export_cmd(
    run: Annotated[Path, typer.Argument(help="A finished run folder (or its model.safetensors).")],
    format: Annotated[str, typer.Option("--format", help="onnx.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="Output file \\[default: RUN/model.onnx].")
    ] = None,
) -> None:
    """Write a run's network as an ONNX model (normalisation and softmax inside; the
    preprocessing it expects is in its metadata), checked against the weights with
    onnxruntime. Needs the onnx extra."""
    # lazy, and before torch's seconds of imports: a damaged run is one line at once
    from countnet_classify.model_meta import check_run

    check_run(run)
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.export import export

    path = export(run, format, out)
    typer.echo(f"wrote {path} (checked against the weights with onnxruntime)", err=True)


weights_app = Typer(help="Manage ImageNet weights in the torch hub cache.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

WEIGHTS_EXAMPLES = """
[bold]Examples[/bold]

  countnet weights import resnet34-b627a593.pth   [dim]# fetched on a machine online[/dim]

  countnet weights import my_resnet18.pth --arch resnet18
"""


@weights_app.command("import", epilog=WEIGHTS_EXAMPLES)
def weights_import_cmd(
    file: Annotated[
        Path, typer.Argument(help="A torchvision ImageNet state dict (.pth/.safetensors).")
    ],
    arch: Annotated[str, typer.Option(help="Which architecture the weights are for.")] = "resnet34",
) -> None:
    """Verify a weights file (keys and shapes) and place it where training looks for it."""
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.weights import import_weights

    if arch not in ARCHS or arch in SCRATCH_ONLY:
        raise CountnetError(
            f"--arch {arch!r} has no ImageNet weights; choose one of "
            f"{', '.join(a for a in ARCHS if a not in SCRATCH_ONLY)}"
        )
    dest, warning = import_weights(file, arch)
    if warning:
        typer.echo(warning, err=True)
    what = "names and shapes fit" if warning else "verified as"
    typer.echo(f"{file}: {what} {arch}'s ImageNet weights; cached at {dest}", err=True)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line."""
    try:
        with sigterm_as_interrupt():  # kill, systemd, SLURM: stop as Ctrl-C does
            result = app(standalone_mode=False, prog_name="countnet")
    except Stopped as e:  # an interrupted command and what to do next
        _fail(*stop_report(e))
    except DiskFull as e:
        _fail(f"disk full writing {e.path}: {RERUN_HINTS.get(_command(), e.hint)}")
    except (*USER_ERRORS, OSError) as e:  # an OSError the user cannot act on is a bug
        if (line := user_error_line(e)) is None:
            raise
        _fail(line)
    except (KeyboardInterrupt, typer.Abort) as e:
        _fail(*stop_report(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: bad option values, unknown options
        if type(e).__name__ == "NoArgsIsHelpError":
            typer.echo(e.format_message())
            sys.exit(0)
        _fail(" ".join(e.format_message().split()), code=getattr(e, "exit_code", 2))
    status = exit_status(result) if isinstance(result, int) else 0
    if status in (SIGINT_STATUS, SIGTERM_STATUS):  # typer returns an interruption silently
        typer.echo(
            "error: " + ("interrupted" if status == SIGINT_STATUS else "terminated (SIGTERM)"),
            err=True,
        )
    sys.exit(status)


# What to do after freeing space, where a command can continue instead of starting over.
RERUN_HINTS = {
    "train": "free space and rerun with --resume",
    "sweep": "free space and rerun the same command to continue",
}


def _command() -> str:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((a for a in sys.argv[1:] if not a.startswith("-")), "")


def _fail(message: str, code: int = 2) -> None:
    if os.environ.get("COUNTNET_DEBUG"):
        raise
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


SELECT_EXAMPLES = """
[bold]Examples[/bold]

  countnet select-transforms datasets/count-45-50_r6_s224_n2000 --out runs/select-transforms/c4550.json

  countnet train datasets/count-45-50_r6_s224_n2000 --transforms runs/select-transforms/c4550.json

  countnet select-transforms data/paintings --candidates none,flips --epochs 2 --size 128
"""  # noqa: E501 (example lines as typed)


# select-transforms trains every candidate the same short way: train's options, fewer of
# them, with its own defaults and words for the budget.
SELECT_OPTIONS = (
    "data", "task", "loss", "arch", "pretrained", "weights", "epochs", "lr", "size", "bs",
    "valid_pct", "seed", "device", "workers", "head", "head_dropout", "precise_bn",
)  # fmt: skip
SELECT_OVERRIDES = {
    "epochs": {"default": 1, "help": "Epochs per candidate (the same for all)."},
    "lr": {"type": float, "default": 1e-3, "help": "Learning rate (the same for all)."},
    "seed": {"help": "Seed (the same for all)."},
}


@app.command("select-transforms", epilog=SELECT_EXAMPLES)
@spec_options(RunSpec, only=SELECT_OPTIONS, overrides=SELECT_OVERRIDES)
def select_transforms_cmd(
    out: Annotated[
        Path | None,
        typer.Option(help="Result JSON \\[default: runs/select-transforms/<data>.json]."),
    ] = None,
    candidates: Annotated[str, typer.Option(help="Comma-separated presets to try.")] = ",".join(
        PRESETS
    ),
    default: Annotated[
        str,
        typer.Option(help="Preset kept when no candidate beats it by more than the noise."),
    ] = RunSpec.transforms,
    **options: Any,
) -> None:
    """Try augmentation presets on the same short budget and choose the best label-safe one.

    For countnet-generated counting sets, presets that can push a circle out of the frame or
    mirror one in (zoom, rotation, warp) are marked label-unsafe and cannot win.
    """
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.experiments.select import select_transforms

    spec = RunSpec(**spec_values(RunSpec, options), quiet=True, transforms="none")
    out = out or Path("runs") / "select-transforms" / f"{Path(spec.data).resolve().name}.json"
    names = tuple(c.strip() for c in candidates.split(",") if c.strip())
    retain_freed_memory_for_training()
    select_transforms(
        spec, out, candidates=names, default=default, say=lambda m: typer.echo(m, err=True)
    )
    typer.echo(f"written to {out}", err=True)


cache_app = Typer(
    help="The decoded-image cache of the fast training path (--loader cache).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info_cmd() -> None:
    """Where the cache lives and what it holds (one line per decoded dataset)."""
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.cache import cache_entries, decoded_dir

    entries = cache_entries()
    total = sum(e["bytes"] for e in entries)
    typer.echo(
        f"{decoded_dir()}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
        f"{total / 2**20:.1f} MiB"
    )
    for e in entries:
        n = sum(e["n"].values())
        typer.echo(
            f"{Path(e['folder']).name}\t{e['size']}px\t{n} images\t"
            f"{e['bytes'] / 2**20:.1f} MiB\t{e['root']}"
        )


@cache_app.command("clear")
def cache_clear_cmd() -> None:
    """Delete every decoded dataset (they are rebuilt on the next training run)."""
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.cache import clear_cache, decoded_dir

    freed = clear_cache()
    typer.echo(f"cleared {decoded_dir()} ({freed / 2**20:.1f} MiB freed)", err=True)


COST_EXAMPLES = """
[bold]Examples[/bold]

  countnet cost --no-timing        # every --arch at 224 px, 1000 classes

  countnet cost resnet18 resnet34 --size 64 --classes 6 --out cost.csv
"""


@app.command("cost", epilog=COST_EXAMPLES)
def cost_cmd(
    archs: Annotated[
        list[str] | None, typer.Argument(help="Architectures (default: every --arch).")
    ] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    classes: Annotated[int, typer.Option(help="Outputs of the head.")] = 1000,
    head: Annotated[
        str, typer.Option(help="fastai or linear (torchvision's); the default is train's.")
    ] = RunSpec.head,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where latency is timed.")] = (
        "auto"
    ),
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure latency and throughput.")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
) -> None:
    """What each model costs: parameters, multiply-accumulates per image, weights on disk,
    latency at batch 1 and throughput at batch 64 (fp32, medians after warm-up)."""
    from rich.console import Console
    from rich.table import Table

    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.cost import DISPLAY_COLUMNS, cost_table, format_row, write_csv

    if out is not None:  # before minutes of timing, not after
        if out.is_dir():
            raise CountnetError(f"--out {out} is a folder; give a file name (e.g. cost.csv)")
        check_writable_parent(out)
    rows = cost_table(
        archs or ARCHS, size=size, classes=classes, head=head, device=device, timed=timing
    )
    table = Table(*DISPLAY_COLUMNS, title=f"model cost at {size} px, {classes} classes")
    for row in rows:
        table.add_row(*format_row(row))
    Console(width=200).print(table)
    if out is not None:
        write_csv(rows, out)
        typer.echo(f"wrote {out}", err=True)


REPORT_EXAMPLES = """
[bold]Examples[/bold]

  countnet report runs/c15 runs/c4550 --out runs

  countnet report runs/*/ --out reports/today
"""


@app.command("report", epilog=REPORT_EXAMPLES)
def report_cmd(
    runs: Annotated[
        list[Path], typer.Argument(help="Finished run folders and `countnet sweep` folders.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for report.html and report.md.")] = Path("runs"),
) -> None:
    """Write report.html (self-contained) and report.md over finished runs and sweeps."""
    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify.report import write_report

    md, page = write_report(runs, out)
    typer.echo(f"wrote {page} and {md}", err=True)


EVALUATE_EXAMPLES = """
[bold]Examples[/bold]

  countnet evaluate runs/c4550 datasets/count-45-50_r6_s224_n2000   [dim]# valid/ and test/[/dim]

  countnet evaluate c4550 photos/ datasets/count-45-50_r6_s224_n2000/valid --runs-dir runs

  countnet evaluate runs/c4550 photos/ --name my-photos   [dim]# runs/c4550/eval/my-photos/[/dim]

[bold]Exit status[/bold]: 0 every image scored; 3 some skipped (unreadable, listed on
stderr), the rest scored and written; 2 an error, in one line, nothing written.
"""


@app.command("evaluate", epilog=EVALUATE_EXAMPLES)
def evaluate_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            help="A finished run: its folder, model.json or model.safetensors (with "
            "--runs-dir: its name)."
        ),
    ],
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Labelled sets, each scored on its own: a countnet dataset (its valid/ "
            "and test/), a folder of class folders, or one split folder."
        ),
    ],
    runs_dir: Annotated[
        Path | None, typer.Option(help="Find RUN by name in this folder of runs.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The set's name (one DATA only): writes <run>/eval/NAME/."),
    ] = None,
) -> None:
    """Score a finished run on labelled sets (weights only, fp32, the run's preprocessing):
    error rate, accuracy, per-class accuracy (regression: MAE, RMSE, bias per count),
    written to <run>/eval/<set>/ with predictions.csv and a confusion matrix or scatter."""
    from rich.console import Console
    from rich.table import Table

    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify import scoring
    from countnet_classify.predict import Predictor

    if name is not None and len(data) > 1:
        raise CountnetError(f"--name names one set, and {len(data)} DATA were given")
    folder = scoring.run_folder(run, runs_dir)
    predictor = Predictor(folder)  # a bad model is an error before any image is read
    sets = [scoring.read_set(d, name) for d in data]
    # the folder of class folders the run trained on: only its held-out images
    sets = [scoring.own_split(s, folder) for s in sets]
    scoring.check_distinct(sets)
    for s in sets:  # every set's classes checked before any is scored
        scoring.unknown_classes(s, predictor.meta)
    inputs = [scoring.readable(s) for s in sets]  # and every set's images decoded
    regression = predictor.meta.get("task") == "regression"
    table = Table(*scoring.table_columns(regression), title=f"{folder.name} evaluated")
    skipped = []
    for s, found in zip(sets, inputs, strict=True):
        scored = _evaluate_one(predictor, s, found, folder)
        for row in scoring.table_rows(scored):
            table.add_row(*row)
        skipped += scored.skipped
    Console(width=200).print(table)
    if skipped:
        typer.echo(f"warning: {len(skipped)} image(s) skipped (not scored):", err=True)
        for path, _ in skipped:
            typer.echo(f"  {printable(str(path))}", err=True)
        raise typer.Exit(SKIPPED_STATUS)


def _evaluate_one(predictor, labelled, inputs, folder: Path):
    """One set scored and written, its warnings and where it went on stderr."""
    import time

    # lazy: start-up imports only what the command run needs (torch, NumPy, matplotlib)
    from countnet_classify import scoring

    t0 = time.perf_counter()
    scored = scoring.score(predictor, labelled, inputs)
    seconds = time.perf_counter() - t0
    for path, why in scored.skipped:
        typer.echo(f"warning: skipped {printable(str(path))}: {why}", err=True)
    m = scored.metrics
    if m["unknown_classes"]:
        typer.echo(
            f"warning: {labelled.name}: {m['unknown_images']} image(s) of classes the run "
            f"does not know, counted wrong: {scoring.listed(m['unknown_classes'])}",
            err=True,
        )
    out = scoring.write_eval(folder, scored, predictor.meta)
    rate = m["images"] / max(seconds, 1e-9)
    where = printable(str(out))
    typer.echo(f"wrote {where} ({m['images']} images in {seconds:.1f}s, {rate:.0f}/s)", err=True)
    return scored


BASELINE_EXAMPLES = """
[bold]Examples[/bold]

  countnet baseline datasets/count-1-5_r6_s224_n1000   [dim]# writes runs/baselines/<set>/[/dim]

  countnet baseline datasets/count-1-5_r6_s224_n1000 datasets/threes --runs-dir results
"""


@app.command("baseline", epilog=BASELINE_EXAMPLES)
def baseline_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Counting sets: folders holding train/<count>/ and valid/<count>/ (test/ "
            "where present), as countnet gen writes them."
        ),
    ],
    runs_dir: Annotated[
        Path, typer.Option(help="Results go to RUNS_DIR/baselines/<set name>/.")
    ] = Path("runs"),
) -> None:
    """Count circles without learning (scikit-image): threshold, connected components, shape
    filters and a watershed for overlapping circles, fitted on train/ and scored on valid/
    and test/ as a CNN is. Writes metrics.json and predictions.csv per set."""
    from rich.console import Console
    from rich.table import Table

    # lazy: start-up imports only what the command run needs (skimage, SciPy)
    from countnet_classify.classical import run_baseline, write_baseline

    names = [p.resolve().name for p in data]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CountnetError(f"two sets are named {twice[0]}: their results would share a folder")
    table = Table("set", "images", "count by", "roundness ≥", "error", "MAE", "train error")
    for path in data:
        metrics, rows = run_baseline(path.resolve())
        folder = write_baseline(metrics, rows, runs_dir / "baselines" / metrics["set"])
        p = metrics["params"]
        table.add_row(
            metrics["set"], str(metrics["images"]), p["count_by"], f"{p['min_roundness']:g}",
            f"{metrics['error_rate']:.4f}", f"{metrics['mae']:.4f}", f"{p['train_error_rate']:.4f}",
        )  # fmt: skip
        typer.echo(f"wrote {printable(str(folder))}", err=True)
    Console(width=200).print(table)
