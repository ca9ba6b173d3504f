"""The run folder: config.yaml (with the run's summary), skipped.txt and the weights
(safetensors + model.json). A run is built in runs/.<name>.partial/ and renamed to
runs/<name>/ when it completes, so runs/<name>/ is always whole; the partial folder is what
--resume continues."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from countnet.atomic import atomic_path, move_into_place, write_text_atomic

if TYPE_CHECKING:  # torch only where weights are written: the workflow reads this module
    import torch

WEIGHTS = "model.safetensors"
MODEL_JSON = "model.json"
CONFIG = "config.yaml"


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def read_rows(path: Path) -> list[dict]:
    """A CSV of the run folder (metrics.csv, losses.csv, ...) as dicts; [] if absent."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_text_atomic(run_dir / CONFIG, yaml.safe_dump(record, sort_keys=False))


def read_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / CONFIG).read_text())


def write_skipped(run_dir: Path, root: Path, skipped: list[tuple[Path, str]]) -> None:
    lines = [f"{p.relative_to(root).as_posix()}\t{why}" for p, why in skipped]
    write_text_atomic(run_dir / "skipped.txt", "".join(f"{ln}\n" for ln in lines))


def export_weights(run_dir: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Weights only (safetensors) + what predict needs to rebuild and feed the model."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text_atomic(run_dir / MODEL_JSON, json.dumps(meta, indent=2) + "\n")


def finish(partial: Path, final: Path) -> None:
    """Move the completed run under its final name (replacing an old one with --force)."""
    move_into_place(partial, final)


def format_time(seconds: float) -> str:
    """fastai's mm:ss (hh:mm:ss past an hour)."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def metrics_markdown(rows: list[dict], columns: tuple[str, ...]) -> str:
    """The per-epoch table as the blog prints it: losses and rates to 6 decimals, mm:ss."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for r in rows:
        cells = [format_time(float(r[c])) if c == "time" else str(r[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
