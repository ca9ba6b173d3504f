"""`countnet gen`: parse options, build a DatasetSpec, call writer.generate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from countnet.malloc import retain_freed_memory
from countnet.progress import progress_bar
from countnet_gen.spec import DEFAULT_BG, DEFAULT_FG, DatasetSpec, parse_int_range, range_text
from countnet_gen.writer import generate

EXAMPLES = """
[bold]Examples[/bold]

  countnet gen --range 1-5                     [dim]# classes 1, 2, 3, 4, 5[/dim]

  countnet gen --range 45-50 --per-class 2000  [dim]# classes 45..50 (six)[/dim]

  countnet gen --range 45-50 --radius 3-8 --no-overlap --size 160 --seed 7

  countnet gen --range 3-3 --out datasets/threes --force

  countnet gen --range 45-50 --holdout 47,49 --no-overlap --radius 4 --size 128

  countnet gen --range 1-5 --size 64 --radius 4 --no-overlap --distractors 3-5 --match-area
"""


def gen(
    range_: Annotated[
        str,
        typer.Option(
            "--range",
            help="Circle counts A-B, inclusive on both ends: 45-50 makes six classes, 45 to 50.",
        ),
    ],
    per_class: Annotated[int, typer.Option(help="Images per class (train + valid).")] = 1000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    radius: Annotated[
        str, typer.Option(help="Circle radius in pixels: R (fixed) or R1-R2 (uniform in range).")
    ] = "6",
    no_overlap: Annotated[
        bool,
        typer.Option(
            "--no-overlap/--overlap",
            help="Keep circles >= 2 px apart edge to edge: each a distinct object in the pixels.",
        ),
    ] = False,
    valid_pct: Annotated[
        float, typer.Option(help="Fraction of each class kept for validation.")
    ] = 0.2,
    seed: Annotated[
        int, typer.Option(help="Random seed: same parameters + seed: same pixels.")
    ] = 0,
    fg: Annotated[str, typer.Option(help="Circle colour (hex, CSS name, rgb()).")] = DEFAULT_FG,
    bg: Annotated[str, typer.Option(help="Background colour (hex, CSS name, rgb()).")] = DEFAULT_BG,
    holdout: Annotated[
        list[str],
        typer.Option(
            help="Counts written only to test/ (e.g. 47,49; repeatable): never trained or "
            "validated on."
        ),
    ] = [],  # noqa: B006  (typer reads the default; it is never mutated)
    distractors: Annotated[
        str,
        typer.Option(
            help="Other shapes in every image, not counted: K or K-L an image (0: none). "
            "The label stays the number of circles."
        ),
    ] = "0",
    distractor_shape: Annotated[
        list[str] | None,
        typer.Option(
            help="square, triangle or ring (comma-separated or repeated: a mix) "
            "\\[default: square]."
        ),
    ] = None,
    distractor_radius: Annotated[
        str | None,
        typer.Option(
            help="Radius of the circle each distractor is inscribed in: R or R1-R2 "
            "\\[default: --radius; with --match-area half its smallest to twice its largest]."
        ),
    ] = None,
    match_area: Annotated[
        bool,
        typer.Option(
            help="Size the distractors so an image's total foreground area has the same "
            "distribution for every count: counting pixels cannot work."
        ),
    ] = False,
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
        bool, typer.Option(help="Replace an existing countnet dataset (or empty folder) at --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Render a synthetic counting dataset: images of N circles, one folder per count.

    Writes OUT/train/<count>/*.png and OUT/valid/<count>/*.png (readable by fastai's
    ImageDataLoaders.from_folder), manifest.csv (every circle's x, y, r per image) and
    dataset.json (parameters, seed, package versions).
    """
    spec = DatasetSpec(
        counts=parse_int_range(range_, "--range", allow_single=False),
        per_class=per_class,
        size=size,
        radius=radius,
        no_overlap=no_overlap,
        valid_pct=valid_pct,
        seed=seed,
        fg=fg,
        bg=bg,
        holdout=",".join(holdout),
        distractors=distractors,
        distractor_shape=",".join(distractor_shape) if distractor_shape else None,
        distractor_radius=distractor_radius,
        match_area=match_area,
    )
    retain_freed_memory()  # this process is ours: with --workers 1 it renders too
    t0 = time.perf_counter()
    with progress_bar("generating", enabled=not quiet) as update:
        path = generate(spec, out, workers=workers, force=force, progress=update)
    dt = time.perf_counter() - t0
    Console(stderr=True).print(
        f"wrote {spec.n_images} images ({len(spec.trained_classes)} classes, "
        f"{spec.n_train}/{spec.n_valid} train/valid each"
        + (f"; counts {','.join(map(str, spec.holdout))} in test/ only" if spec.holdout else "")
        + (
            f"; {range_text(*spec.distractors)} distractors an image"
            + (", areas matched" if spec.match_area else "")
            if spec.distractors[1]
            else ""
        )
        + f") to {path} in {dt:.1f}s "
        f"({spec.n_images / dt:.0f} images/s)",
        highlight=False,
    )
