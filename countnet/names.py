"""File names as users see them: one printable line, whatever bytes the name holds."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` on one line of UTF-8: bytes of a non-UTF-8 file name as \\xff, control
    characters (a newline or tab in a name) as \\n, \\t."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
