"""The run folder: config.yaml (with the run's summary), skipped.txt and the weights
(safetensors + model.json). A run is built in runs/.<name>.partial/ and renamed to
runs/<name>/ when it completes, so runs/<name>/ is always whole; the partial folder is what
--resume continues."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from countnet.atomic import atomic_path, check_replaceable, move_into_place, write_text_atomic
from countnet.errors import CountnetError
from countnet.names import printable
from countnet.tables import markdown_table
from countnet_classify.spec import RunSpec

if TYPE_CHECKING:  # torch only where weights are written: the workflow reads this module
    import torch

WEIGHTS = "model.safetensors"
MODEL_JSON = "model.json"
CONFIG = "config.yaml"
# The last two checkpoints (callbacks.checkpoint writes them): a damaged newest one leaves
# the one before it to resume from.
CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")
METRICS = "metrics.csv"
DEFAULT_RUNS_DIR = "runs"  # RunSpec.runs_dir's default: the hint leaves it out


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


@contextlib.contextmanager
def dropped_on_error(partial: Path, *, keep: bool) -> Iterator[None]:
    """Remove the staging folder ``partial`` this call made when an error (not an
    interruption: its hint resumes) ends the run before its config.yaml or any epoch is
    written: a failed call leaves nothing behind. ``keep``: a resumed run's, never removed."""
    try:
        yield
    except Exception:
        if not keep and not (partial / CONFIG).is_file() and not holds_epochs(partial):
            shutil.rmtree(partial, ignore_errors=True)
        raise


def holds_epochs(partial: Path) -> bool:
    """Whether an interrupted run's folder holds trained epochs (a checkpoint or a metrics
    row): such a folder is never deleted or restarted without --force."""
    return any((partial / n).is_file() for n in (*CHECKPOINTS, METRICS))


def prepare_folder(spec: RunSpec, say) -> tuple[Path, Path, dict | None]:
    """The run's final and partial folders, and on --resume the interrupted run's
    config.yaml; refuses what --resume/--force do not allow."""
    final = spec.run_dir
    partial = partial_dir(final)
    # A partial folder without config.yaml nor any epoch was interrupted before training
    # started (while screening or finding the LR): nothing in it is worth keeping.
    if partial.is_dir() and not (partial / CONFIG).is_file() and not holds_epochs(partial):
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
        saved = _resumable(spec, partial, say)
        if saved is None:  # damaged, and --force says start over
            return final, partial, None
        diff = spec.resume_diff(saved["resume_key"])
        if diff:
            raise CountnetError(
                f"--resume: run {spec.run_name!r} was started with different options "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())})"
            )
        sweep_temp_files(partial)
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


def _resumable(spec: RunSpec, partial: Path, say) -> dict | None:
    """The interrupted run's config.yaml, checked: a partial folder without a readable
    config.yaml, or whose epochs have no checkpoint left, cannot be resumed. With --force it
    is started over (None), else one line says what is wrong; nothing is deleted."""
    try:
        saved = _resume_config(partial)
        if holds_epochs(partial) and not any((partial / n).is_file() for n in CHECKPOINTS):
            raise CountnetError(
                f"run {spec.run_name!r} has trained epochs ({partial / METRICS}) but no "
                f"checkpoint to continue from ({partial / CHECKPOINTS[0]} is missing)"
            )
    except CountnetError as e:
        if not spec.force:
            raise CountnetError(f"{e}: pass --force to start the run over") from None
        say(f"{e}: starting the run over (--force)")
        shutil.rmtree(partial)
        return None
    return saved


def _resume_config(partial: Path) -> dict:
    """A partial folder's config.yaml, as --resume needs it (with its resume key)."""
    if not (partial / CONFIG).is_file():
        raise CountnetError(f"cannot resume from {partial}: it holds a checkpoint but no {CONFIG}")
    saved = read_config(partial)
    if not isinstance(saved.get("resume_key"), dict) or not isinstance(saved.get("run"), dict):
        raise CountnetError(f"{partial / CONFIG} is damaged: it records no run options")
    return saved


