"""Tables as files: the one CSV writer and reader, and the one markdown table renderer,
used by the generator's manifest and every CSV and markdown table of a run, sweep or report."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from countnet.atomic import write_text_atomic
from countnet.names import printable


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> str:
    """CSV with ``header`` first, then ``rows`` (sequences in header order, or mappings keyed
    by it), as Python's csv module writes it by default (RFC 4180, CRLF line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for row in rows:
        cells = [row.get(k, "") for k in header] if isinstance(row, Mapping) else row
        w.writerow([_utf8(c) for c in cells])
    return buf.getvalue()


def _utf8(cell: Any) -> Any:
    """A file name that is not UTF-8 (its bytes surrogate-escaped) as \\xff, printable's
    notation: the file stays UTF-8 that every CSV reader loads."""
    if isinstance(cell, str):
        return cell.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return cell


def write_csv(
    path: Path | str, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]
) -> None:
    """``csv_text`` written atomically (temp file, then rename)."""
    write_text_atomic(path, csv_text(header, rows))


def read_csv(path: Path | str) -> list[dict[str, str]]:
    """A CSV's rows as dicts keyed by its header; [] if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, align_right: bool = False
) -> str:
    """A GitHub/CommonMark table; a ``|`` inside a cell is escaped, and a control character
    (a newline in a folder's name) written as ``\\n``, which would end the row. ``align_right``:
    every column right-aligned (numbers)."""
    rule = "---:|" if align_right else "---|"
    lines = ["| " + " | ".join(header) + " |", "|" + rule * len(header)]
    # One backslash: "\\|" is a literal pipe in a table cell.
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return printable(str(value)).replace("|", "\\|")
