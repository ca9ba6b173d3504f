"""The report's sections as blocks: the answer against chance, the summary and cost tables,
"Circles or pixels?", counts never seen, one section per sweep and one per run."""

from __future__ import annotations

from pathlib import Path

from countnet_classify import evaluate
from countnet_classify.cost import DISPLAY_COLUMNS, format_row
from countnet_classify.report import pixels, shifts
from countnet_classify.report.blocks import (
    Block,
    Figures,
    FileList,
    Heading,
    Para,
    Quote,
    Strong,
    Table,
)
from countnet_classify.report.views import (
    LEARNED_RULE,
    RunView,
    Score,
    SweepView,
    chance_error,
    verdict,
)
from countnet_classify.run_folder import format_time

TITLE = "countnet report"
BLOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "error_rate", "time")
FIGURES = (
    ("lr_find.png", "LR finder"),
    ("losses.png", "Learning curves"),
    ("confusion_matrix.png", "Confusion matrix"),
    ("top_losses.png", "Top losses"),
    ("scatter.png", "Predicted vs true count"),  # --task regression
    ("residuals.png", "Residual by count"),
    ("maps.png", "Where the count comes from"),  # countnet_classify.maps
    ("batch.png", "Sample training images (augmented)"),
)
SUMMARY_COLUMNS = (
    "run",
    "dataset",
    "arch",
    "head",
    "pretrained",
    "transforms",
    "epochs",
    "final error_rate",
    "best error_rate",
    "wall time",
    "device",
)
ANSWER_COLUMNS = (
    "run",
    "dataset",
    "learned?",
    "final error_rate",
    "chance",
    "first reached best",
    "training time",
)
# The page's question, by what the runs were trained on: countnet's counting sets, other
# image folders (digits, paintings), or both.
QUESTIONS = {
    "counting": "Can a CNN count?",
    "other": "What did each network learn?",
    "both": "Can a CNN count, and what did it learn on the other sets?",
}
ANSWER_INTRO = "Each run's final validation error against chance (always the most common class)."
COST_INTRO = (
    "Each run's network as `countnet cost` measures it (cost.json): parameters (in "
    "parentheses, what a frozen fine_tune phase trains), multiply-accumulates per image, "
    "weights on disk, fp32 latency at batch 1 and throughput, on the run's device."
)
NO_SWEEP_RUNS = "No finished run yet: rerun the sweep's command to continue it."


def title(views: list[RunView]) -> str:
    """The page's title: its question, by what the runs were trained on."""
    kinds = {v.counting for v in views}
    if not kinds:
        return TITLE
    key = "both" if len(kinds) == 2 else ("counting" if kinds == {True} else "other")
    return f"{TITLE} — {QUESTIONS[key]}"


def document(
    views: list[RunView], sweeps: list[SweepView], scores: list[Score] = ()
) -> list[Block]:
    """The whole report: the sections across runs (with their scores on other sets), each
    sweep, then each run."""
    blocks = overview(views) + shifts.section(views, list(scores)) if views else []
    for sv in sweeps:
        blocks += sweep_section(sv)
    for v in views:
        blocks += run_section(v)
    return blocks


def overview(views: list[RunView]) -> list[Block]:
    """The sections across runs: the answer, summary, cost, and (where some runs have
    them) circles or pixels and counts never seen."""
    blocks: list[Block] = [
        Para.of(ANSWER_INTRO),
        Table(ANSWER_COLUMNS, [answer_row(v) for v in views]),
        Para.of(LEARNED_RULE),
        Heading(2, "Summary"),
        Table(SUMMARY_COLUMNS, [v.summary_row() for v in views]),
        Heading(2, "Model cost"),
        Para.of(COST_INTRO),
        Table(("run", *DISPLAY_COLUMNS), cost_rows(views)),
    ]
    if pixel_rows := pixels.rows(views):
        blocks += [Heading(2, "Circles or pixels?"), Para.of(pixels.INTRO)]
        blocks += [Table(pixels.COLUMNS, pixel_rows)]
    if unseen_rows := evaluate.unseen_rows(views):
        blocks += [Heading(2, "Counts never seen"), Para.of(evaluate.UNSEEN_INTRO)]
        blocks += [Table(evaluate.UNSEEN_COLUMNS, unseen_rows)]
    return blocks


def answer_row(v: RunView) -> list[str]:
    s, d = v.config["summary"], v.config["data"]
    chance = chance_error(v.config)
    return [
        v.name,
        Path(d["root"]).name,
        verdict(s["final_error_rate"], chance, d["n_valid"]),
        f"{s['final_error_rate']:.4f}",
        f"{chance:.4f}",
        f"epoch {s['best_epoch']} of {s['epochs']}",
        format_time(s.get("train_seconds", s["wall_seconds"])),
    ]


def cost_rows(views: list[RunView]) -> list[list[str]]:
    """One row per run: its cost.json (runs from before it have none: dashes)."""
    return [
        [v.name, *(format_row(v.cost) if v.cost else [v.config["run"]["arch"], *["—"] * 10])]
        for v in views
    ]


def sweep_section(sv: SweepView) -> list[Block]:
    table = Table(*sv.table()) if sv.summary else Para.of(NO_SWEEP_RUNS)
    return [Heading(2, f"Sweep {sv.name}", sv.name), Para.of(sv.text()), table,
            Figures(sv.figures())]  # fmt: skip


