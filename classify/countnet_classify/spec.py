"""RunSpec: the one description of a training run, shared by `countnet train`, the
Snakefile and the run folder's config.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from countnet.errors import CountnetError
from countnet.options import NOT_CLI, cli
from countnet_classify.transforms import AUTO, PRESETS, default_preset, resolve_transforms

# fastai's XResNet-18 (the "bag of tricks" ResNet: three-conv stem, pooled shortcuts) at a
# fraction of the channels: arch -> width. No ImageNet weights: trained from scratch.
XRESNETS = {"xresnet18": 1.0, "xresnet18_half": 0.5, "xresnet18_quarter": 0.25}
ARCHS = ("resnet18", "resnet34", "resnet50", "squeezenet1_1", "alexnet", *XRESNETS, "lenet")
SCRATCH_ONLY = (*XRESNETS, "lenet")  # archs without ImageNet weights
LR_POLICIES = ("one-cycle", "inv", "step")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# --lr: "auto" or one of the LR finder's suggestions (fastai's names; "minimum" is already
# the loss minimum / 10), or a number.
LR_RULES = ("auto", "valley", "minimum", "steep", "slide")
# --lr auto from scratch on a countnet counting set: the rule that won on the default sets
# (BENCHMARKS.md); fine-tuning uses fastai's default, valley.
AUTO_SCRATCH_RULE = "slide"
# --lr auto from scratch on any other folder: a fixed peak rate, no finder. On digits and
# lfw it beat the finder's slide at every seed but one, in two thirds of the time
# (BENCHMARKS.md, "A fixed rate for plain folders").
FOLDER_SCRATCH_LR = 3e-3
LOADERS = ("cache", "files")
OPTIMIZERS = ("adam", "sgd")  # optim.OPTIMIZERS: fastai's Adam (fused), the seeds' SGD
# Classifier heads on a torchvision body: fastai's (concat avg+max pooling, BatchNorm, a
# 512-unit hidden layer) or torchvision's own (average pooling + one linear layer).
HEADS = ("fastai", "linear")
# What the network predicts: a class (softmax over the folders) or the count as a number
# (one output; the class folders must be numbers). Regression losses: countnet_classify.regression.
TASKS = ("classification", "regression")
# --size's bounds: below 8 px no network here keeps a feature map; above 8192 px one
# image's activations alone outgrow a large machine's memory.
MIN_SIZE, MAX_SIZE = 8, 8192
# The smallest --size whose feature maps these archs keep (model.check_input_size's forward
# pass finds the same; the others take MIN_SIZE): checked without torch, at a plan's parse.
MIN_INPUT = {"squeezenet1_1": 17, "alexnet": 63, "lenet": 16}
LOSSES = ("mse", "huber", "l1")
# Chosen by measurement on the default 45-50 set with counts 47 and 49 held out
# (BENCHMARKS.md, "Regression"); --loss overrides it.
DEFAULT_LOSS = "mse"
# Options that may differ between an interrupted run and its --resume.
# --gpus among them: the batch is the run's whole batch however many processes share it
# (countnet_classify.parallel), so a run may resume on another number of devices.
RESUME_FREE = ("resume", "quiet", "device", "workers", "force", "note", "loader", "gpus")


@dataclass(frozen=True)
class RunSpec:
    """Every option of a training run. ``lr`` is a number, an LR finder suggestion's name,
    or "auto" (a suggestion chosen by ``lr_rule``). Caffe-style policies: inv is
    base_lr*(1+gamma*iter)^-power; step drops by gamma every ``lr_step`` iterations
    (default: a third of training)."""

    data: str = field(
        metadata=cli(
            "train/ + valid/ folders, or a folder of class folders.", type=Path, argument=True
        )
    )
    task: str = field(
        default="classification",
        metadata=cli(
            "{choices} (the count as a number: class folders named by counts; test/<count>/ "
            "is predicted after training).",
            choices=TASKS,
        ),
    )
    # regression only; None: DEFAULT_LOSS (filled in, so a run records the loss it used)
    loss: str | None = field(
        default=None,
        metadata=cli(f"Regression loss: {{choices}} \\[default: {DEFAULT_LOSS}].", choices=LOSSES),
    )
    arch: str = field(default="resnet34", metadata=cli("{choices}.", choices=ARCHS))
    pretrained: bool = field(
        default=True, metadata=cli("Start from ImageNet weights (torch hub cache).")
    )
    weights: str | None = field(
        default=None,
        metadata=cli(
            "ImageNet weights file (torchvision state dict: .pth or .safetensors) instead of "
            "the cache.",
            type=Path,
        ),
    )
    epochs: int = field(
        default=5, metadata=cli("Epochs (after the frozen epoch when fine-tuning).")
    )
    lr: str | float = field(
        default="auto",
        metadata=cli(
            "A number (no LR finder), or the LR finder's suggestion: valley | minimum | steep "
            "| slide, or auto: valley when fine-tuning; from scratch, slide on a countnet "
            f"counting set, else {FOLDER_SCRATCH_LR:g} (no LR finder).",
            type=str,
        ),
    )
    lr_policy: str = field(
        default="one-cycle", metadata=cli("{choices} (Caffe's policies).", choices=LR_POLICIES)
    )
    opt: str = field(
        default="adam",
        metadata=cli(
            "{choices}.",
            choices=OPTIMIZERS,
            notes={"adam": "fastai's Adam, fused", "sgd": "SGD with momentum, Caffe's"},
        ),
    )
    # None: the optimizer's default (Adam: fastai's 0.9, cycled 0.95-0.85 by one-cycle, and
    # wd 0.01; SGD: 0.9 and 5e-4, the seeds' LeNet solver). A --momentum is held constant.
    momentum: float | None = field(
        default=None,
        metadata=cli("Momentum, held constant \\[default: 0.9; one-cycle cycles 0.95-0.85]."),
    )
    wd: float | None = field(
        default=None,
        metadata=cli("Weight decay \\[default: adam 0.01 decoupled, sgd 5e-4 as L2]."),
    )
    lr_gamma: float | None = field(
        default=None, metadata=cli("inv/step gamma \\[default: 1e-4 inv, 0.1 step].")
    )
    lr_power: float = field(default=0.75, metadata=cli("inv power."))
    lr_step: int | None = field(
        default=None, metadata=cli("step: iterations per drop \\[default: a third of training].")
    )
    freeze_epochs: int = field(default=1, metadata=cli("Frozen-body epochs when fine-tuning."))
    size: int = field(default=224, metadata=cli("Training image size (pixels, squish-resized)."))
    bs: int | str = field(
        default="auto",
        metadata=cli(
            "Batch size, or 'auto': a power of two <= train images/8 in [8, 64].", type=str
        ),
    )
    valid_pct: float = field(
        default=0.2, metadata=cli("Validation share per class, for sets without valid/.")
    )
    transforms: str = field(
        default=AUTO,
        metadata=cli(
            "{choices}, or a select-transforms JSON. auto: dihedral on a countnet counting "
            "set, upright (fastai's aug_transforms without flips) on any other folder.",
            choices=(AUTO, *PRESETS),
        ),
    )
    seed: int = field(default=0, metadata=cli("Random seed (split, init, shuffling)."))
    device: str = field(default="auto", metadata=cli("{choices}.", choices=DEVICES))
    # Data-parallel processes, one per GPU (with device "cpu": CPU processes); see
    # countnet_classify.parallel for the batch rule.
    gpus: int = field(
        default=1,
        metadata=cli(
            "Train data-parallel in N processes, one per GPU (--device cpu: N CPU "
            "processes). --bs stays the whole batch, bs/N per process."
        ),
    )
    precision: str = field(
        default="auto",
        metadata=cli(
            "{choices}. auto: bf16 where the CPU/GPU has it natively, fp16 on older GPUs, "
            "else fp32.",
            choices=PRECISIONS,
        ),
    )
    loader: str = field(
        default="cache",
        metadata=cli(
            "{choices}.",
            choices=LOADERS,
            notes={
                "cache": "decode once into a uint8 cache, augment on the batch (fast)",
                "files": "decode image files every batch",
            },
        ),
    )
    name: str | None = field(default=None, metadata=cli("Run name \\[default: <data>_<arch>]."))
    runs_dir: str = field(default="runs", metadata=cli("Where run folders go.", type=Path))
    workers: int | None = field(
        default=None,
        metadata=cli("DataLoader workers for --loader files \\[default: 0 on CPU, 8 on GPU]."),
    )
    lr_find_iters: int = field(
        default=100,
        metadata=cli("LR finder steps, for --lr auto or a suggestion's name (--lr VALUE: none)."),
    )
    head: str = field(
        default="fastai",
        metadata=cli(
            "{choices}.",
            choices=HEADS,
            notes={
                "fastai": "concat (avg+max) pooling, BatchNorm, a 512-unit hidden layer",
                "linear": "average pooling + one linear layer (torchvision's head; counts better)",
            },
        ),
    )
    # Dropout in the classifier head (fastai's ps); None: 0.5 for fastai's head (its own
    # default), 0 for the linear head, which is then exactly one linear layer.
    head_dropout: float | None = field(
        default=None,
        metadata=cli(
            "Dropout in the classifier head (fastai's ps) "
            "\\[default: 0.5 with --head fastai, 0 with --head linear]."
        ),
    )
    precise_bn: int = field(  # training images that re-estimate BatchNorm statistics each epoch
        default=1024,
        metadata=cli(
            "Training images that re-estimate BatchNorm statistics before each "
            "validation (0: off, keep the running averages)."
        ),
    )
    resume: bool = field(
        default=False, metadata=cli("Continue an interrupted run from its last epoch.")
    )
    force: bool = field(default=False, metadata=cli("Replace an existing run of the same name."))
    quiet: bool = field(
        default=False,
        metadata=cli("One line per epoch, no progress bars.", flags=("--quiet", "-q")),
    )
    # free text kept in config.yaml and shown in the report; set by the workflow's config
    note: str | None = field(default=None, metadata=NOT_CLI)

    def __post_init__(self) -> None:
        for opt, value, choices in (
            ("--arch", self.arch, ARCHS),
            ("--lr-policy", self.lr_policy, LR_POLICIES),
            ("--opt", self.opt, OPTIMIZERS),
            ("--device", self.device, DEVICES),
            ("--precision", self.precision, PRECISIONS),
            ("--loader", self.loader, LOADERS),
            ("--head", self.head, HEADS),
            ("--task", self.task, TASKS),
            ("--loss", self.loss or LOSSES[0], LOSSES),
        ):
            if value not in choices:
                raise CountnetError(f"unknown {opt} {value!r}; choose one of {', '.join(choices)}")
        object.__setattr__(self, "lr", parse_lr(self.lr))
        object.__setattr__(self, "bs", parse_bs(self.bs))
        for opt, value, low in (
            ("--epochs", self.epochs, 1),
            ("--size", self.size, MIN_SIZE),
            ("--bs", 1 if self.bs == "auto" else self.bs, 1),
            ("--seed", self.seed, 0),
            ("--freeze-epochs", self.freeze_epochs, 0),
            ("--lr-find-iters", self.lr_find_iters, 0),
            ("--precise-bn", self.precise_bn, 0),
            ("--gpus", self.gpus, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise CountnetError(f"{opt} must be an integer >= {low}, got {value!r}")
        if self.size > MAX_SIZE:
            raise CountnetError(
                f"--size {self.size} is too large: at most {MAX_SIZE} px (one {self.size} px "
                f"image alone would take {3 * 4 * self.size**2 / 2**30:.1f} GiB as a tensor)"
            )
        if self.momentum is not None and not 0.0 <= _number("--momentum", self.momentum) < 1.0:
            raise CountnetError(f"--momentum must be in [0, 1), got {self.momentum!r}")
        if self.wd is not None and not 0.0 <= _number("--wd", self.wd) < float("inf"):
            raise CountnetError(f"--wd must be a number >= 0, got {self.wd!r}")
        if self.head_dropout is not None and not 0.0 <= float(self.head_dropout) < 1.0:
            raise CountnetError(f"--head-dropout must be in [0, 1), got {self.head_dropout!r}")
        if not 0.0 < float(self.valid_pct) < 1.0:
            raise CountnetError(f"--valid-pct must be between 0 and 1, got {self.valid_pct!r}")
        if self.workers is not None and self.workers < 0:
            raise CountnetError(f"--workers must be >= 0, got {self.workers}")
        if self.arch in SCRATCH_ONLY and self.weights:
            raise CountnetError(f"--arch {self.arch} has no pretrained weights: drop --weights")
        if self.weights and not self.pretrained:
            raise CountnetError("--weights and --no-pretrained contradict each other: pick one")
        if self.loss is not None and self.task != "regression":
            raise CountnetError("--loss is for --task regression (classification: cross-entropy)")
        if self.task == "regression" and self.loss is None:
            object.__setattr__(self, "loss", DEFAULT_LOSS)

    @property
    def dropout(self) -> float:
        """The head dropout actually used (see ``head_dropout``)."""
        return head_dropout_for(self.head, self.head_dropout)

    @property
    def head_layout(self) -> dict[str, Any]:
        """head and dropout as recorded in config.yaml, model.json and the resume key
        (None for LeNet, which has its own classifier)."""
        if self.arch == "lenet":
            return {"head": None, "head_dropout": None}
        return {"head": self.head, "head_dropout": self.dropout}

    @property
    def uses_pretrained(self) -> bool:
        return self.pretrained and self.arch not in SCRATCH_ONLY

    @property
    def lr_rule(self) -> str | None:
        """The LR finder suggestion ``lr`` asks for, or None for a fixed number."""
        if not isinstance(self.lr, str):
            return None
        if self.lr == "auto":
            return auto_lr(self)[0]
        return self.lr

    @property
    def run_name(self) -> str:
        return self.name or f"{Path(self.data).resolve().name}_{self.arch}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CountnetError(
                f"unknown run option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def resume_diff(self, saved_key: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """{option: (recorded, this)} where a run recorded with ``saved_key`` (its
        config.yaml's resume_key) differs from this one. An option added since compares as
        its default; where the folder is (runs_dir, name) is not an option of the run: a
        moved or differently spelled folder is the same run."""
        new = self.resume_key()
        old = {**RunSpec(data=self.data).resume_key(), **saved_key}
        keys = sorted((set(old) | set(new)) - {"runs_dir", "name"})
        return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}

    def resume_key(self) -> dict[str, Any]:
        """The options that must match for --resume to continue a run."""
        d = self.to_dict()
        for k in RESUME_FREE:
            d.pop(k, None)
        # The dropout actually used: `--head linear` and `--head linear --head-dropout 0`
        # are the same run.
        d["head_dropout"] = self.head_layout["head_dropout"]
        d["data"] = str(Path(self.data).resolve())
        if self.transforms == AUTO:  # the preset trained with: a run recorded as dihedral
            d["transforms"] = default_preset(self.data)[0]  # before auto is that run
        return d


def check_options(spec: RunSpec) -> tuple[str, str]:
    """The checks of a run's options that need neither torch nor its data: the transforms
    preset or file, a --size below the arch's MIN_INPUT, an LR rule without the finder.
    Returns the transforms as (preset, why).
    Cheap enough for the Snakefile's parse (prepare.check_spec adds the rest)."""
    transforms = resolve_transforms(spec.transforms, spec.data)
    low = MIN_INPUT.get(spec.arch, MIN_SIZE)
    if spec.size < low:
        raise CountnetError(f"--size {spec.size} is too small for {spec.arch}: at least {low} px")
    if spec.lr_find_iters == 0 and spec.lr_rule:
        raise CountnetError(f"--lr {spec.lr} needs the LR finder: set --lr-find-iters > 0")
    return transforms


def auto_lr(spec: RunSpec) -> tuple[str | None, float | None, str]:
    """What ``--lr auto`` means for ``spec``: (the LR finder's rule, None, why) or (None, a
    fixed rate, why)."""
    # lazy: the generator loads when a set is looked at, not with the options
    from countnet_gen.outdir import counting_spec

    if spec.uses_pretrained:
        return "valley", None, "fine-tuning"
    if spec.data is None or counting_spec(spec.data) is not None:
        return AUTO_SCRATCH_RULE, None, "from scratch"
    return (
        None,
        FOLDER_SCRATCH_LR,
        ("from scratch on a folder that is not a countnet counting set: fixed, no LR finder"),
    )


def _number(opt: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CountnetError(f"{opt} must be a number, got {value!r}")
    return float(value)


def head_dropout_for(head: str, value: float | None) -> float:
    """``value``, or the head's default: 0.5 for fastai's (its own ps), 0 for the linear head."""
    if value is not None:
        return float(value)
    return 0.0 if head == "linear" else 0.5


def parse_bs(value: str | int) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit():
        return int(text)
    raise CountnetError(f"--bs must be 'auto' or a positive integer, got {value!r}")


def auto_batch_size(n_train: int) -> int:
    """--bs auto: the largest power of two <= n_train / 8, within [8, 64].

    From scratch the number of optimizer steps is what counts: 150 training images at bs 64
    give 2 steps an epoch and do not learn in 8 epochs, at bs 16 (9 steps) they do
    (BENCHMARKS.md); above ~500 images this is fastai's usual 64."""
    target = max(1, n_train // 8)
    bs = 1 << (target.bit_length() - 1)
    return max(8, min(64, bs))


def parse_lr(value: str | float) -> str | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        lr = float(value)
    elif str(value).strip().lower() in LR_RULES:
        return str(value).strip().lower()
    else:
        try:
            lr = float(str(value))
        except ValueError:
            raise CountnetError(
                f"--lr must be a number like 1e-3 or one of {', '.join(LR_RULES)}, got {value!r}"
            ) from None
    if not lr > 0 or lr != lr or lr == float("inf"):
        raise CountnetError(f"--lr must be a positive number, got {value!r}")
    return lr
