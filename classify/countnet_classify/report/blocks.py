"""The report as data: a list of blocks that both renderers (render.to_markdown and
render.to_html) turn into a page, so the two pages cannot say different things."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str | None = None  # the HTML id a link can jump to


@dataclass(frozen=True)
class Strong:
    """Emphasised text inside a paragraph (bold in HTML; the markdown page keeps it plain)."""

    text: str


@dataclass(frozen=True)
class Para:
    parts: tuple[str | Strong, ...]

    @classmethod
    def of(cls, *parts: str | Strong) -> Para:
        return cls(parts)


@dataclass(frozen=True)
class Quote:
    text: str


@dataclass(frozen=True)
class Shaded:
    """A table cell whose background says how bad a figure is: ``level`` 0 (none of
    chance's error: green) to 1 (chance's or worse: red). The markdown page keeps the text."""

    text: str
    level: float

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Table:
    head: Sequence[str]
    rows: Sequence[Sequence[str | Shaded]]


@dataclass(frozen=True)
class Figures:
    """PNG files with their titles, linked from report.md and embedded in report.html;
    ``titled``: each under its own heading in the markdown page."""

    items: Sequence[tuple[Path, str]]
    titled: bool = False


@dataclass(frozen=True)
class FileList:
    """File names in code type, the first ``shown`` of them; "none" when there are none.
    ``see``: where the markdown page sends a reader for the rest."""

    files: Sequence[str]
    shown: int = 50
    see: str = ""


Block = Heading | Para | Quote | Table | Figures | FileList