def resumed_options(options: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """`countnet train --resume`'s options: those the interrupted run was started with (its
    config.yaml), with the ones ``given`` on the command line in their place (--resume
    then refuses any but the resume-free ones that differ). DATA and --name may be left
    out: the run is found by --name (or DATA's default name) in --runs-dir."""
    runs_dir = options.get("runs_dir") or DEFAULT_RUNS_DIR
    name = options.get("name")
    if name is None and options.get("data") is None:
        raise CountnetError("--resume needs the run's --name (or its DATA folder)")
    if name is None:
        name = RunSpec(**{k: options[k] for k in ("data", "arch")}).run_name
    partial = partial_dir(Path(runs_dir) / name)
    if options.get("data") is not None and not (partial / CONFIG).is_file():
        return options  # nothing recorded to read: prepare_folder says why (or starts over)
    if not partial.is_dir():
        final = Path(runs_dir) / name
        if final.is_dir():
            raise CountnetError(f"run {final} already finished: nothing to resume")
        raise CountnetError(f"no interrupted run named {name!r} to resume in {runs_dir}")
    if not (partial / CONFIG).is_file() and not holds_epochs(partial):
        raise CountnetError(
            f"run {name!r} was interrupted before its first epoch: nothing to resume; "
            "start it again with its options"
        )
    try:
        saved = _resume_config(partial)
    except CountnetError as e:
        if not (options.get("force") and options.get("data")):
            raise CountnetError(
                f"{e}: pass DATA, its options and --force to start it over"
            ) from None
        return options  # --force with DATA: prepare_folder starts it over
    # Recorded: what it was started with (data as its absolute path: any folder resumes it),
    # not whether it was forced; given: what the user typed now.
    recorded = {
        k: v for k, v in saved["run"].items() if k in options and k not in ("force", "resume")
    }
    recorded["data"] = saved["resume_key"].get("data", recorded.get("data"))
    found = {"name": name, "runs_dir": runs_dir}  # where it was found, not where it started
    return {**options, **recorded, **{k: options[k] for k in given}, **found}


def resume_hint(spec: RunSpec) -> str:
    """What to do after an interruption: the command that continues the run, as it can be
    run (its options come from config.yaml), or a rerun when nothing was trained yet."""
    partial = partial_dir(spec.run_dir)
    if not (partial / CONFIG).is_file():
        return "nothing was trained yet: run the same command again"
    cmd = ["countnet", "train", "--resume", "--name", spec.run_name]
    if Path(spec.runs_dir) != Path(DEFAULT_RUNS_DIR):
        cmd += ["--runs-dir", str(spec.runs_dir)]
    return f"continue with `{shlex.join(cmd)}`"


def sweep_temp_files(partial: Path) -> None:
    """Delete temp files (``.<name>.XXXX.tmp``, countnet.atomic's) that a kill during a
    write left in a partial run folder: the folder is countnet's own, and they would be
    carried into the finished run (a checkpoint's is tens of MB)."""
    for p in partial.glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)


def is_run(folder: Path) -> bool:
    """A finished run folder (it has config.yaml)."""
    return (folder / CONFIG).is_file()


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_text_atomic(run_dir / CONFIG, yaml.safe_dump(record, sort_keys=False))


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml as a mapping; an empty, truncated or otherwise damaged one is one line."""
    path = run_dir / CONFIG
    try:
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CountnetError(f"{path} is damaged ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(record, dict):
        raise CountnetError(f"{path} is damaged (empty or not a mapping)")
    return record


def write_skipped(run_dir: Path, root: Path, skipped: list[tuple[Path, str]]) -> None:
    lines = [f"{printable(p.relative_to(root).as_posix())}\t{printable(why)}" for p, why in skipped]
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
    cells = [[format_time(float(r[c])) if c == "time" else r[c] for c in columns] for r in rows]
    return markdown_table(columns, cells, align_right=True) + "\n"
