"""What countnet's caches share (the decoded images, screening's verdicts): where they live
and what identifies a file's bytes without reading them.

Where: ``$COUNTNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/countnet``, else ``~/.cache/countnet``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("COUNTNET_CACHE_DIR"):
        return Path(os.environ["COUNTNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "countnet"


def file_stamp(path: Path) -> str:
    """What identifies a file's bytes without reading them: its resolved path, size, mtime,
    inode and ctime (a rewrite changes the ctime even when the mtime is set back)."""
    st = path.stat()
    return f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{st.st_ctime_ns}"
