"""The `countnet` command over both halves: one verb per stage, each a thin wrapper over
a library function (`gen` from countnet_gen, the rest from countnet_classify).

Errors users can act on (CountnetError, missing files, permissions) end as one line on
stderr and exit code 2; set COUNTNET_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from countnet.errors import USER_ERRORS, CountnetError, one_line
from countnet.malloc import retain_freed_memory_for_training
from countnet_gen.cli import EXAMPLES as GEN_EXAMPLES
from countnet_gen.cli import gen

app = typer.Typer(
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

  countnet train datasets/count-45-50 --epochs 15 --lr 1e-4 --name c4550

  countnet train datasets/count-1-5 --no-pretrained --size 64 --transforms dihedral

  countnet train datasets/count-1-5 --arch lenet --opt sgd --lr-policy inv --lr 0.01

  countnet train datasets/count-1-5 --weights resnet34.pth   [dim]# offline ImageNet weights[/dim]

  countnet train datasets/count-45-50-holdout --task regression --no-pretrained --name reg4550

  countnet train datasets/count-1-5 --name c15 --resume       [dim]# after an interruption[/dim]
"""


# Options that train and select-transforms share, spelled once.
TaskOpt = Annotated[
    str,
    typer.Option(
        help="classification | regression (the count as a number: class folders named by "
        "counts; test/<count>/ is predicted after training)."
    ),
]
LossOpt = Annotated[
    str | None, typer.Option(help="Regression loss: mse | huber | l1 \\[default: mse].")
]
HeadOpt = Annotated[
    str,
    typer.Option(
        help="fastai: concat (avg+max) pooling, BatchNorm, a 512-unit hidden layer; "
        "linear: average pooling + one linear layer (torchvision's head; counts better)."
    ),
]
HeadDropoutOpt = Annotated[
    float | None,
    typer.Option(
        help="Dropout in the classifier head (fastai's ps) "
        "\\[default: 0.5 with --head fastai, 0 with --head linear]."
    ),
]
PreciseBNOpt = Annotated[
    int,
    typer.Option(
        help="Training images that re-estimate BatchNorm statistics before each "
        "validation (0: off, keep the running averages)."
    ),
]


def _run_spec(params: dict):
    """A RunSpec from `countnet train`'s parsed options (also what a sweep's are parsed by)."""
    from countnet_classify.config import RunSpec

    paths = ("data", "weights", "runs_dir")
    return RunSpec(
        **{k: (str(v) if k in paths and v is not None else v) for k, v in params.items()}
    )