def transforms_why(resolved: dict) -> str:
    """Why the default preset was picked (``--transforms auto``), for runs that record it."""
    reason = resolved.get("transforms_reason")
    return f" ({reason})" if reason else ""


def run_section(v: RunView) -> list[Block]:
    """One run: its note, recipe, per-epoch table, counts, figures, transform selection,
    dataset and skipped files."""
    res = v.config["resolved"]
    blocks: list[Block] = [Heading(2, v.name, v.name)]
    if note := v.config["run"].get("note"):
        blocks.append(Quote(note))
    blocks += [
        Para.of("Pretrained: ", Strong(v.pretrained_text()), f". Head: {v.head_text()}. "
                f"Schedule: {res['schedule']}. Transforms: {res['transforms']}"
                f"{transforms_why(res)}."),
        Heading(3, "Per-epoch results"),
        Table(blog_columns(v), blog_rows(v)),
        Para.of(lr_text(v)),
    ]  # fmt: skip
    if s := evaluate.summary_of(v.config):
        blocks += [Heading(3, "Counts: seen and unseen")]
        blocks += [Table(evaluate.GROUP_COLUMNS, evaluate.group_rows(s))]
        blocks += [Table(evaluate.COUNT_COLUMNS, evaluate.count_rows(s))]
    figures = [(v.path / f, figure_title(v, f, t)) for f, t in FIGURES if (v.path / f).is_file()]
    blocks.append(Figures(figures, titled=True))
    if (v.path / "maps.png").is_file() and (caption := (v.config.get("maps") or {}).get("caption")):
        blocks.append(Para.of("Maps: ", caption))
    if v.selection:
        blocks += [Heading(3, "Transform selection"), Table(*selection_rows(v.selection))]
        blocks += [Para.of(selection_text(v.selection))]
    blocks += [Heading(3, "Dataset"), Table(["", ""], dataset_rows(v))]
    blocks += [Heading(3, "Skipped files"), FileList(v.skipped, see="skipped.txt")]
    return blocks


def figure_title(v: RunView, name: str, title: str) -> str:
    """A figure's title; the maps' says how they were made (config.yaml's "maps")."""
    method = (v.config.get("maps") or {}).get("method")
    return f"{title} ({method})" if name == "maps.png" and method else title


def blog_columns(v: RunView) -> tuple[str, ...]:
    """The blog's columns; a regression run's error_rate (of the rounded count) is followed
    by its MAE and RMSE."""
    if v.metrics and "mae" in v.metrics[0]:
        return (*BLOG_COLUMNS[:-1], "mae", "rmse", "time")
    return BLOG_COLUMNS


def blog_rows(v: RunView) -> list[list[str]]:
    return [
        [format_time(float(r[c])) if c == "time" else r[c] for c in blog_columns(v)]
        for r in v.metrics
    ]


def lr_text(v: RunView) -> str:
    lr = v.config["lr"]
    sugg = ", ".join(f"{k} {val:.2e}" for k, val in lr.get("suggestions", {}).items())
    return f"Chosen learning rate: {lr['used']:.3g} ({lr['source']})" + (
        f"; suggestions: {sugg}" if sugg else ""
    )


def selection_rows(sel: dict) -> tuple[list[str], list[list[str]]]:
    head = ["preset", "valid error_rate", "valid_loss", "time", "label safety"]
    rows = []
    for r in sel["table"]:
        if "label_safe" not in r:
            safety = "n/a (no counting metadata)"
        elif r["label_safe"]:
            safety = "safe"
        else:
            safety = f"label-unsafe: can change {r['label_risk_fraction']:.1%} of train counts"
        mark = " (chosen)" if r["preset"] == sel["chosen"] else ""
        trained = r.get("error_rate") is not None
        err = f"{r['error_rate']:.4f}" if trained else "not trained"
        if trained and r.get("error_se") is not None:
            err += f" ± {r['error_se']:.4f}"
        rows.append(
            [
                r["preset"] + mark,
                err,
                f"{r['valid_loss']:.4f}" if trained else "",
                f"{r['time']:.1f}s" if trained else "",
                safety,
            ]
        )
    return head, rows


def selection_text(sel: dict) -> str:
    why = f" Chosen: {sel['chosen']} ({sel['reason']})." if sel.get("reason") else ""
    return f"Rule: {sel['rule']}.{why}"


def dataset_rows(v: RunView) -> list[list[str]]:
    d = v.config["data"]
    rows = [
        ["folder", d["root"]],
        ["layout", d["layout"]],
        ["images", f"{d['n_images']} ({d['n_train']} train / {d['n_valid']} valid)"],
        ["class counts", ", ".join(f"{k}: {n}" for k, n in d["class_counts"].items())],
        ["fingerprint", d["fingerprint"][:16] + "…"],
    ]
    if d.get("imbalanced"):
        rows.append(["imbalance", f"largest/smallest = {d['imbalance_ratio']} (flagged)"])
    for k, val in (v.config.get("dataset_params") or {}).items():
        if k != "name":
            rows.append([f"gen: {k}", str(val)])
    return rows
