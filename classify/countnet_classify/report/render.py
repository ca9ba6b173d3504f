"""The report's two renderers over the same blocks: report.md (figures linked, relative to
the report's folder) and report.html (figures embedded: one file that reads offline)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from countnet.tables import markdown_table
from countnet_classify.report import blocks as b

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;
padding:3px 8px;text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{
text-align:left}img{max-width:100%;border:1px solid #eee}.figs{display:flex;flex-wrap:wrap;
gap:1em}.figs figure{margin:0;flex:1 1 45%}blockquote{border-left:4px solid #e8a33d;
margin:1em 0;padding:.3em 1em;background:#fff8ec}.unsafe{color:#b00}.table{overflow-x:auto;
max-width:100%}"""
# .table: a table wider than the page (long paths or names) scrolls inside its own box
# instead of running off the window; tests/test_report_page.py checks the page at 1280 px.


# -- markdown -------------------------------------------------------------------
def to_markdown(title: str, body: list[b.Block], out_dir: Path) -> str:
    """report.md: each block, then a blank line; ``out_dir``: where the page is written
    (figure links are relative to it)."""
    lines = [f"# {title}", ""]
    for block in body:
        if part := _markdown(block, out_dir):
            lines += [*part, ""]
    return "\n".join(lines)


def _markdown(block: b.Block, out_dir: Path) -> list[str]:
    match block:
        case b.Heading(level=level, text=text):
            return [f"{'#' * level} {text}"]
        case b.Para(parts=parts):
            return ["".join(p.text if isinstance(p, b.Strong) else p for p in parts)]
        case b.Quote(text=text):
            return [f"> {text}"]
        case b.Table(head=head, rows=rows):
            return [markdown_table(head, rows)]
        case b.Figures():
            return _markdown_figures(block, out_dir)
        case b.FileList(files=files, shown=shown, see=see):
            lines = [f"- `{f}`" for f in files[:shown]] or ["none"]
            if len(files) > shown:
                lines += [
                    "",
                    f"... and {len(files) - shown} more" + (f" (see {see})" if see else ""),
                ]
            return lines
    raise TypeError(f"not a report block: {block!r}")


def _markdown_figures(block: b.Figures, out_dir: Path) -> list[str]:
    lines: list[str] = []
    for path, title in block.items:
        if block.titled:
            lines += [f"### {title}", ""]
        lines += [f"![{title}]({os.path.relpath(path, out_dir)})", ""]
    return lines[:-1]  # the blank line after the last one is the block's


# -- html -----------------------------------------------------------------------
def to_html(title: str, body: list[b.Block]) -> str:
    """report.html: one element a line, figures embedded as data URLs."""
    page = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    for block in body:
        page += _html(block)
    page.append("</body></html>")
    return "\n".join(page)


def _html(block: b.Block) -> list[str]:
    esc = html.escape
    match block:
        case b.Heading(level=level, text=text, anchor=anchor):
            at = "" if anchor is None else f" id='{esc(anchor)}'"
            return [f"<h{level}{at}>{esc(text)}</h{level}>"]
        case b.Para(parts=parts):
            text = "".join(
                f"<b>{esc(p.text)}</b>" if isinstance(p, b.Strong) else esc(p) for p in parts
            )
            return [f"<p>{text}</p>"]
        case b.Quote(text=text):
            return [f"<blockquote>{esc(text)}</blockquote>"]
        case b.Table(head=head, rows=rows):
            return [_html_table(head, rows)]
        case b.Figures(items=items):
            return ["<div class='figs'>", *(_html_figure(p, t) for p, t in items), "</div>"]
        case b.FileList(files=files, shown=shown):
            if not files:
                return ["<p>none</p>"]
            items = "".join(f"<li><code>{esc(f)}</code></li>" for f in files[:shown])
            more = f"<p>... and {len(files) - shown} more</p>" if len(files) > shown else ""
            return [f"<ul>{items}</ul>{more}"]
    raise TypeError(f"not a report block: {block!r}")


def _html_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows)
    table = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='table'>{table}</div>"


def _html_cell(cell) -> str:
    """A cell; a transform that can change counting labels in red; a Shaded cell on its
    colour."""
    if isinstance(cell, b.Shaded):
        return f"<td style='background:{shade(cell.level)}'>{html.escape(cell.text)}</td>"
    klass = " class='unsafe'" if "label-unsafe" in str(cell) else ""
    return f"<td{klass}>{html.escape(str(cell))}</td>"


def shade(level: float) -> str:
    """Pale green (0) through pale yellow to pale red (1 and beyond): dark text stays legible."""
    t = min(max(float(level), 0.0), 1.0) if level == level else 1.0  # NaN: as bad as chance
    hue = 120 * (1 - t)
    return f"hsl({hue:.0f},70%,85%)"


def _html_figure(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'></figure>"
    )
