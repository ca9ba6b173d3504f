"""The decoded-image cache behind the fast training path.

Each split of a screened dataset is decoded once, at the training size, exactly as the PIL
path decodes it (``images.decode``: ``open_rgb`` then fastai's squish ``Resize``), into a
uint8 array ``(N, size, size, 3)`` saved as ``.npy`` and read back memory-mapped, so a set
larger than RAM still trains. The key covers every file's path, size and mtime, the split,
the labels and the size: a changed, added or removed file gives a new key (a rebuild).
Builds go to a temporary folder renamed into place when complete, so an interrupted build
is never used.

Where: ``$COUNTNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/countnet``, else
``~/.cache/countnet``; ``countnet cache info`` lists it and ``countnet cache clear``
empties it (deleting the folder by hand is just as safe).
"""

from __future__ import annotations

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
from countnet.progress import progress_bar
from countnet_classify.screen import Screened, stat_digest

FORMAT = 1  # bump when the layout or the decoding changes: old entries are never reused
SPLITS = ("train", "valid")


def cache_root() -> Path:
    if os.environ.get("COUNTNET_CACHE_DIR"):
        return Path(os.environ["COUNTNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "countnet"


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
        st = path.stat()
        h.update(
            f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{label}\t{int(is_valid)}\n".encode(
                "utf-8", "surrogateescape"
            )
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
    if (final / "meta.json").is_file():
        return _load(final, sc.classes, size, built=False)
    # Another process building the same entry (two runs on one set): wait for it, then reuse.
    with exclusive(final, "cache entry", wait=None, say=say):
        if (final / "meta.json").is_file():
            return _load(final, sc.classes, size, built=False)
        _build(final, sc, size, key, workers or usable_cpus(), say, progress)
    return _load(final, sc.classes, size, built=True)


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
        done = 0
        with (
            progress_bar("decoding", enabled=progress) as update,
            ThreadPoolExecutor(workers) as pool,  # Pillow releases the GIL while decoding
        ):
            for split, entries in by_split.items():
                arr = np.lib.format.open_memmap(
                    tmp / f"{split}_x.npy",
                    mode="w+",
                    dtype=np.uint8,
                    shape=(len(entries), size, size, 3),
                )

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


def _drop_stale(keep: Path, root: str, size: int, files: str) -> None:
    """Entries of the same folder and size made from other files (changed, added or
    removed since) will never be asked for again; entries of the same files with another
    split (seed, --valid-pct) stay. (A process still reading one keeps its open maps.)"""
    for e in cache_entries():
        same_place = e["root"] == root and e["size"] == size
        if same_place and e.get("files") != files and Path(e["folder"]) != keep:
            shutil.rmtree(e["folder"], ignore_errors=True)


def files_key(sc: Screened) -> str:
    """``stat_digest`` over the screened files alone (absolute paths), without the split."""
    return stat_digest((p for p, _, _ in sc.items), lambda p: str(p.resolve()))


def cache_entries() -> list[dict]:
    """Every complete entry: its folder, bytes on disk and meta."""
    out = []
    root = decoded_dir()
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        meta = d / "meta.json"
        if d.is_dir() and not d.name.startswith(".") and meta.is_file():
            nbytes = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            out.append({"folder": str(d), "bytes": nbytes, **json.loads(meta.read_text())})
    return out


def clear_cache() -> int:
    """Delete the decoded cache; returns the bytes freed."""
    root = decoded_dir()
    if not root.is_dir():
        return 0
    freed = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    shutil.rmtree(root)
    return freed
