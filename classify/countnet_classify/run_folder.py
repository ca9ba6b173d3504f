"""The run folder: config.yaml (with the run's summary), skipped.txt and the weights
(safetensors + model.json). A run is built in runs/.<name>.partial/ and renamed to
runs/<name>/ when it completes, so runs/<name>/ is always whole; the partial folder is what
--resume continues."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from countnet.atomic import atomic_path, check_replaceable, move_into_place, write_text_atomic
from countnet.errors import CountnetError
from countnet.tables import markdown_table

if TYPE_CHECKING:  # torch only where weights are written: the workflow reads this module
    import torch

    from countnet_classify.spec import RunSpec

WEIGHTS = "model.safetensors"
MODEL_JSON = "model.json"
CONFIG = "config.yaml"


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def prepare_folder(spec: RunSpec, say) -> tuple[Path, Path, dict | None]:
    """The run's final and partial folders, and on --resume the interrupted run's
    config.yaml; refuses what --resume/--force do not allow."""
    final = spec.run_dir
    partial = partial_dir(final)
    # A partial folder without config.yaml was interrupted before training started (while
    # screening or finding the LR): nothing in it is worth keeping, so it never blocks.
    if partial.is_dir() and not (partial / CONFIG).is_file():
        if spec.resume:
            say(f"run {spec.run_name!r} was interrupted before its first epoch: starting over")
        shutil.rmtree(partial)
        if spec.resume and not final.exists():
            return final, partial, None
    if spec.resume:
        if not partial.is_dir():
            if final.is_dir():
                raise CountnetError(f"run {final} already finished: nothing to resume")
            raise CountnetError(
                f"no interrupted run named {spec.run_name!r} to resume in {final.parent}"
            )
        saved = read_config(partial)
        diff = spec.resume_diff(saved["resume_key"])
        if diff:
            raise CountnetError(
                f"--resume: run {spec.run_name!r} was started with different options "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())})"
            )
        return final, partial, saved
    if final.exists() and not spec.force:
        raise CountnetError(f"run {final} already exists: choose another --name or pass --force")
    # --force replaces a finished run (it has config.yaml) or an empty folder, nothing else.
    check_replaceable(final, force=True, what="run", replaceable=is_run)
    if partial.exists():
        if not spec.force:
            raise CountnetError(
                f"an interrupted run {spec.run_name!r} exists: pass --resume to continue it "
                "or --force to start over"
            )
        shutil.rmtree(partial)
    return final, partial, None


def is_run(folder: Path) -> bool:
    """A finished run folder (it has config.yaml)."""
    return (folder / CONFIG).is_file()


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_text_atomic(run_dir / CONFIG, yaml.safe_dump(record, sort_keys=False))


def read_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / CONFIG).read_text())


def write_skipped(run_dir: Path, root: Path, skipped: list[tuple[Path, str]]) -> None:
    lines = [f"{printable(p.relative_to(root).as_posix())}\t{printable(why)}" for p, why in skipped]
    write_text_atomic(run_dir / "skipped.txt", "".join(f"{ln}\n" for ln in lines))


def printable(text: str) -> str:
    """``text`` on one line of UTF-8: bytes of a non-UTF-8 file name as \\xff, control
    characters (a newline or tab in a name) as \\n, \\t."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    cells = [[format_time(float(r[c])) if c == "time" else r[c] for c in columns] for r in rows]
    return markdown_table(columns, cells, align_right=True) + "\n"
