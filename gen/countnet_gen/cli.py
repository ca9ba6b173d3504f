"""`countnet gen`: parse options, build a DatasetSpec, call writer.generate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from countnet.malloc import retain_freed_memory
from countnet.options import spec_options, spec_values
from countnet_gen.spec import DatasetSpec, range_text

EXAMPLES = """
[bold]Examples[/bold]

  countnet gen --range 1-5                     [dim]# classes 1, 2, 3, 4, 5[/dim]

  countnet gen --range 45-50 --per-class 2000  [dim]# classes 45..50 (six)[/dim]

  countnet gen --range 45-50 --radius 3-8 --no-overlap --size 160 --seed 7

  countnet gen --range 3-3 --out datasets/threes --force

  countnet gen --range 45-50 --holdout 47,49 --no-overlap --radius 4 --size 128

  countnet gen --range 1-5 --size 64 --radius 4 --no-overlap --distractors 3-5 --match-area
"""


@spec_options(DatasetSpec, before="workers")
def gen(
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes \\[default: the CPUs this process may use]. Output does "
            "not depend on it."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder \\[default: datasets/count-A-B_..., named from the parameters]."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace a countnet dataset at --out that holds nothing but what countnet "
            "wrote (or an empty folder). Through a symlink, its target is written."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    **options: Any,
) -> None:
    """Render a synthetic counting dataset: images of N circles, one folder per count.

    Writes OUT/train/<count>/*.png and OUT/valid/<count>/*.png (readable by fastai's
    ImageDataLoaders.from_folder), manifest.csv (every circle's x, y, r per image) and
    dataset.json (parameters, seed, package versions).
    """
    from rich.console import Console

    # here, not at import: `countnet --help` and every other verb import this module, and
    # the writer loads numpy and Pillow, the progress bar rich's
    from countnet.progress import progress_bar
    from countnet_gen.writer import generate

    spec = DatasetSpec(**spec_values(DatasetSpec, options))
    retain_freed_memory()  # this process is ours: with --workers 1 it renders too
    t0 = time.perf_counter()
    with progress_bar("generating", enabled=not quiet) as update:
        path = generate(spec, out, workers=workers, force=force, progress=update)
    dt = time.perf_counter() - t0
    Console(stderr=True).print(
        f"wrote {spec.n_images} images ({summary(spec)}) to {path} in {dt:.1f}s "
        f"({spec.n_images / dt:.0f} images/s)",
        highlight=False,
    )


def summary(spec: DatasetSpec) -> str:
    """What `countnet gen` says it wrote: classes and split sizes, held-out counts,
    distractors."""
    parts = [f"{len(spec.trained_classes)} classes, {spec.n_train}/{spec.n_valid} train/valid each"]
    if spec.holdout:
        parts.append(f"counts {','.join(map(str, spec.holdout))} in test/ only")
    if spec.distractors[1]:
        areas = ", areas matched" if spec.match_area else ""
        parts.append(f"{range_text(*spec.distractors)} distractors an image{areas}")
    return "; ".join(parts)
