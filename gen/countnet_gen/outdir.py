"""Where `countnet gen` may write (``--out``): symlinks are resolved, so a dataset is
written at a link's target and the link stays; a folder inside another countnet dataset is
refused (it would become a class of that set); and ``--force`` replaces a countnet dataset
only while it holds nothing but what countnet wrote there, so a user's file is never
deleted with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from countnet.atomic import absolute
from countnet.errors import CountnetError
from countnet.names import printable
from countnet.tables import read_csv
from countnet_gen.spec import DatasetSpec

MANIFEST = "manifest.csv"
DATASET_JSON = "dataset.json"
SPLITS = ("train", "valid", "test")
# Snakemake marks each directory() output it made (the workflow's datasets) with this file.
SNAKEMAKE_MARK = ".snakemake_timestamp"
SHOWN = 5  # foreign files named in the refusal; the rest are counted
MAX_DATASET_JSON = 16 << 20  # bytes: far above any dataset.json gen writes


def is_dataset(folder: Path | str) -> bool:
    """Whether ``folder`` was written by countnet gen (it has countnet's dataset.json)."""
    return read_dataset_json(folder) is not None


def counting_spec(folder: Path | str) -> DatasetSpec | None:
    """The DatasetSpec of a countnet counting set whose dataset.json is whole and valid, else
    None: the classifier's automatic choices (transforms, rate) and records go by this, so
    a damaged or forged dataset.json makes a plain folder, never an error later on."""
    return valid_spec(read_dataset_json(folder))


def valid_spec(meta: dict | None) -> DatasetSpec | None:
    """The DatasetSpec of a dataset.json already read (``read_dataset_json``), or None when
    its spec is not one gen would accept."""
    if meta is None or not isinstance(meta["classes"], list):
        return None
    try:
        return DatasetSpec.from_dict(meta["spec"], check_layouts=False)
    except (CountnetError, TypeError, ValueError):
        return None


def read_dataset_json(folder: Path | str) -> dict | None:
    """``folder``'s dataset.json if it is countnet's (an object with a spec and classes),
    else None."""
    path = Path(folder) / DATASET_JSON
    try:
        # a regular file of sane size only: a FIFO or /dev/zero by that name must not hang
        # or fill memory (gen's own dataset.json is a few kB)
        if not path.is_file() or path.stat().st_size > MAX_DATASET_JSON:
            return None
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    ok = isinstance(meta, dict) and isinstance(meta.get("spec"), dict) and "classes" in meta
    return meta if ok else None


def resolve_out(out: Path | str) -> Path:
    """``out`` made absolute with every symlink resolved: the folder the dataset goes to.
    A symlink loop is refused (Python 3.11 raises on one; later versions return a path that
    is still a link)."""
    try:
        final = absolute(out).resolve()
    except (RuntimeError, OSError):
        final = None
    if final is None or final.is_symlink():
        raise CountnetError(f"--out {out} is a symlink loop: fix the link or choose another --out")
    return final


def check_out(final: Path, *, force: bool) -> None:
    """Refuse ``final`` (resolved) inside a countnet dataset, and ``--force`` onto a
    dataset that holds files countnet did not write, in one line naming them."""
    inside = next((p for p in final.parents if is_dataset(p)), None)
    if inside is not None:
        raise CountnetError(
            f"--out {final} is inside the countnet dataset {inside}: writing there would "
            "break it; nothing was changed (choose a folder outside it)"
        )
    if not (force and final.is_dir() and is_dataset(final)):
        return
    foreign = foreign_files(final)
    if foreign:
        shown = ", ".join(printable(f) for f in foreign[:SHOWN])
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        raise CountnetError(
            f"--force replaces only what countnet wrote, and {final} also holds "
            f"{len(foreign)} file(s) or folder(s) it did not write: {shown}{more}; nothing "
            "was changed (move them out, or choose another --out)"
        )


def foreign_files(folder: Path) -> list[str]:
    """What the countnet dataset ``folder`` holds besides its manifest's images, its class
    folders, manifest.csv and dataset.json (sorted, relative, folders with a trailing /).
    Symlinks count as foreign whatever their name: countnet writes none."""
    meta = read_dataset_json(folder) or {}
    ours = _manifest_paths(folder) | {MANIFEST, DATASET_JSON, SNAKEMAKE_MARK}
    counts = [str(c) for c in [*meta.get("classes", []), *meta.get("test_classes", [])]]
    our_dirs = set(SPLITS) | {f"{s}/{c}" for s in SPLITS for c in counts}
    foreign = []
    for top, dirs, files in os.walk(folder):
        rel = Path(top).relative_to(folder)
        for d in list(dirs):
            name = (rel / d).as_posix()
            if name not in our_dirs or os.path.islink(os.path.join(top, d)):
                foreign.append(name + "/")
                dirs.remove(d)  # listed once, not file by file
        for f in files:
            name = (rel / f).as_posix()
            if name not in ours or os.path.islink(os.path.join(top, f)):
                foreign.append(name)
    return sorted(foreign)


def _manifest_paths(folder: Path) -> set[str]:
    try:
        return {row["path"] for row in read_csv(folder / MANIFEST)}
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return set()  # an unreadable manifest vouches for no image
