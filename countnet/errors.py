"""The one error type users see: its message is printed as a single line, no traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class CountnetError(Exception):
    """Bad input or an unrecoverable condition the user can act on."""


class DiskFull(CountnetError):
    """A write that failed for want of space (blocks, inodes or quota) on ``path``'s file
    system. ``hint`` is what to do; the CLI may give a command's own (``--resume``)."""

    def __init__(self, path: Path | str, hint: str = "free space and rerun"):
        self.path, self.hint = path, hint
        super().__init__(f"disk full writing {path}: {hint}")


# What `countnet` reports in one line instead of a traceback: its own errors, and the
# operating system's about a path the user gave.
USER_ERRORS = (CountnetError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError)  # fmt: skip

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# What writers other than Python's own say when the disk fills: torch's zip writer
# ("[enforce fail at inline_container.cc:...] unexpected pos"), safetensors' Rust io error.
NO_SPACE_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded")
TRUNCATED_WRITE_WORDS = ("unexpected pos", "PytorchStreamWriter failed")


def is_read_only(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno == errno.EROFS


def is_disk_full(error: BaseException, path: Path | str | None = None) -> bool:
    """Whether ``error`` means the disk (or inode table, or quota) is full. A writer that
    hides the errno (torch's checkpoint writer) counts when ``path``'s file system is full."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return True
        if any(w in str(e) for w in NO_SPACE_WORDS):
            return True
        if path is not None and any(w in str(e) for w in TRUNCATED_WRITE_WORDS):
            return file_system_full(path)
    return False


def file_system_full(path: Path | str) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has no
    room left for this user: under 1 MiB free, or no free inode."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20 or (st.f_files > 0 and st.f_favail == 0)


def is_read_only_fs(path: Path | str) -> bool:
    """Whether ``path`` (an existing folder) lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_failure(error: BaseException, path: Path | str) -> CountnetError | None:
    """The one-line error for a failed write of ``path`` when the cause is the file system
    (full, read-only), else None."""
    if is_disk_full(error, path):
        return DiskFull(path)
    if is_read_only(error):
        return CountnetError(
            f"read-only file system: cannot write {path} (write somewhere else, or remount "
            "it read-write)"
        )
    return None


def _chain(error: BaseException):
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def one_line(error: BaseException) -> str:
    """The line a user error is reported with."""
    if isinstance(error, DiskFull):  # its own words: fastai rewrites a callback's error's args
        return f"disk full writing {error.path}: {error.hint}"
    fs = write_failure(error, getattr(error, "filename", None) or "a file")
    if isinstance(error, OSError) and fs is not None:
        return str(fs)
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = str(error)
    # fastai puts where in the loop a callback raised it before the message
    if text.startswith("Exception occured in `") and ":\n\t" in text:
        text = text.split(":\n\t", 1)[1]
    return text


def user_error_line(error: BaseException) -> str | None:
    """The one line a command reports ``error`` with, or None for a bug (its traceback is
    the report): countnet's own errors, the OS refusing a path, a full or read-only file
    system under a writer without its own check."""
    if isinstance(error, USER_ERRORS):
        return one_line(error)
    if isinstance(error, OSError) and (error.filename or write_failure(error, ".") is not None):
        return one_line(error)
    return None
