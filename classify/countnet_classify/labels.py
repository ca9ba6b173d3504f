"""What class folder names mean: their natural order ("2" before "10") and, for
``--task regression``, the count each names and the standardisation of those counts."""

from __future__ import annotations

import re

import numpy as np

from countnet.errors import CountnetError

TEST = "test"  # the held-out split's folder beside train/ and valid/ (`countnet gen --holdout`)


def natural_key(label: str) -> tuple:
    """Sort "2" before "10": class folders named by counts sort numerically."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label))


def count_values(classes: list[str], where: str = "class folder") -> np.ndarray:
    """The count each class folder names, or a one-line error for one that names none (or
    names the same count as another: 7 and 07)."""
    bad = [c for c in classes if not (c.isascii() and c.isdigit())]
    if bad:
        hint = " (a test/ split is read only beside train/ and valid/)" if bad[0] == TEST else ""
        raise CountnetError(
            f"--task regression needs {where}s named by counts (0, 1, 2, ...); "
            f"{bad[0]!r} is not a count{hint}"
        )
    values = [int(c) for c in classes]
    twice = sorted({c for c, v in zip(classes, values, strict=True) if values.count(v) > 1})
    if twice:
        raise CountnetError(f"{where}s {', '.join(twice)} name the same count: keep one")
    return np.array(values, np.float32)


def standardisation(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the training counts (std 1 if they are all one)."""
    mean, std = float(values.mean()), float(values.std())
    return mean, std if std > 0 else 1.0
