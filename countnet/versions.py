"""Package versions recorded in every dataset and run, for reproducibility."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "countnet",
    "numpy",
    "pillow",
    "scikit-image",
    "torch",
    "torchvision",
    "fastai",
    "matplotlib",
    "snakemake",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
