"""Write-then-rename helpers: nothing half-written ever sits under a final name."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from countnet.errors import CountnetError, is_read_only_fs, write_failure

PARTIAL = ".partial-"
# A staging folder of another host is swept only when this old: its writer may be alive on a
# filesystem whose locks hold per host only (NFS mounted with local_lock, Lustre localflock).
OTHER_HOST_STALE_SECONDS = 24 * 3600


def _host() -> str:
    return socket.gethostname().split(".")[0].replace("-", "_") or "host"


def _host_prefix(final: Path) -> str:
    """Name prefix of ``final``'s staging folders made by this host: ``.<name>.partial-<host>-``."""
    return f".{final.name}{PARTIAL}{_host()}-"


def staging_prefix(final: Path) -> str:
    """Name prefix of ``final``'s staging folders made by this host and process:
    ``.<name>.partial-<host>-<pid>-``."""
    return f"{_host_prefix(final)}{os.getpid()}-"


@contextlib.contextmanager
def exclusive(
    final: Path, what: str = "dataset", wait: float | None = 0, say=None
) -> Iterator[None]:
    """Hold the lock file ``.<name>.lock`` beside ``final`` while writing it.

    An OS lock (fcntl/msvcrt via filelock): the kernel releases it when the holder dies, even
    by kill -9, and a shared filesystem's lock manager makes it hold across nodes, so two
    writers of one folder never race. ``wait``: seconds to wait for another holder (0: fail
    at once with one line; None: wait as long as it takes, saying so through ``say``).
    """
    from filelock import FileLock, Timeout

    final = absolute(final)
    made_dirs = missing_parents(final)
    check_writable_parent(final)
    lock = FileLock(final.parent / f".{final.name}.lock")
    made = not Path(lock.lock_file).exists()
    try:
        try:
            lock.acquire(timeout=0 if wait is None else wait)
        except Timeout:
            if wait is not None:
                raise
            if say:
                say(f"waiting for another process writing {what} {final} ({lock.lock_file})")
            lock.acquire(timeout=-1)
    except Timeout:
        raise CountnetError(
            f"{what} {final} is being written by another process (it holds {lock.lock_file}): "
            "wait for it to finish, or write somewhere else"
        ) from None
    except OSError as e:  # e.g. ENOLCK: NFS without a lock manager; a lock file of another user
        fs = write_failure(e, lock.lock_file)
        if fs is not None:
            raise fs from None
        raise CountnetError(
            f"cannot lock {lock.lock_file} ({e.strerror or e}): countnet needs a filesystem "
            "with working file locks (flock) and write access to the lock file"
        ) from None
    try:
        yield
    except BaseException:
        if made:  # a failed call leaves no lock of its own; unlinked while held, which a
            # waiter on the old file notices (filelock retries on an unlinked lock file)
            Path(lock.lock_file).unlink(missing_ok=True)
            remove_if_empty(made_dirs)  # nor an empty runs/ it created for it
        raise
    finally:
        lock.release()


def remove_stale_partials(final: Path) -> None:
    """Delete staging folders left by killed runs aimed at ``final``. Call it only while
    holding ``exclusive(final)``: then no live writer of ``final`` exists on this host (so
    this host's folders are stale), nor on any host where the filesystem's locks work across
    nodes; another host's folder is also swept once it is OTHER_HOST_STALE_SECONDS old, in
    case its locks were per host."""
    final = absolute(final)
    parent = final.parent
    if not parent.is_dir():
        return
    mine = _host_prefix(final)
    for p in parent.glob(glob.escape(f".{final.name}{PARTIAL}") + "*"):
        try:
            old = time.time() - p.stat().st_mtime > OTHER_HOST_STALE_SECONDS
        except OSError:
            continue
        if p.name.startswith(mine) or old:
            shutil.rmtree(p, ignore_errors=True)


def missing_parents(final: Path) -> list[Path]:
    """The folders above ``final`` that do not exist yet, deepest first."""
    out = []
    for parent in final.parents:
        if parent.exists():
            break
        out.append(parent)
    return out


