"""A run's model.json read and checked, and where a run keeps it and its weights: what
`countnet predict` and `export` check before they import torch (so a damaged or missing
file is one line at once), and what predict, export and evaluate read."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from countnet.errors import CountnetError
from countnet.names import printable
from countnet_classify.run_folder import MODEL_JSON, WEIGHTS
from countnet_classify.spec import ARCHS, HEADS, MAX_SIZE, MIN_INPUT, MIN_SIZE, TASKS

MAX_MODEL_JSON = 64 << 20  # bytes: a model.json of 100,000 classes is a few MB


def is_regression(meta: dict) -> bool:
    """Whether model.json (``meta``) is a ``--task regression`` run's: one output, a count."""
    return meta.get("task") == "regression"


def locate(run_or_weights: Path | str) -> tuple[Path, Path]:
    """(model.json, weights file) from a run folder, model.json or a weights file."""
    p = Path(run_or_weights)
    if p.is_dir():
        meta, weights = p / MODEL_JSON, p / WEIGHTS
    elif p.name == MODEL_JSON:
        meta, weights = p, p.with_name(WEIGHTS)
    else:
        meta, weights = p.with_name(MODEL_JSON), p
    if not p.exists():
        raise CountnetError(
            f"{printable(str(p))} does not exist: give a run folder (runs/<name>) or its weights"
        )
    for f in (meta, weights):
        if f.exists() and not f.is_file():  # a folder, FIFO or device by that name
            raise CountnetError(f"{printable(str(f))} is not a regular file")
        if not f.is_file():
            raise CountnetError(f"{printable(str(f))} is missing: is {printable(str(p))} a "
                                "finished countnet run?")  # fmt: skip
    return meta, weights


def check_run(run_or_weights: Path | str) -> None:
    """A run (folder, model.json or weights; an ONNX file is left to onnxruntime) whose
    model.json is present and valid, else one line: checked before torch is imported."""
    if Path(run_or_weights).suffix != ".onnx":
        read_model_json(locate(run_or_weights)[0])


def read_model_json(path: Path) -> dict[str, Any]:
    """model.json, every field checked before anything is built from it: a damaged file
    (a size of 0 or 100000, an unknown arch, a missing key) is one line naming the field."""
    where = printable(str(path))
    if path.stat().st_size > MAX_MODEL_JSON:
        too_big = f"over {MAX_MODEL_JSON >> 20} MB"
        raise CountnetError(f"{where} is not a countnet model.json ({too_big})")
    try:  # ValueError: also an integer of more digits than Python converts
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        raise CountnetError(f"{where} is not a countnet model.json (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise CountnetError(f"{where} is not a countnet model.json (not a JSON object)")
    return check_model_meta(meta, where)


def check_model_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """``meta`` (model.json's fields) if every one is valid, else one line naming the first
    that is not; the ONNX metadata an export carries is checked the same way."""
    for key, ok, want in _FIELDS:
        if key not in meta:
            if key in _REQUIRED:
                raise CountnetError(f"{where} is damaged: {key!r} is missing ({want})")
            continue
        if not ok(meta[key]):
            got = json.dumps(meta[key])
            got = got if len(got) <= 40 else got[:37] + "..."
            raise CountnetError(
                f"{where} is damaged: {key!r} must be {want}, got {got} (retrain the run, or "
                "restore the file)"
            )
    low = MIN_INPUT.get(meta["arch"], MIN_SIZE)
    if meta["size"] < low:
        raise CountnetError(f"{where} is damaged: 'size' must be at least {low} for "
                            f"{meta['arch']}, got {meta['size']}")  # fmt: skip
    return {**meta, "classes": list(meta["classes"])}


def _int_in(low: int, high: int):
    return lambda v: type(v) is int and low <= v <= high


def _number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _classes(v: Any) -> bool:
    return (
        isinstance(v, list)
        and 0 < len(v) <= 100_000
        and all(isinstance(c, str) and c for c in v)
        and len(set(v)) == len(v)
    )


def _stats(v: Any) -> bool:
    """normalize: null, or {"mean": [3 numbers], "std": [3 positive numbers]}."""
    if v is None:
        return True
    if not isinstance(v, dict) or set(v) != {"mean", "std"}:
        return False
    mean, std = v["mean"], v["std"]
    three = all(isinstance(x, list) and len(x) == 3 and all(map(_number, x)) for x in (mean, std))
    return three and all(s > 0 for s in std)


_REQUIRED = ("arch", "classes", "size")
_FIELDS = (
    ("arch", lambda v: v in ARCHS, f"one of {', '.join(ARCHS)}"),
    ("classes", _classes, "a list of distinct, non-empty class names"),
    ("size", _int_in(MIN_SIZE, MAX_SIZE), f"an integer from {MIN_SIZE} to {MAX_SIZE}"),
    ("head", lambda v: v is None or v in HEADS, f"null or one of {', '.join(HEADS)}"),
    ("head_dropout", lambda v: v is None or (_number(v) and 0 <= v < 1), "null or in [0, 1)"),
    ("task", lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
    ("resize", lambda v: v == "squish", '"squish"'),
    ("normalize", _stats, 'null or {"mean": [3 numbers], "std": [3 numbers > 0]}'),
    ("n_in", lambda v: v == 3, "3"),
)
