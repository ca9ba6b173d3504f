"""Augmentation presets (fastai batch transforms), selectable by name or by the JSON that
`countnet select-transforms` writes, and their label safety on a counting set: which
images a preset can change the count of, and what train warns about before it starts."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from countnet.errors import CountnetError


@dataclass(frozen=True)
class Preset:
    """``cut`` bounds, as a fraction of the image side, how deep into the frame the preset's
    geometry can push content out (or pull reflected content in): 0 for the square's exact
    symmetries (flips, 90-degree turns)."""

    name: str
    description: str
    make: Callable[[], list]
    cut: float = 0.0


def affine_cut(max_zoom: float = 1.0, max_rotate: float = 0.0, max_warp: float = 0.0) -> float:
    """Conservative depth (fraction of the side) of the border band that fastai's zoom,
    rotation and warp can move out of the frame, or fill by reflection padding.

    zoom s: the visible window has side 1/s and may sit anywhere, so up to 1 - 1/s of one
    side is lost; rotation t about the centre: a corner sweeps (1 - cos t + sin t) / 2 of
    the side into the frame; warp m: fastai moves corners by up to m/2 of the side. The
    three compose, so their bands add up."""
    t = math.radians(max_rotate)
    return (1 - 1 / max_zoom) + (1 - math.cos(t) + math.sin(t)) / 2 + max_warp / 2


def _none() -> list:
    return []


def _flips() -> list:
    from fastai.vision.augment import Flip

    return [Flip(p=0.5)]


def _dihedral() -> list:
    from fastai.vision.augment import Dihedral

    return [Dihedral(p=0.5)]


def _fastai_default() -> list:
    from fastai.vision.augment import aug_transforms

    return aug_transforms()


def _upright() -> list:
    from fastai.vision.augment import aug_transforms

    return aug_transforms(do_flip=False)  # a mirrored "7" or "J" is no longer one


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("none", "no augmentation", _none),
        Preset("flips", "horizontal flips", _flips),
        Preset("dihedral", "horizontal + vertical flips and 90-degree rotations", _dihedral),
        Preset(
            "aug",
            "fastai's default aug_transforms: flip, rotate, zoom, warp, lighting",
            _fastai_default,
            # aug_transforms' defaults: max_zoom=1.1, max_rotate=10, max_warp=0.2
            cut=affine_cut(max_zoom=1.1, max_rotate=10.0, max_warp=0.2),
        ),
        Preset(
            "upright",
            "fastai's aug_transforms without the flip: rotate, zoom, warp, lighting",
            _upright,
            cut=affine_cut(max_zoom=1.1, max_rotate=10.0, max_warp=0.2),
        ),
    )
}


# --transforms auto: what a folder gets when no preset is named.
AUTO = "auto"
COUNTING_DEFAULT = "dihedral"
FOLDER_DEFAULT = "upright"


def default_preset(data: Path | str) -> tuple[str, str]:
    """``--transforms auto`` on ``data``: (preset, why). A countnet counting set gets the
    square's exact symmetries, which never change a count; any other folder fastai's
    aug_transforms without its horizontal flip: 90-degree turns would turn a "6" into a
    "9", a mirror makes a "7" no digit; on handwritten digits the flip-free set beat both
    aug and no augmentation (BENCHMARKS.md, "First contact")."""
    # lazy: the generator loads when a set is looked at, not with the presets
    from countnet_gen.outdir import counting_spec

    if counting_spec(data) is not None:
        return COUNTING_DEFAULT, (
            f"auto: a countnet counting set (dataset.json), {COUNTING_DEFAULT} never "
            "changes a count"
        )
    return FOLDER_DEFAULT, (
        f"auto: not a countnet counting set (no countnet dataset.json), {FOLDER_DEFAULT}: "
        "fastai's aug_transforms without flips, which mirror writing and shapes"
    )


def resolve_transforms(value: str, data: Path | str) -> tuple[str, str]:
    """(preset, why) for ``--transforms value``: ``auto`` decided on ``data`` (see
    default_preset), a preset name, or a select-transforms JSON whose ``chosen`` names one."""
    if value == AUTO:
        return default_preset(data)
    if value in PRESETS:
        return value, f"--transforms {value}"
    return _chosen(value), f"chosen by select-transforms in {value}"


def transforms_file(value: str) -> bool:
    """Whether ``--transforms value`` names a select-transforms JSON (not auto, not a preset)."""
    return value != AUTO and value not in PRESETS


def _chosen(value: str) -> str:
    """The preset a select-transforms JSON ``value`` chose."""
    path = Path(value)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.is_file():
            raise CountnetError(f"--transforms file {path} does not exist")
        try:  # not UTF-8, not JSON, nested too deep, not a mapping: all one line
            chosen = json.loads(path.read_text(encoding="utf-8"))["chosen"]
        except (ValueError, RecursionError, KeyError, TypeError):
            raise CountnetError(
                f"--transforms file {path} is not a select-transforms result (no 'chosen' preset)"
            ) from None
        if not isinstance(chosen, str) or chosen not in PRESETS:
            raise CountnetError(f"--transforms file {path} chooses unknown preset {chosen!r}")
        return chosen
    raise CountnetError(
        f"unknown --transforms {value!r}: use auto, a preset ({', '.join(PRESETS)}) or a JSON file"
    )


def batch_transforms(name: str) -> list:
    return PRESETS[name].make()


def at_risk(circles, size: int, cut: float) -> bool:
    """Can a transform with border band ``cut`` change this image's count? True when any
    circle reaches into the band (it may be cut off, or mirrored in by padding)."""
    if cut <= 0 or len(circles) == 0:
        return False
    band = cut * size
    x, y, r = circles[:, 0], circles[:, 1], circles[:, 2]
    margin = min((x - r).min(), (y - r).min(), (size - x - r).min(), (size - y - r).min())
    return bool(margin < band)


def label_safety(manifest_rows: list[dict], size: int, preset: str) -> float:
    """Fraction of training images whose count ``preset`` can change."""
    train = [r for r in manifest_rows if r["split"] == "train"]
    if not train:
        return 0.0
    cut = PRESETS[preset].cut
    return sum(at_risk(r["circles"], size, cut) for r in train) / len(train)


def counting_metadata(data: Path) -> tuple[list[dict], int] | None:
    """(manifest rows, image size) of a countnet-generated set, else None."""
    # lazy: the generator's writer loads when a set's metadata is read, not with the presets
    from countnet_gen.outdir import counting_spec
    from countnet_gen.writer import read_dataset_spec, read_manifest

    if not (data / "manifest.csv").is_file() or not (data / "dataset.json").is_file():
        return None
    spec = counting_spec(data)
    if spec is None:  # a counting set's damaged dataset.json: one line saying what is wrong
        spec = read_dataset_spec(data)
    return read_manifest(data), spec.size


def transform_warnings(transforms: str, preset: str, data: Path | str) -> list[str]:
    """What a user should hear before training on ``data`` with ``--transforms transforms``
    (resolved to ``preset``): a selection made on another dataset, and, on a counting set,
    a preset that can change images' counts."""
    data = Path(data).resolve()
    warnings = []
    path = Path(transforms)
    if transforms_file(transforms) and path.is_file():
        made_on = json.loads(path.read_text()).get("data")
        if isinstance(made_on, str) and made_on and Path(made_on).resolve() != data:
            warnings.append(
                f"warning: --transforms {path} was chosen on {made_on}, not on {data}: "
                f"its preset {preset!r} is used as is"
            )
    meta = counting_metadata(data) if PRESETS[preset].cut > 0 else None
    if meta:
        frac = label_safety(meta[0], meta[1], preset)
        if frac > 0:
            warnings.append(
                f"warning: --transforms {preset} can change the count of {frac:.1%} of the "
                "training images (circles near the border are cut off or mirrored in), so "
                "their labels may be wrong; 'dihedral' never changes a count"
            )
    return warnings
