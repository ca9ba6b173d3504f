"""Everything a run needs before its model exists: options checked and resolved, the run
folder claimed, the data vetted (and decoded into the cache), the DataLoaders built."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from countnet.errors import CountnetError
from countnet_classify import run_folder
from countnet_classify.cache import decoded_splits
from countnet_classify.callbacks.checkpoint import load_checkpoint
from countnet_classify.data import make_cached_dataloaders, make_dataloaders
from countnet_classify.devices import resolve_device, resolve_precision, use_channels_last
from countnet_classify.labels import count_values, standardisation
from countnet_classify.model import build_model, check_input_size
from countnet_classify.parallel.group import current, split_batch
from countnet_classify.record import describe_data
from countnet_classify.screen import (
    IMBALANCE_RATIO,
    Screened,
    check_data_root,
    screen,
    screen_test,
)
from countnet_classify.spec import RunSpec, auto_batch_size, check_options
from countnet_classify.transforms import (
    AUTO,
    transform_warnings,
    transforms_file,
)
from countnet_classify.weights import imagenet_state_dict


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
    transforms_reason: str  # why this preset: config.yaml's resolved.transforms_reason
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
    # on --resume: the newest readable checkpoint and its file
    checkpoint: tuple[dict, Path] | None = None

    @property
    def regression(self) -> bool:
        return self.target is not None


def check_spec(spec: RunSpec) -> tuple[tuple[str, str], torch.device, str]:
    """Every check of a run's options that needs neither its data nor its folder: the
    transforms preset or file, device, precision, an LR rule without the finder, a --size
    the network cannot take. One line before anything is written; a sweep runs it for
    every run before the first starts. Returns what the first three resolve to (the
    transforms as (preset, why))."""
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    transforms = check_options(spec)
    # feature maps that shrink to nothing: a traceback in the LR finder otherwise. Only the
    # shapes and memory matter: built on the meta device and given memory, not initialised
    # weights (a ResNet's random init was seconds of every run's start-up: BENCHMARKS.md)
    with torch.device("meta"):
        model = build_model(spec.arch, 2, spec.head, spec.dropout)
    check_input_size(model.to_empty(device="cpu"), spec.size)
    return transforms, device, precision


def prepare_run(spec: RunSpec, say) -> PreparedRun:
    """Resolve the options, check the run folder and the data, build the DataLoaders."""
    check_data_root(spec.data)  # a mistyped DATA is the first thing reported
    (transforms, transforms_reason), device, precision = check_spec(spec)
    channels_last = use_channels_last(precision, device)
    final, partial, saved = run_folder.prepare_folder(spec, say)
    saved, checkpoint = _checkpoint(spec, partial, saved, say)  # before minutes of screening
    state_dict, weights_source = None, None
    if spec.uses_pretrained:  # before screening: a missing weights file fails fast
        state_dict, weights_source = imagenet_state_dict(spec.arch, spec.weights)
    elif spec.pretrained:  # --pretrained is the default: say it cannot apply here
        say(f"weights: none, {spec.arch} has no ImageNet weights: trained from scratch")
    sc, data_info, target, test_items, test_skipped = _screen(spec, saved)
    if spec.transforms == AUTO:
        say(f"transforms: {transforms} ({transforms_reason})")
    for warning in transform_warnings(spec.transforms, transforms, spec.data):
        say(warning)
    _announce(sc, data_info, len(test_skipped), say)
    quiet = spec.quiet or not sys.stdout.isatty()
    # Decoded before the run folder exists: an interrupted build leaves no run to resume.
    decoded = (
        decoded_splits(sc, spec.size, say=say, progress=not quiet)
        if spec.loader == "cache"
        else None
    )
    partial.mkdir(parents=True, exist_ok=True)
    with run_folder.dropped_on_error(partial, keep=saved is not None):
        if transforms_file(spec.transforms):  # chosen by select-transforms: keep its table
            shutil.copyfile(spec.transforms, partial / "transforms.json")
        run_folder.write_skipped(partial, sc.root, [*sc.skipped, *test_skipped])
        workers = workers_for(spec, device)
        bs = _batch_size(spec, data_info["n_train"], saved)
        dls, file_dls = loaders(
            spec, sc, decoded, target, bs, transforms, device, channels_last, workers
        )
    return PreparedRun(
        final=final, partial=partial, saved=saved, screened=sc, data_info=data_info, dls=dls,
        file_dls=file_dls, transforms=transforms, transforms_reason=transforms_reason,
        device=device, precision=precision,
        channels_last=channels_last, bs=bs, workers=workers, quiet=quiet,
        state_dict=state_dict, weights_source=weights_source, target=target,
        test_items=test_items, checkpoint=checkpoint,
    )  # fmt: skip


def _checkpoint(spec: RunSpec, partial: Path, saved: dict | None, say) -> tuple:
    """(config.yaml, the checkpoint to continue from) of a resumed run; a run none of whose
    checkpoints can be read is one line, or with --force started over."""
    if saved is None:
        return None, None
    try:
        return saved, load_checkpoint(partial, say)
    except CountnetError as e:
        if not spec.force:
            raise CountnetError(f"{e}: pass --force to start the run over") from None
        say(f"{e}: starting the run over (--force)")
        shutil.rmtree(partial)
        return None, None


def _screen(spec: RunSpec, saved: dict | None) -> tuple:
    """The vetted data, its record, and for --task regression the training counts' mean and
    std and the test split; a resumed run's files must not have changed."""
    sc = screen(spec.data, valid_pct=spec.valid_pct, seed=spec.seed)
    if saved and saved["data"]["fingerprint"] != sc.fingerprint:
        raise CountnetError(
            f"--resume: the files under {spec.data} changed since run {spec.run_name!r} started"
        )
    target, test_items, test_skipped = None, [], []
    data_info = describe_data(sc)
    if spec.task == "regression":  # before anything is written: class names must be counts
        count_values(sc.classes)  # every class folder names a count, once each
        target = standardisation(
            np.array([int(lbl) for _, lbl, v in sc.items if not v], np.float32)
        )
        test_items, test_skipped, test_info = screen_test(sc.root)
        data_info.update(test_info)
        if saved and saved["data"].get("test_fingerprint") != data_info.get("test_fingerprint"):
            raise CountnetError(
                f"--resume: the files under {spec.data}/test changed since run "
                f"{spec.run_name!r} started"
            )
    return sc, data_info, target, test_items, test_skipped


