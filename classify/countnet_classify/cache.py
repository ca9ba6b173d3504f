"""The decoded-image cache behind the fast training path.

Each split of a screened dataset is decoded once, at the training size, exactly as the PIL
path decodes it (``images.decode``: ``open_rgb`` then fastai's squish ``Resize``), into a
uint8 array ``(N, size, size, 3)`` saved as ``.npy`` and read back memory-mapped, so a set
larger than RAM still trains. The key covers every file's path, size, mtime, inode and
ctime, the split, the labels and the size: a changed, added or removed file gives a new key
(a rebuild), even one rewritten at the same size with its mtime set back (``touch -r``,
``rsync -a``, coarse timestamps), since nothing sets a ctime back. Builds go to a temporary
folder renamed into place when complete, so an interrupted build is never used. The arrays'
blocks are allocated before the first pixel is written (``posix_fallocate``): a cache folder
without room for them is one line before any write, never a SIGBUS from a page that could
not be backed. An entry whose files do not match its meta.json (truncated, missing, a
damaged header) is reported in one line and rebuilt.

Where: ``$COUNTNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/countnet``, else
``~/.cache/countnet``; ``countnet cache info`` lists it and ``countnet cache clear``
empties it (deleting the folder by hand is just as safe).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from countnet.atomic import exclusive, staging_dir
from countnet.cpus import usable_cpus
from countnet.errors import NO_SPACE, CountnetError
from countnet.progress import progress_bar
from countnet_classify.screen import Screened
from countnet_classify.stamps import cache_root, file_stamp

FORMAT = 2  # bump when the layout or the decoding changes: old entries are never reused
SPLITS = ("train", "valid")
# posix_fallocate's answers where a file system cannot allocate ahead
UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def decoded_dir() -> Path:
    return cache_root() / "decoded"


@dataclass
class DecodedSplits:
    """Memory-mapped uint8 images (N, H, W, 3) and int64 labels (class indices) per split."""

    folder: Path
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    classes: list[str]
    size: int
    built: bool  # False when an existing entry was reused


def cache_key(sc: Screened, size: int) -> str:
    """sha256 over everything that decides the cached pixels and labels."""
    h = hashlib.sha256(f"countnet-decoded v{FORMAT} size={size} squish\n".encode())
    h.update(("classes\t" + "\t".join(sc.classes) + "\n").encode("utf-8", "surrogateescape"))
    for path, label, is_valid in sc.items:
        h.update(
            f"{file_stamp(path)}\t{label}\t{int(is_valid)}\n".encode("utf-8", "surrogateescape")
        )
    return h.hexdigest()


def _load(folder: Path, classes: list[str], size: int, built: bool) -> DecodedSplits:
    images = {s: np.load(folder / f"{s}_x.npy", mmap_mode="r") for s in SPLITS}
    labels = {s: np.load(folder / f"{s}_y.npy") for s in SPLITS}
    return DecodedSplits(folder, images, labels, classes, size, built)


def decoded_splits(
    sc: Screened, size: int, *, workers: int | None = None, say=print, progress: bool = True
) -> DecodedSplits:
    """The decoded cache entry of ``sc`` at ``size``: reused when whole, else built."""
    key = cache_key(sc, size)
    final = decoded_dir() / key[:32]
    if (final / "meta.json").is_file() and entry_damage(final, key, size) is None:
        return _load(final, sc.classes, size, built=False)
    # Another process building the same entry (two runs on one set): wait for it, then reuse.
    with exclusive(final, "cache entry", wait=None, say=say):
        if (final / "meta.json").is_file():
            why = entry_damage(final, key, size)
            if why is None:
                return _load(final, sc.classes, size, built=False)
            say(f"cache entry {final} is damaged ({why}): rebuilding it")
        _build(final, sc, size, key, workers or usable_cpus(), say, progress)
    return _load(final, sc.classes, size, built=True)


def entry_damage(folder: Path, key: str, size: int) -> str | None:
    """Why the entry ``folder`` cannot be used as it is (None when whole): its meta.json
    must name ``key``, and each array file must hold exactly the shape meta.json gives."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        n = {s: int(meta["n"][s]) for s in SPLITS}
        if meta.get("key") != key:
            return "meta.json is for other files"
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return "meta.json unreadable"
    for split in SPLITS:
        shapes = {"x": (n[split], size, size, 3), "y": (n[split],)}
        for part, shape in shapes.items():
            dtype = np.dtype(np.uint8 if part == "x" else np.int64)
            if why := _array_damage(folder / f"{split}_{part}.npy", shape, dtype):
                return why
    return None


