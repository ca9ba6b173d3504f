"""`countnet select-transforms`: try each augmentation preset on the same short budget
(same seed, epochs and learning rate) and choose the best one that cannot change a
counting image's label."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from countnet_classify.config import RunSpec
from countnet_classify.transforms import PRESETS, label_safety
from countnet_gen.atomic import write_text_atomic
from countnet_gen.errors import CountnetError


def counting_metadata(data: Path) -> tuple[list[dict], int] | None:
    """(manifest rows, image size) of a countnet-generated set, else None."""
    from countnet_gen.writer import read_dataset_spec, read_manifest

    if not (data / "manifest.csv").is_file() or not (data / "dataset.json").is_file():
        return None
    return read_manifest(data), read_dataset_spec(data).size


def select_transforms(
    base: RunSpec,
    out: Path | str,
    *,
    candidates: tuple[str, ...] = tuple(PRESETS),
    say=print,
) -> dict[str, Any]:
    """Train ``base`` once per candidate preset (scratch runs, discarded) and write the
    table and the chosen preset to ``out`` (JSON). ``base.lr`` must be a number so every
    candidate gets the same learning rate."""
    unknown = [c for c in candidates if c not in PRESETS]
    if unknown:
        raise CountnetError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    if base.lr == "auto":
        raise CountnetError("select-transforms needs a fixed --lr so candidates compare fairly")
    from countnet_classify.train import train

    data = Path(base.data)
    meta = counting_metadata(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".select-", dir=out.parent))
    rows = []
    try:
        for preset in candidates:
            spec = replace(
                base,
                transforms=preset,
                runs_dir=str(scratch),
                name=preset,
                lr_find_iters=0,
                resume=False,
                force=True,
            )
            t0 = time.perf_counter()
            res = train(spec, say=lambda m: None)
            last = res.metrics[-1]
            row = {
                "preset": preset,
                "description": PRESETS[preset].description,
                "error_rate": float(last["error_rate"]),
                "valid_loss": float(last["valid_loss"]),
                "time": round(time.perf_counter() - t0, 2),
            }
            if meta:
                frac = label_safety(meta[0], meta[1], preset)
                row.update(label_safe=frac == 0.0, label_risk_fraction=round(frac, 4))
            rows.append(row)
            say(
                f"{preset:9s} error_rate {row['error_rate']:.4f}  valid_loss "
                f"{row['valid_loss']:.4f}  {row['time']:.1f}s"
                + (
                    ""
                    if row.get("label_safe", True)
                    else f"  label-unsafe ({row['label_risk_fraction']:.1%} of train images)"
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    allowed = [r for r in rows if r.get("label_safe", True)]
    if not allowed:
        raise CountnetError("every candidate preset can change a counting label; add 'none'")
    best = min(allowed, key=lambda r: (r["error_rate"], r["valid_loss"]))
    result = {
        "data": str(data.resolve()),
        "budget": {
            "arch": base.arch,
            "epochs": base.epochs,
            "size": base.size,
            "bs": base.bs,
            "lr": base.lr,
            "seed": base.seed,
            "pretrained": base.uses_pretrained,
        },
        "counting_metadata": meta is not None,
        "table": rows,
        "chosen": best["preset"],
        "rule": "lowest valid error_rate (then valid_loss) among label-safe presets",
    }
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return result