def _announce(sc: Screened, data_info: dict, n_test_skipped: int, say) -> None:
    """What the data holds, in a few lines (and a warning for imbalanced classes)."""
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
            + f"; skipped {n_test_skipped} unreadable file(s)"
        )
    if data_info["imbalanced"]:
        say(
            f"warning: classes are imbalanced (largest/smallest = {sc.imbalance:.1f} > "
            f"{IMBALANCE_RATIO:g}); error_rate may flatter the majority class"
        )


def _batch_size(spec: RunSpec, n_train: int, saved: dict | None) -> int:
    """--bs (auto: from the training images), as this process's share in a data-parallel
    run; a resumed run keeps its batches."""
    bs = auto_batch_size(n_train) if spec.bs == "auto" else spec.bs
    group = current()
    if group is not None:  # the run's whole batch, bs/N per process
        bs = split_batch(bs, n_train, group.size)
    bs = min(bs, n_train)
    if saved and saved["resolved"].get("batch_size", bs) != bs:  # --gpus N with --bs auto
        raise CountnetError(
            f"--resume: run {spec.run_name!r} trains batches of "
            f"{saved['resolved']['batch_size']}, which do not split evenly over "
            f"{group.size if group else 1} process(es): resume on a number that divides it"
        )
    return bs


def workers_for(spec: RunSpec, device: torch.device) -> int:
    """DataLoader worker processes: --workers, else none on the CPU (they would compete
    with training for the cores) and 8 feeding a GPU."""
    return spec.workers if spec.workers is not None else (0 if device.type == "cpu" else 8)


def loaders(spec: RunSpec, sc: Screened, decoded, target, bs, transforms, device,
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
