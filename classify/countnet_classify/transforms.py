"""Augmentation presets (fastai batch transforms), selectable by name or by the JSON that
`countnet select-transforms` writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from countnet_gen.errors import CountnetError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[], list]


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
        ),
    )
}


def resolve_transforms(value: str) -> str:
    """A preset name, or a select-transforms JSON whose ``chosen`` names one."""
    if value in PRESETS:
        return value
    path = Path(value)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.is_file():
            raise CountnetError(f"--transforms file {path} does not exist")
        try:
            chosen = json.loads(path.read_text())["chosen"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CountnetError(
                f"--transforms file {path} is not a select-transforms result (no 'chosen' preset)"
            ) from None
        if chosen not in PRESETS:
            raise CountnetError(f"--transforms file {path} chooses unknown preset {chosen!r}")
        return chosen
    raise CountnetError(
        f"unknown --transforms {value!r}: use a preset ({', '.join(PRESETS)}) or a JSON file"
    )


def batch_transforms(name: str) -> list:
    return PRESETS[name].make()