def remove_if_empty(folders: list[Path]) -> None:
    """rmdir each folder (deepest first) that is still empty; never anything with a file."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def check_writable_parent(final: Path) -> None:
    """Create ``final``'s parent or fail with one line saying why."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as e:
        fs = write_failure(e, parent)
        raise fs or CountnetError(f"cannot create {parent}: {e.strerror or e}") from None
    if is_read_only_fs(parent):
        raise CountnetError(
            f"cannot write into {parent}: read-only file system (write somewhere else, or "
            "remount it read-write)"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CountnetError(f"cannot write into {parent}: permission denied")


def move_into_place(src: Path, final: Path) -> None:
    """Rename the finished folder ``src`` to ``final``, replacing any old ``final``: the old
    one is moved aside first, so the swap is two renames, then deleted."""
    if final.exists():
        old = final.parent / f"{staging_prefix(final)}old"
        os.replace(final, old)
        os.replace(src, final)
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, final)
        fsync_dir(final.parent)


@contextlib.contextmanager
def staging_dir(
    final: Path,
    *,
    force: bool,
    what: str = "dataset",
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temp folder beside ``final``; on success it replaces ``final`` atomically.
    Use it inside ``exclusive(final)``.

    Without ``force`` an existing ``final`` is an error; with it, ``final`` is replaced only
    if it is an empty folder or ``replaceable(final)`` says it is ours (a user's folder is
    never deleted). On any failure (or interruption) the temp folder is removed; after
    kill -9 it is removed by the next run.
    """
    final = absolute(final)
    check_replaceable(final, force=force, what=what, replaceable=replaceable)
    check_writable_parent(final)
    remove_stale_partials(final)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(final), dir=final.parent))
    except OSError as e:
        fs = write_failure(e, final)
        raise fs or CountnetError(f"cannot write into {final.parent}: {e.strerror}") from None
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the dataset from others
    try:
        yield tmp
        # Power loss after the rename must not leave a folder of empty or torn files.
        flush_file_system(tmp)
        move_into_place(tmp, final)
    except BaseException as e:
        fs = write_failure(e, final)
        shutil.rmtree(tmp, ignore_errors=True)
        if fs is not None:
            raise fs from None
        raise


def check_replaceable(
    final: Path,
    *,
    force: bool,
    what: str = "dataset",
    replaceable: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse to replace ``final`` without ``force``, or with it when ``final`` is neither an
    empty folder nor one ``replaceable`` recognises as ours."""
    if final.exists() and not force:
        raise CountnetError(f"{what} {final} already exists: pass --force to replace it")
    ours = final.is_dir() and (_is_empty_dir(final) or replaceable is None or replaceable(final))
    if final.exists() and not ours:
        raise CountnetError(
            f"--force replaces only a countnet {what} or an empty folder, and {final} is "
            "neither: nothing was changed (choose another output or remove it yourself)"
        )


def absolute(path: Path | str) -> Path:
    """``path`` made absolute and normalised, without resolving symlinks: ``--out .`` names
    the current folder, not a folder called '.'."""
    return Path(os.path.abspath(path))


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_permissions(path: Path | str) -> None:
    """Give a file made by mkstemp (0600) the permissions a plain open() would have."""
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp file name beside ``path``; when the block succeeds the file gets normal
    permissions and is renamed to ``path``, otherwise it is removed. Readers of ``path``
    never see a half-written file."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        fs = write_failure(e, path)
        if fs is not None:
            raise fs from None
        raise
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)  # the data reaches the disk before the name points at it
        publish_permissions(tmp)  # mkstemp's 0600 is for secrets, not outputs
        os.replace(tmp, path)
        fsync_dir(path.parent)  # and the rename itself survives a power loss
    except BaseException as e:
        fs = write_failure(e, path)  # judged before the unlink frees the space
        tmp.unlink(missing_ok=True)
        if fs is not None:
            raise fs from None
        raise


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Make a rename in folder ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def flush_file_system(path: Path | str) -> None:
    """Write every dirty page of the file system holding ``path`` to disk: one syncfs(2)
    for a whole staged folder instead of one fsync per file; os.sync() where there is none."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a small text file via a temp name in the same folder, then rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
