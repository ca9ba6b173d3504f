"""`countnet report`: one page over finished runs — a summary table across runs, then per
run the blog's per-epoch table, the LR finder, learning curves, confusion matrix, top
losses, sample images, the transform-selection table, dataset parameters and skipped
files. Writes report.md (images linked) and report.html (images embedded: one file that
reads offline).

``views``: what it reads from run and sweep folders; ``pixels``: the "Circles or pixels?"
pairing; ``sections``: the page as blocks (``blocks``); ``render``: report.md and
report.html from the same blocks. Only the CLI and the workflow import this package."""

from __future__ import annotations

from pathlib import Path

from countnet.atomic import atomic_path
from countnet.errors import CountnetError
from countnet_classify.experiments.sweep.spec import is_sweep
from countnet_classify.report.render import to_html, to_markdown
from countnet_classify.report.sections import document, title
from countnet_classify.report.views import (
    RunView,
    is_score,
    load_run,
    load_score,
    load_sweep_view,
    run_scores,
)

__all__ = ["write_report"]


def write_report(runs: list[Path | str], out_dir: Path | str) -> tuple[Path, Path]:
    """Write report.md and report.html for ``runs`` into ``out_dir``: run folders, sweep
    folders (`countnet sweep`), which get a section each, and folders of scores on other
    sets (the workflow's probes, `countnet baseline`; a run's own eval/ is read too)."""
    if not runs:
        raise CountnetError("give at least one run or sweep folder")
    sweeps = [load_sweep_view(r) for r in runs if is_sweep(r)]
    scores = [load_score(r) for r in runs if is_score(r)]
    views = [load_run(r) for r in runs if not is_sweep(r) and not is_score(r)]
    for view in views:
        _check_reportable(view)
        scores += run_scores(view.path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks, heading = document(views, sweeps, scores), title(views)
    md, page = out / "report.md", out / "report.html"
    # both or neither: a full disk must not leave a new report.md beside an old report.html
    with atomic_path(md) as md_tmp, atomic_path(page) as page_tmp:
        # a run folder's name need not be UTF-8: such bytes are written as \udcff, not a crash
        md_tmp.write_text(to_markdown(heading, blocks, out), "utf-8", "backslashreplace")
        page_tmp.write_text(to_html(heading, blocks), "utf-8", "backslashreplace")
    return md, page


def _check_reportable(view: RunView) -> None:
    """One line naming the run whose config.yaml lacks or mistypes a field the report
    reads (hand-edited, or damaged), instead of a KeyError deep in the page."""
    try:
        document([view], [])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise CountnetError(
            f"run {view.path} cannot be reported: its config.yaml or metrics.csv is damaged "
            f"({type(e).__name__}: {e})"
        ) from None
