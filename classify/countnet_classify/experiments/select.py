"""`countnet select-transforms`: try each augmentation preset on the same budget (same
seed, epochs and learning rate) and choose the best one that cannot change a counting
image's label — unless the candidates are within the noise of the validation set, in which
case the default preset is kept and the table says so."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from countnet.atomic import write_text_atomic
from countnet.errors import CountnetError
from countnet_classify.parallel.group import refuse_launcher
from countnet_classify.spec import RunSpec
from countnet_classify.train import train
from countnet_classify.transforms import (
    AUTO,
    PRESETS,
    counting_metadata,
    default_preset,
    label_safety,
)

DEFAULT_PRESET = "dihedral"  # countnet train's default
NOISE_SE = 2.0  # a win must beat the default by this many standard errors of the difference


def error_se(error_rate: float, n_valid: int) -> float:
    """Binomial standard error of an error rate measured on ``n_valid`` images."""
    p = min(max(error_rate, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / max(n_valid, 1))


def choose(rows: list[dict], default: str, n_valid: int) -> tuple[str, str]:
    """(chosen preset, why). The lowest error among label-safe, trained presets wins only if
    it beats ``default`` by more than NOISE_SE standard errors of the difference; otherwise
    ``default`` is kept: picking by noise would be choosing at random."""
    allowed = [r for r in rows if r.get("label_safe", True) and r.get("error_rate") is not None]
    if not allowed:
        raise CountnetError("every candidate preset can change a counting label; add 'none'")
    best = min(allowed, key=lambda r: (r["error_rate"], r["valid_loss"]))
    base = next((r for r in allowed if r["preset"] == default), None)
    if base is None:
        return best["preset"], "lowest valid error_rate among label-safe presets"
    if best is base:
        return default, f"the default {default!r} has the lowest valid error_rate"
    se = math.hypot(error_se(best["error_rate"], n_valid), error_se(base["error_rate"], n_valid))
    gap = base["error_rate"] - best["error_rate"]
    if gap > NOISE_SE * se:
        return best["preset"], (
            f"{best['preset']!r} beats the default {default!r} by {gap:.4f} "
            f"(> {NOISE_SE:g} standard errors, {NOISE_SE * se:.4f})"
        )
    return default, (
        f"within noise: the best, {best['preset']!r}, beats the default {default!r} by only "
        f"{gap:.4f} (<= {NOISE_SE:g} standard errors of the difference, {NOISE_SE * se:.4f} on "
        f"{n_valid} validation images): kept the default"
    )


def select_transforms(
    base: RunSpec,
    out: Path | str,
    *,
    candidates: tuple[str, ...] = tuple(PRESETS),
    default: str = DEFAULT_PRESET,
    say=print,
) -> dict[str, Any]:
    """Train ``base`` once per label-safe candidate preset (scratch runs, discarded) and
    write the table and the chosen preset to ``out`` (JSON). Presets that can change a
    counting label are listed but not trained: they could not win. ``base.lr`` must be a
    number so every candidate gets the same learning rate."""
    refuse_launcher("countnet select-transforms")
    if default == AUTO:  # train's default: the preset --transforms auto picks for this set
        default = default_preset(base.data)[0]
    unknown = [c for c in (*candidates, default) if c not in PRESETS]
    if unknown:
        raise CountnetError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    if base.lr == "auto":
        raise CountnetError("select-transforms needs a fixed --lr so candidates compare fairly")
    data = Path(base.data)
    meta = counting_metadata(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".select-", dir=out.parent))
    rows = []
    n_valid = 0
    try:
        for preset in candidates:
            row, trained_on = try_preset(base, preset, meta, scratch, say)
            rows.append(row)
            n_valid = n_valid if trained_on is None else trained_on
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    chosen, why = choose(rows, default, n_valid)
    say(f"chosen: {chosen} ({why})")
    result = {
        "data": str(data.resolve()),
        "budget": budget(base),
        "counting_metadata": meta is not None,
        "n_valid": n_valid,
        "table": rows,
        "default": default,
        "chosen": chosen,
        "reason": why,
        "rule": (
            f"lowest valid error_rate among label-safe presets, if it beats the default by "
            f"more than {NOISE_SE:g} standard errors; else the default"
        ),
    }
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return result


def try_preset(
    base: RunSpec,
    preset: str,
    meta: tuple[list[dict], int] | None,
    scratch: Path,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], int | None]:
    """(row of the table, validation images): ``preset``'s label safety on a counting set
    and, if it is safe, its validation error after a scratch run in ``scratch`` (None: not
    trained)."""
    row: dict[str, Any] = {"preset": preset, "description": PRESETS[preset].description}
    if meta:
        frac = label_safety(meta[0], meta[1], preset)
        row.update(label_safe=frac == 0.0, label_risk_fraction=round(frac, 4))
        if frac > 0:
            row.update(error_rate=None, valid_loss=None, time=0.0)
            say(f"{preset:9s} label-unsafe ({frac:.1%} of train images): not trained")
            return row, None
    spec = replace(base, transforms=preset, runs_dir=str(scratch), name=preset,
                   lr_find_iters=0, resume=False, force=True)  # fmt: skip
    t0 = time.perf_counter()
    res = train(spec, say=lambda m: None, figures=False)
    last = res.metrics[-1]
    n_valid = int(res.record["data"]["n_valid"])
    row.update(
        error_rate=float(last["error_rate"]),
        error_se=round(error_se(float(last["error_rate"]), n_valid), 4),
        valid_loss=float(last["valid_loss"]),
        time=round(time.perf_counter() - t0, 2),
    )
    say(
        f"{preset:9s} error_rate {row['error_rate']:.4f} (+-{row['error_se']:.4f})  "
        f"valid_loss {row['valid_loss']:.4f}  {row['time']:.1f}s"
    )
    return row, n_valid


def budget(base: RunSpec) -> dict[str, Any]:
    """What every candidate shares, as the result records it."""
    return {
        "task": base.task,
        "arch": base.arch,
        "epochs": base.epochs,
        "size": base.size,
        "bs": base.bs,
        "lr": base.lr,
        "seed": base.seed,
        "pretrained": base.uses_pretrained,
        "head": base.head,
        "head_dropout": base.dropout,
        "precise_bn": base.precise_bn,
    }