def _array_damage(path: Path, shape: tuple, dtype: np.dtype) -> str | None:
    """Why the .npy file ``path`` is not an array of ``shape`` and ``dtype``, whole."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            major = fmt.read_magic(f)[0]
            read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            got_shape, _, got_dtype = read(f)
            offset = f.tell()
            length = os.fstat(f.fileno()).st_size
    except (OSError, ValueError) as e:
        return f"{path.name}: {str(e).splitlines()[0][:60] if str(e) else type(e).__name__}"
    if tuple(got_shape) != shape or got_dtype != dtype:
        return f"{path.name} holds {got_dtype} {tuple(got_shape)}, not {dtype} {shape}"
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if length != expected:
        return f"{path.name} is {length} bytes, not {expected}"
    return None


def _build(
    final: Path, sc: Screened, size: int, key: str, workers: int, say, progress: bool
) -> None:
    # lazy: images imports fastai; `countnet cache info` and `clear` import this module
    from countnet_classify.images import decode

    index = {c: i for i, c in enumerate(sc.classes)}
    by_split = {s: [(p, lbl) for p, lbl, v in sc.items if v == (s == "valid")] for s in SPLITS}
    t0 = time.perf_counter()
    total = sum(len(v) for v in by_split.values())
    say(f"decoding {total} images at {size} px into the cache ({final.parent}), once")
    with staging_dir(final, force=True, what="cache entry") as tmp:
        arrays = {
            s: allocate(tmp / f"{s}_x.npy", (len(v), size, size, 3)) for s, v in by_split.items()
        }
        done = 0
        with (
            progress_bar("decoding", enabled=progress) as update,
            ThreadPoolExecutor(workers) as pool,  # Pillow releases the GIL while decoding
        ):
            for split, entries in by_split.items():
                arr = arrays.pop(split)

                def fill(i: int, arr=arr, entries=entries) -> None:
                    arr[i] = decode(entries[i][0], size)

                for _ in pool.map(fill, range(len(entries))):
                    done += 1
                    if done % 64 == 0 or done == total:
                        update(done, total)
                arr.flush()
                del arr
                labels = np.array([index[lbl] for _, lbl in entries], np.int64)
                np.save(tmp / f"{split}_y.npy", labels)
        meta = {
            "format": FORMAT,
            "key": key,
            "files": files_key(sc),
            "root": str(sc.root.resolve()),
            "size": size,
            "classes": sc.classes,
            "n": {s: len(v) for s, v in by_split.items()},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # written last
    say(f"decoded {total} images in {time.perf_counter() - t0:.1f}s")
    _drop_stale(final, meta["root"], size, meta["files"])


def allocate(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A writable uint8 .npy memmap of ``shape`` whose blocks are all allocated now: a
    file system without room fails here, in one line, not with SIGBUS at a later write."""
    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        allocate_ahead(path)
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
    else:
        return arr
    # raised outside the except block: with no OSError as its context, the staging folder's
    # generic "disk full writing" line does not replace this one
    need = (int(np.prod(shape)) + 128) / 2**20
    raise CountnetError(
        f"disk full: the decoded cache needs {need:.1f} MiB for {path.name} in "
        f"{path.parent.parent} (nothing was kept): free space, point COUNTNET_CACHE_DIR at a "
        "folder with room, or pass --loader files"
    )


def allocate_ahead(path: Path) -> None:
    """Give every block of ``path`` (to its current length) storage now, where the file
    system can (ENOSPC if it has no room); elsewhere nothing changes."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _drop_stale(keep: Path, root: str, size: int, files: str) -> None:
    """Entries of the same folder and size made from other files (changed, added or
    removed since) will never be asked for again; entries of the same files with another
    split (seed, --valid-pct) stay. (A process still reading one keeps its open maps.)"""
    for e in cache_entries():
        same_place = e["root"] == root and e["size"] == size
        if same_place and e.get("files") != files and Path(e["folder"]) != keep:
            shutil.rmtree(e["folder"], ignore_errors=True)


def files_key(sc: Screened) -> str:
    """sha256 over the screened files' ``file_stamp`` alone, without the split."""
    h = hashlib.sha256()
    for path in sorted(p for p, _, _ in sc.items):
        h.update(f"{file_stamp(path)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cache_entries() -> list[dict]:
    """Every complete entry: its folder, bytes on disk and meta. An entry whose meta.json
    is damaged is left out (it is rebuilt when next used; `countnet cache clear` deletes it)."""
    out = []
    root = decoded_dir()
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        meta = _entry_meta(d) if d.is_dir() and not d.name.startswith(".") else None
        if meta is not None:
            nbytes = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            out.append({"folder": str(d), "bytes": nbytes, **meta})
    return out


def _entry_meta(folder: Path) -> dict | None:
    """An entry's meta.json when it has what listing and sweeping read, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    fields = {"root": str, "size": int, "n": dict}
    ok = isinstance(meta, dict) and all(isinstance(meta.get(k), t) for k, t in fields.items())
    return meta if ok else None


def clear_cache() -> int:
    """Delete the decoded cache; returns the bytes freed."""
    root = decoded_dir()
    if not root.is_dir():
        return 0
    freed = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    shutil.rmtree(root)
    return freed