@app.command("train", epilog=TRAIN_EXAMPLES)
def train_cmd(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Argument(help="train/ + valid/ folders, or a folder of class folders.")
    ],
    task: TaskOpt = "classification",
    loss: LossOpt = None,
    arch: Annotated[
        str, typer.Option(help="resnet18 | resnet34 | resnet50 | squeezenet1_1 | alexnet | lenet.")
    ] = "resnet34",
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained", help="Start from ImageNet weights (torch hub cache)."
        ),
    ] = True,
    weights: Annotated[
        Path | None,
        typer.Option(help="ImageNet weights file (torchvision state dict) instead of the cache."),
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Epochs (after the frozen epoch when fine-tuning).")
    ] = 5,
    lr: Annotated[str, typer.Option(help="'auto' (LR finder's valley) or a number.")] = "auto",
    lr_policy: Annotated[
        str, typer.Option(help="one-cycle | inv | step (Caffe's policies).")
    ] = "one-cycle",
    lr_gamma: Annotated[
        float | None, typer.Option(help="inv/step gamma \\[default: 1e-4 inv, 0.1 step].")
    ] = None,
    lr_power: Annotated[float, typer.Option(help="inv power.")] = 0.75,
    lr_step: Annotated[
        int | None, typer.Option(help="step: iterations per drop \\[default: a third of training].")
    ] = None,
    opt: Annotated[
        str, typer.Option(help="adam (fastai's Adam, fused) | sgd (SGD with momentum, Caffe's).")
    ] = "adam",
    momentum: Annotated[
        float | None,
        typer.Option(help="Momentum, held constant \\[default: 0.9; one-cycle cycles 0.95-0.85]."),
    ] = None,
    wd: Annotated[
        float | None,
        typer.Option(help="Weight decay \\[default: adam 0.01 decoupled, sgd 5e-4 as L2]."),
    ] = None,
    freeze_epochs: Annotated[int, typer.Option(help="Frozen-body epochs when fine-tuning.")] = 1,
    size: Annotated[int, typer.Option(help="Training image size (pixels, squish-resized).")] = 224,
    bs: Annotated[
        str,
        typer.Option(help="Batch size, or 'auto': a power of two <= train images/8 in [8, 64]."),
    ] = "auto",
    valid_pct: Annotated[
        float, typer.Option(help="Validation share per class, for sets without valid/.")
    ] = 0.2,
    transforms: Annotated[
        str, typer.Option(help="none | flips | dihedral | aug, or a select-transforms JSON.")
    ] = "dihedral",
    seed: Annotated[int, typer.Option(help="Random seed (split, init, shuffling).")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    gpus: Annotated[
        int,
        typer.Option(
            help="Train data-parallel in N processes, one per GPU (--device cpu: N CPU "
            "processes). --bs stays the whole batch, bs/N per process."
        ),
    ] = 1,
    precision: Annotated[
        str,
        typer.Option(
            help="auto | fp32 | bf16 | fp16. auto: bf16 where the CPU/GPU has it natively, "
            "fp16 on older GPUs, else fp32."
        ),
    ] = "auto",
    loader: Annotated[
        str,
        typer.Option(
            help="cache: decode once into a uint8 cache, augment on the batch (fast); "
            "files: decode image files every batch."
        ),
    ] = "cache",
    name: Annotated[str | None, typer.Option(help="Run name \\[default: <data>_<arch>].")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    workers: Annotated[
        int | None,
        typer.Option(help="DataLoader workers for --loader files \\[default: 0 on CPU, 8 on GPU]."),
    ] = None,
    lr_find_iters: Annotated[
        int, typer.Option(help="LR finder iterations (0 skips it; needs --lr VALUE).")
    ] = 100,
    head: HeadOpt = "fastai",
    head_dropout: HeadDropoutOpt = None,
    precise_bn: PreciseBNOpt = 1024,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its last epoch.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing run of the same name.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="One line per epoch, no progress bars.")
    ] = False,
) -> None:
    """Train an image classifier (fastai, transfer learning) and write runs/<name>/.

    Runs the LR finder, trains with fit-one-cycle (fine_tune when pretrained), checkpoints
    every epoch and writes metrics.csv/.md, plots, model.safetensors + model.json.
    """
    from countnet_classify.train import train

    spec = _run_spec(ctx.params)
    retain_freed_memory_for_training()  # this process is ours
    try:
        train(spec, say=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt:
        raise CountnetError(
            f"interrupted: continue with `countnet train {data} --name {spec.run_name} --resume`"
        ) from None


SWEEP_EXAMPLES = """
[bold]Examples[/bold]

  countnet sweep datasets/count-1-5 --param lr=0.003,0.01,0.03 --no-pretrained --size 48

  countnet sweep datasets/count-1-5 --param opt=adam,sgd --param bs=32,64 --seeds 5 --no-pretrained

  countnet sweep datasets/count-1-5 --grid --param bs=32,64 --param wd=0,0.01 --no-pretrained
"""


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
    from countnet_classify.experiments.sweep.runner import run_sweep
    from countnet_classify.experiments.sweep.spec import Sweep

    base, params = _sweep_options(ctx.args, param)
    data = Path(base["data"])
    name = name or f"sweep-{data.resolve().name}-{'-'.join(k for k, _ in params)}"
    sweep = Sweep(base, params, str(out or Path("runs") / name), seeds=seeds, grid=grid)
    retain_freed_memory_for_training()
    try:
        folder = run_sweep(sweep, say=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt:
        raise CountnetError("interrupted: rerun the same command to continue the sweep") from None
    typer.echo(f"wrote {folder / 'summary.csv'}, {folder / 'sweep.md'} and the plots", err=True)


def _sweep_options(args: list[str], param: list[str]) -> tuple[dict, tuple]:
    """(the train options given, as RunSpec fields; the --param values, typed) — parsed by
    `countnet train`'s own options, so a sweep takes exactly what train takes."""
    train = typer.main.get_command(app).commands["train"]
    try:
        ctx = train.make_context("countnet sweep", list(args))
    except typer.TyperException as e:
        if "Missing argument" in e.format_message():
            raise CountnetError("give the DATA folder to sweep over") from None
        raise
    given = {
        k: v
        for k, v in ctx.params.items()
        if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE" or k == "data"
    }
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

  countnet predict runs/c4550/model.safetensors datasets/count-45-50/valid/47/*.png --out preds.csv

  countnet predict runs/c4550/model.onnx image1.png  [dim]# countnet export's file[/dim]
"""


@app.command("predict", epilog=PREDICT_EXAMPLES)
def predict_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder, its model.safetensors / model.json, or an ONNX file from "
            "countnet export."
        ),
    ],
    images: Annotated[list[Path], typer.Argument(help="Images to classify.")],
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
    from countnet_classify.predict import predict, write_csv

    preds = predict(run, images)
    if out:
        write_csv(preds, out)
        typer.echo(f"wrote {len(preds)} predictions to {out}", err=True)
    else:
        for p in preds:
            typer.echo(p.text())


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
    from countnet_classify.export import export

    path = export(run, format, out)
    typer.echo(f"wrote {path} (checked against the weights with onnxruntime)", err=True)


weights_app = typer.Typer(
    help="Manage ImageNet weights in the torch hub cache.", no_args_is_help=True
)
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
    from countnet_classify.config import ARCHS
    from countnet_classify.model import import_weights

    if arch not in ARCHS or arch == "lenet":
        raise CountnetError(
            f"--arch {arch!r} has no ImageNet weights; choose one of "
            f"{', '.join(a for a in ARCHS if a != 'lenet')}"
        )
    dest, warning = import_weights(file, arch)
    if warning:
        typer.echo(warning, err=True)
    what = "names and shapes fit" if warning else "verified as"
    typer.echo(f"{file}: {what} {arch}'s ImageNet weights; cached at {dest}", err=True)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line."""
    try:
        result = app(standalone_mode=False)
    except USER_ERRORS as e:
        _fail(one_line(e))
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", code=130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: bad option values, unknown options
        if type(e).__name__ == "NoArgsIsHelpError":
            typer.echo(e.format_message())
            sys.exit(0)
        _fail(" ".join(e.format_message().split()), code=getattr(e, "exit_code", 2))
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    if os.environ.get("COUNTNET_DEBUG"):
        raise
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


SELECT_EXAMPLES = """
[bold]Examples[/bold]

  countnet select-transforms datasets/count-45-50 --out runs/select-transforms/c4550.json

  countnet train datasets/count-45-50 --transforms runs/select-transforms/c4550.json

  countnet select-transforms data/paintings --candidates none,flips --epochs 2 --size 128
"""


@app.command("select-transforms", epilog=SELECT_EXAMPLES)
def select_transforms_cmd(
    data: Annotated[Path, typer.Argument(help="A folder-labeled set, as for train.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Result JSON \\[default: runs/select-transforms/<data>.json]."),
    ] = None,
    candidates: Annotated[
        str, typer.Option(help="Comma-separated presets to try.")
    ] = "none,flips,dihedral,aug",
    default: Annotated[
        str,
        typer.Option(help="Preset kept when no candidate beats it by more than the noise."),
    ] = "dihedral",
    task: TaskOpt = "classification",
    loss: LossOpt = None,
    arch: Annotated[str, typer.Option(help="Architecture for the comparison.")] = "resnet34",
    pretrained: Annotated[
        bool, typer.Option("--pretrained/--no-pretrained", help="Start from ImageNet weights.")
    ] = True,
    weights: Annotated[
        Path | None, typer.Option(help="ImageNet weights file instead of the cache.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per candidate (the same for all).")] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate (the same for all).")] = 1e-3,
    size: Annotated[int, typer.Option(help="Image size.")] = 224,
    bs: Annotated[str, typer.Option(help="Batch size, or 'auto' (as for train).")] = "auto",
    valid_pct: Annotated[
        float, typer.Option(help="Validation share, for sets without valid/.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed (the same for all).")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    workers: Annotated[int | None, typer.Option(help="DataLoader workers.")] = None,
    head: HeadOpt = "fastai",
    head_dropout: HeadDropoutOpt = None,
    precise_bn: PreciseBNOpt = 1024,
) -> None:
    """Try augmentation presets on the same short budget and choose the best label-safe one.

    For countnet-generated counting sets, presets that can push a circle out of the frame or
    mirror one in (zoom, rotation, warp) are marked label-unsafe and cannot win.
    """
    from countnet_classify.config import RunSpec
    from countnet_classify.experiments.select import select_transforms

    spec = RunSpec(
        data=str(data),
        task=task,
        loss=loss,
        arch=arch,
        pretrained=pretrained,
        weights=str(weights) if weights else None,
        epochs=epochs,
        lr=lr,
        size=size,
        bs=bs,
        valid_pct=valid_pct,
        seed=seed,
        device=device,
        workers=workers,
        head=head,
        head_dropout=head_dropout,
        precise_bn=precise_bn,
        quiet=True,
        transforms="none",
    )
    out = out or Path("runs") / "select-transforms" / f"{Path(data).resolve().name}.json"
    names = tuple(c.strip() for c in candidates.split(",") if c.strip())
    retain_freed_memory_for_training()
    select_transforms(
        spec, out, candidates=names, default=default, say=lambda m: typer.echo(m, err=True)
    )
    typer.echo(f"written to {out}", err=True)


cache_app = typer.Typer(
    help="The decoded-image cache of the fast training path (--loader cache).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info_cmd() -> None:
    """Where the cache lives and what it holds (one line per decoded dataset)."""
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
    head: Annotated[str, typer.Option(help="fastai or linear (torchvision's).")] = "linear",
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

    from countnet.atomic import check_writable_parent
    from countnet_classify.config import ARCHS
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

  countnet report runs/count-1-5 runs/count-45-50 --out runs

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
    from countnet_classify.report import write_report

    md, page = write_report(runs, out)
    typer.echo(f"wrote {page} and {md}", err=True)
