"""Find and vet the images of a folder-labeled set before any training starts.

Unreadable, truncated, zero-byte and non-image files are skipped (and listed); every
readable image is decoded to RGB by ``images.open_rgb`` (grayscale, RGBA, palette, 16-bit,
CMYK), within its decoding memory budget however many threads decode. A ``test/`` split
beside train/ and valid/ (`countnet gen --holdout`) is found and vetted the same way;
fingerprints of the files let a run notice that they changed.

Each screening's verdicts are kept in the cache folder (``screened/``, once the decoded cache
has made the folder), keyed by every file's stamp (path, size, mtime, inode, ctime: what
the decoded cache's key covers), so the next run on the same unchanged files (the
workflow's every job on a set) skips decoding them all again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError

from countnet.atomic import write_text_atomic
from countnet.cpus import usable_cpus
from countnet.errors import CountnetError
from countnet_classify.labels import TEST, count_values, natural_key
from countnet_classify.stamps import cache_root, file_stamp

IMBALANCE_RATIO = 3.0  # largest / smallest class above this is flagged
VERDICTS = 1  # bump when check_image's verdicts change: earlier screenings are not reused


@dataclass
class Screened:
    """The vetted items of a dataset: (path, label, is_valid) plus what was skipped."""

    root: Path
    layout: str  # "train/valid" or "class folders"
    items: list[tuple[Path, str, bool]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def counts(self, valid: bool | None = None) -> Counter:
        return Counter(lbl for _, lbl, v in self.items if valid is None or v == valid)

    @property
    def imbalance(self) -> float:
        c = self.counts()
        return max(c.values()) / max(min(c.values()), 1)


def check_image(path: Path) -> str | None:
    """None if the file decodes fully, else why not."""
    # lazy: images imports fastai, and the Snakefile's parse imports this module (via sweep)
    from countnet_classify.images import decoded_size

    if path.is_symlink() and (why := symlink_problem(path)):
        return why
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO would wait for a writer forever
            return "not a regular file (a FIFO, socket or device)"
        if st.st_size == 0:
            return "zero-byte file"
        # a full decode as training decodes (catches truncation too), within the budget
        width, height = decoded_size(path)
        if width < 1 or height < 1:
            return "empty image"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"unreadable ({str(e).splitlines()[0][:80]})"
    return None


def symlink_problem(link: Path) -> str | None:
    """Why the symlink ``link`` is not an image to read (None if it points at a file)."""
    try:
        target = link.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop so
        return "symlink loop"
    except OSError as e:
        return "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
    if not target.is_dir():
        return None
    if link.parent.resolve().is_relative_to(target):
        return "symlink loop (a link to a folder above it)"
    return "symlink to a folder (not followed)"


def class_dirs(folder: Path) -> list[Path]:
    """The class folders under ``folder`` (hidden ones left out), in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted; hidden files and folders left out. Symlinks
    that are not files (loops, broken, to folders) and files that are not regular (FIFOs,
    sockets, devices) are kept, for screening to list."""
    return sorted(
        p
        for p in folder.rglob("*")
        if (not p.is_dir() or p.is_symlink())
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def stat_digest(paths: Iterable[Path], name: Callable[[Path], str]) -> str:
    """sha256 over the sorted (name(path), size, mtime) lines: changes when a file is added,
    removed, resized or rewritten (a rewrite of the same size changes its mtime)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError:  # a symlink loop or a broken link: the link itself
            st = p.lstat()
        # surrogateescape: a file name that is not UTF-8 hashes as its raw bytes
        h.update(f"{name(p)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def fingerprint(root: Path, paths: list[Path]) -> str:
    """The dataset's fingerprint for the run record: ``stat_digest`` over every file found
    (readable or not), named relative to ``root`` so a moved set keeps it."""
    return stat_digest(paths, lambda p: p.relative_to(root).as_posix())


def check_data_root(root: Path | str) -> None:
    """One line when DATA is missing or not a folder: what a run checks before anything
    else (ImageNet weights, the run folder), so a mistyped path is the error shown."""
    root = Path(root)
    if not root.exists():
        raise CountnetError(f"DATA {root} does not exist")
    if not root.is_dir():
        raise CountnetError(f"DATA {root} is not a folder of class folders")


def _entries(root: Path) -> tuple[list[tuple[Path, str, bool]], set[str], bool]:
    """Every file under the class folders as (path, class, in valid/), the class names,
    and whether the set has the train/ + valid/ layout: the files screen() vets."""
    check_data_root(root)
    split_layout = (root / "train").is_dir() and (root / "valid").is_dir()
    if split_layout:
        entries = [
            (f, d.name, split == "valid")
            for split in ("train", "valid")
            for d in class_dirs(root / split)
            for f in files_under(d)
        ]
        names = {d.name for s in ("train", "valid") for d in class_dirs(root / s)}
    else:
        entries = [(f, d.name, False) for d in class_dirs(root) for f in files_under(d)]
        names = {d.name for d in class_dirs(root)}
    return entries, names, split_layout


def data_fingerprint(data: Path | str) -> str:
    """screen()'s fingerprint of ``data`` from file names, sizes and mtimes alone, without
    decoding an image: what a run records, cheap enough to check before reusing one."""
    root = Path(data)
    entries, _, _ = _entries(root)
    return fingerprint(root, [e[0] for e in entries])


def screen(data: Path | str, *, valid_pct: float, seed: int, threads: int = 8) -> Screened:
    """Vet every file under ``data`` and decide the split.

    ``data`` is either a folder holding train/ and valid/ (one subfolder per class in
    each), or a folder of class folders, split per class by ``valid_pct`` with ``seed``.
    """
    root = Path(data)
    entries, names, split_layout = _entries(root)
    classes = sorted(names, key=natural_key)
    if len(classes) < 2:
        found = ", ".join(classes) or "none"
        raise CountnetError(
            f"{root} needs at least two class folders (found: {found}); expected "
            f"{root}/<class>/*.jpg or {root}/train/<class>/ and {root}/valid/<class>/"
        )
    problems = checked([e[0] for e in entries], threads)
    items = [e for e, p in zip(entries, problems, strict=True) if p is None]
    skipped = [(e[0], p) for e, p in zip(entries, problems, strict=True) if p is not None]
    if not items:
        raise CountnetError(f"no readable images under {root} ({len(skipped)} files skipped)")
    counts = Counter(lbl for _, lbl, _ in items)
    empty = [c for c in classes if counts[c] == 0]
    if empty:
        raise CountnetError(f"class folder(s) with no readable images: {', '.join(empty)}")
    if split_layout:
        v = Counter(lbl for _, lbl, is_v in items if is_v)
        t = Counter(lbl for _, lbl, is_v in items if not is_v)
        no_valid = [c for c in classes if v[c] == 0]
        no_train = [c for c in classes if t[c] == 0]
        if no_valid:
            raise CountnetError(
                f"class(es) without validation images in valid/: {', '.join(no_valid)}"
            )
        if no_train:
            raise CountnetError(
                f"class(es) without training images in train/: {', '.join(no_train)}"
            )
    else:
        items = _stratified_split(items, classes, valid_pct, seed)
    return Screened(
        root=root,
        layout="train/valid" if split_layout else "class folders",
        items=items,
        skipped=skipped,
        classes=classes,
        fingerprint=fingerprint(root, [e[0] for e in entries]),
    )


def checked(paths: list[Path], threads: int = 8) -> list[str | None]:
    """``check_image``'s verdict on each of ``paths``: an earlier screening's, when it saw
    the same files (by their stamps), else by decoding each (and kept for the next)."""
    memo, key = _verdicts_file(paths)
    if memo is not None and (problems := _recorded(memo, key, len(paths))) is not None:
        return problems
    with ThreadPoolExecutor(threads) as pool:
        problems = list(pool.map(check_image, paths))
    # Kept only in a cache folder that exists (the decoded cache makes it): screening never
    # creates one. One that cannot be written (full, read-only) only costs the next run.
    if memo is not None and memo.parent.parent.is_dir():
        with contextlib.suppress(OSError, CountnetError):
            memo.parent.mkdir(exist_ok=True)
            write_text_atomic(memo, json.dumps({"key": key, "problems": problems}))
    return problems


def _recorded(memo: Path, key: str, n: int) -> list[str | None] | None:
    """The verdicts ``memo`` holds for ``key`` (None: no such file, or a damaged one)."""
    try:
        record = json.loads(memo.read_text())
        problems = record["problems"] if record["key"] == key else None
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return None
    if not (isinstance(problems, list) and len(problems) == n):
        return None
    return problems if all(p is None or isinstance(p, str) for p in problems) else None


def _verdicts_file(paths: list[Path]) -> tuple[Path | None, str]:
    """The cache file of the verdicts on ``paths`` and their key (None: a file that cannot
    be stamped, such as a broken link, is screened afresh every time)."""
    h = hashlib.sha256(f"countnet-screened v{VERDICTS} Pillow {PIL.__version__}\n".encode())
    try:
        for p in paths:
            h.update(f"{p}\t{file_stamp(p)}\n".encode("utf-8", "surrogateescape"))
    except (OSError, RuntimeError):  # broken or looping links
        return None, ""
    key = h.hexdigest()
    return cache_root() / "screened" / f"{key[:32]}.json", key


def _stratified_split(items, classes, valid_pct, seed):
    """Per class, a seeded ``valid_pct`` share goes to validation (at least one image)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        members = [it for it in items if it[1] == c]
        n_valid = int(round(len(members) * valid_pct))
        if n_valid == 0 or n_valid == len(members):
            raise CountnetError(
                f"--valid-pct {valid_pct} leaves class {c!r} ({len(members)} images) without "
                f"{'validation' if n_valid == 0 else 'training'} images: add images or change "
                "--valid-pct"
            )
        valid_idx = set(rng.permutation(len(members))[:n_valid].tolist())
        out += [(p, lbl, i in valid_idx) for i, (p, lbl, _) in enumerate(members)]
    return out


def find_test_folders(root: Path) -> dict[int, list[Path]]:
    """The files of each ``root/test/<count>/`` folder (`countnet gen --holdout`'s held-out
    counts, or a test split of the user's), by count; a folder that names no count is a
    one-line error."""
    folder = root / TEST
    if not folder.is_dir():
        return {}
    dirs = class_dirs(folder)
    values = count_values([d.name for d in dirs], where="test/ class folder")
    return {int(v): files_under(d) for d, v in zip(dirs, values, strict=True)}


def screen_test(root: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, str]], dict]:
    """The test split vetted as screening vets train/ and valid/: (image, count) for every
    readable image, the skipped files with why, and what the run records of it (images
    per count, a fingerprint of every file; nothing without a test/ folder)."""
    folders = find_test_folders(root)
    entries = [(f, c) for c, files in folders.items() for f in files]
    problems = checked([f for f, _ in entries], min(8, usable_cpus()))
    items = [e for e, why in zip(entries, problems, strict=True) if why is None]
    skipped = [(e[0], why) for e, why in zip(entries, problems, strict=True) if why is not None]
    info = {}
    if folders:
        info["test_class_counts"] = {str(c): sum(1 for _, k in items if k == c) for c in folders}
        info["test_skipped"] = len(skipped)
        info["test_fingerprint"] = fingerprint_test_split(root, folders)
    return items, skipped, info


def fingerprint_test_split(root: Path, folders: dict[int, list[Path]] | None = None) -> str | None:
    """The test split's fingerprint from names, sizes and mtimes alone (None without one):
    what a run records, cheap enough to check before reusing a finished run. ``folders``:
    ``find_test_folders(root)``, when already at hand."""
    folders = find_test_folders(root) if folders is None else folders
    return fingerprint(root, [f for fs in folders.values() for f in fs]) if folders else None
