"""`countnet report`: one page over finished runs — a summary table across runs, then per
run the blog's per-epoch table, the LR finder, learning curves, confusion matrix, top
losses, sample images, the transform-selection table, dataset parameters and skipped
files. Writes report.md (images linked) and report.html (images embedded: one file that
reads offline)."""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countnet.atomic import write_text_atomic
from countnet.errors import CountnetError
from countnet_classify import evaluate as regression  # its report rows; rename with the body
from countnet_classify import pixels
from countnet_classify.cost import COST_JSON, DISPLAY_COLUMNS, format_row
from countnet_classify.outputs import CONFIG, format_time, read_config, read_rows

BLOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "error_rate", "time")
FIGURES = (
    ("lr_find.png", "LR finder"),
    ("losses.png", "Learning curves"),
    ("confusion_matrix.png", "Confusion matrix"),
    ("top_losses.png", "Top losses"),
    ("scatter.png", "Predicted vs true count"),  # --task regression
    ("residuals.png", "Residual by count"),
    ("batch.png", "Sample training images (augmented)"),
)
SUMMARY_COLUMNS = (
    "run",
    "dataset",
    "arch",
    "head",
    "pretrained",
    "params",
    "MACs/image",
    "latency (bs 1)",
    "transforms",
    "epochs",
    "final error_rate",
    "best error_rate",
    "wall time",
    "device",
)


@dataclass
class RunView:
    path: Path
    config: dict[str, Any]
    metrics: list[dict]
    skipped: list[str]
    selection: dict | None
    cost: dict | None = None  # cost.json (runs from before it have none)

    @property
    def name(self) -> str:
        return self.config["resolved"]["name"]

    def pretrained_text(self) -> str:
        res = self.config["resolved"]
        if res["pretrained"]:
            return "yes (ImageNet)"
        return "no: trained from scratch"

    def head_text(self) -> str:
        """The classifier head and its dropout (runs from before --head: fastai's)."""
        res, run = self.config["resolved"], self.config["run"]
        if run["arch"] == "lenet":
            return "LeNet's own"
        head = res.get("head") or run.get("head") or "fastai"
        dropout = res.get("head_dropout", run.get("head_dropout"))
        return head if dropout is None else f"{head} (dropout {dropout:g})"

    def arch_text(self) -> str:
        """The arch, and the task when it is not classification: a regression run's
        error_rate is of its rounded count."""
        res = self.config["resolved"]
        arch = self.config["run"]["arch"]
        if res.get("task") == "regression":
            return f"{arch} (regression, {res.get('loss')} loss)"
        return arch

    def cost_cells(self) -> list[str]:
        """Parameters, MACs per image and batch-1 latency (fp32, on the run's device)."""
        c = self.cost
        if not c:
            return ["—", "—", "—"]
        lat = c.get("latency_ms")
        return [
            f"{c['params'] / 1e6:.2f} M",
            f"{c['macs'] / 1e9:.3f} G",
            "—" if lat is None else f"{lat:.1f} ms ({c['device']})",
        ]

    def summary_row(self) -> list[str]:
        res, s = self.config["resolved"], self.config["summary"]
        data = self.config["data"]
        return [
            self.name,
            Path(data["root"]).name,
            self.arch_text(),
            self.head_text(),
            self.pretrained_text(),
            *self.cost_cells(),
            res["transforms"],
            str(s["epochs"]),
            f"{s['final_error_rate']:.4f}",
            f"{s['best_error_rate']:.4f} (epoch {s['best_epoch']})",
            format_time(s["wall_seconds"]),
            self.device_text(),
        ]

    def device_text(self) -> str:
        """The device, and the processes of a data-parallel run ("cuda x 4")."""
        res = self.config["resolved"]
        n = res.get("processes", 1)
        return f"{res['device']} x {n}" if n > 1 else res["device"]


ANSWER_COLUMNS = (
    "run",
    "dataset",
    "learned?",
    "final error_rate",
    "chance",
    "first reached best",
    "training time",
)


def chance_error(config: dict) -> float:
    """The error of always answering the most common validation class."""
    d = config["data"]
    valid = d.get("valid_class_counts")
    if valid:
        return 1 - max(valid.values()) / sum(valid.values())
    return 1 - 1 / len(d["classes"])


def verdict(final: float, chance: float, n_valid: int) -> str:
    """Plain words for a final error against chance: 'at chance' when within two binomial
    standard errors of it (the run learned nothing we can measure)."""
    se = (chance * (1 - chance) / max(n_valid, 1)) ** 0.5
    if final >= chance - 2 * se:
        return "no: at chance"
    if final <= 0.05 * max(chance, 1e-9):
        return "yes"
    return "partly"


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


ANSWER_INTRO = (
    "Can a CNN count? Each run's final validation error against chance (always answering "
    "the most common class); 'at chance' means within two standard errors of it."
)


def load_run(path: Path | str) -> RunView:
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise CountnetError(f"{path} is not a countnet run folder (no {CONFIG})")
    cfg = read_config(path)
    if cfg.get("status") != "complete":
        raise CountnetError(f"run {path} did not finish (status: {cfg.get('status')})")
    skipped = (
        (path / "skipped.txt").read_text().splitlines() if (path / "skipped.txt").is_file() else []
    )
    sel, cost = path / "transforms.json", path / COST_JSON
    return RunView(
        path,
        cfg,
        read_rows(path / "metrics.csv"),
        skipped,
        json.loads(sel.read_text()) if sel.is_file() else None,
        _read_cost(cost),
    )


def _read_cost(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        cost = json.loads(path.read_text())
        int(cost["params"]), int(cost["macs"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise CountnetError(
            f"{path} is not a countnet cost.json: delete it (the report then shows dashes)"
        ) from None
    return cost


def _blog_columns(v: RunView) -> tuple[str, ...]:
    """The blog's columns; a regression run's error_rate (of the rounded count) is followed
    by its MAE and RMSE."""
    if v.metrics and "mae" in v.metrics[0]:
        return (*BLOG_COLUMNS[:-1], "mae", "rmse", "time")
    return BLOG_COLUMNS


def _blog_rows(v: RunView) -> list[list[str]]:
    return [
        [format_time(float(r[c])) if c == "time" else r[c] for c in _blog_columns(v)]
        for r in v.metrics
    ]


def _selection_rows(sel: dict) -> tuple[list[str], list[list[str]]]:
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


def _selection_text(sel: dict) -> str:
    why = f" Chosen: {sel['chosen']} ({sel['reason']})." if sel.get("reason") else ""
    return f"Rule: {sel['rule']}.{why}"


def _dataset_rows(v: RunView) -> list[list[str]]:
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


def _lr_text(v: RunView) -> str:
    lr = v.config["lr"]
    sugg = ", ".join(f"{k} {val:.2e}" for k, val in lr.get("suggestions", {}).items())
    return f"Chosen learning rate: {lr['used']:.3g} ({lr['source']})" + (
        f"; suggestions: {sugg}" if sugg else ""
    )


# -- markdown -------------------------------------------------------------------
def _md_table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # One backslash: "\\|" is a literal pipe in a GitHub/CommonMark table cell.
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


COST_INTRO = (
    "Each run's network as `countnet cost` measures it (cost.json): parameters (in "
    "parentheses, what a frozen fine_tune phase trains), multiply-accumulates per image, "
    "weights on disk, fp32 latency at batch 1 and throughput, on the run's device."
)


def _cost_rows(views: list[RunView]) -> list[list[str]]:
    """One row per run: its cost.json (runs from before it have none: dashes)."""
    return [
        [v.name, *(format_row(v.cost) if v.cost else [v.config["run"]["arch"], *["—"] * 10])]
        for v in views
    ]


@dataclass
class SweepView:
    """A `countnet sweep` folder: its spec and the per-point summary of its finished runs."""

    path: Path
    sweep: Any  # countnet_classify.sweep.Sweep
    summary: list[dict]

    @property
    def name(self) -> str:
        return self.path.name

    def table(self) -> tuple[list[str], list[list[str]]]:
        from countnet_classify.sweep import summary_table

        return summary_table(self.sweep, self.summary)

    def text(self) -> str:
        from countnet_classify.sweep import describe

        return describe(self.sweep)

    def figures(self) -> list[tuple[Path, str]]:
        from countnet_classify.sweep import CURVES_PNG, ERROR_PNG

        figs = ((ERROR_PNG, "Final error_rate against each swept option (± std)"),
                (CURVES_PNG, "Learning curves, mean over seeds (band = ± std)"))  # fmt: skip
        return [(self.path / f, t) for f, t in figs if (self.path / f).is_file()]


NO_SWEEP_RUNS = "No finished run yet: rerun the sweep's command to continue it."


def load_sweep_view(path: Path | str) -> SweepView:
    from countnet_classify.sweep import load_sweep, result_rows, summary_rows

    sweep = load_sweep(path)
    return SweepView(Path(path), sweep, summary_rows(sweep, result_rows(sweep)))


def render_markdown(
    views: list[RunView], out_dir: Path, sweeps: list[SweepView] | tuple = ()
) -> str:
    parts = ["# countnet report", ""]
    if views:
        parts += [
            ANSWER_INTRO,
            "",
            _md_table(ANSWER_COLUMNS, [answer_row(v) for v in views]),
            "",
            "## Summary",
            "",
            _md_table(SUMMARY_COLUMNS, [v.summary_row() for v in views]),
            "",
            "## Model cost",
            "",
            COST_INTRO,
            "",
            _md_table(("run", *DISPLAY_COLUMNS), _cost_rows(views)),
            "",
        ]
        if pixel_rows := pixels.rows(views):
            parts += ["## Circles or pixels?", "", pixels.INTRO, ""]
            parts += [_md_table(pixels.COLUMNS, pixel_rows), ""]
        if unseen_rows := regression.unseen_rows(views):
            parts += ["## Counts never seen", "", regression.UNSEEN_INTRO, ""]
            parts += [_md_table(regression.UNSEEN_COLUMNS, unseen_rows), ""]
    for sv in sweeps:
        table = _md_table(*sv.table()) if sv.summary else NO_SWEEP_RUNS
        parts += [f"## Sweep {sv.name}", "", sv.text(), "", table, ""]
        for path, title in sv.figures():
            parts += [f"![{title}]({os.path.relpath(path, out_dir)})", ""]
    for v in views:
        parts += [f"## {v.name}", ""]
        note = v.config["run"].get("note")
        if note:
            parts += [f"> {note}", ""]
        parts += [
            f"Pretrained: {v.pretrained_text()}. Head: {v.head_text()}. Schedule: "
            f"{v.config['resolved']['schedule']}. Transforms: "
            f"{v.config['resolved']['transforms']}.",
            "",
            "### Per-epoch results",
            "",
            _md_table(_blog_columns(v), _blog_rows(v)),
            "",
            _lr_text(v),
            "",
        ]
        if s := regression.summary_of(v.config):
            parts += ["### Counts: seen and unseen", ""]
            parts += [_md_table(regression.GROUP_COLUMNS, regression.group_rows(s)), ""]
            parts += [_md_table(regression.COUNT_COLUMNS, regression.count_rows(s)), ""]
        for fname, title in FIGURES:
            if (v.path / fname).is_file():
                rel = os.path.relpath(v.path / fname, out_dir)
                parts += [f"### {title}", "", f"![{title}]({rel})", ""]
        if v.selection:
            parts += [
                "### Transform selection",
                "",
                _md_table(*_selection_rows(v.selection)),
                "",
                _selection_text(v.selection),
                "",
            ]
        parts += ["### Dataset", "", _md_table(["", ""], _dataset_rows(v)), ""]
        parts += ["### Skipped files", ""]
        parts += ([f"- `{s}`" for s in v.skipped[:50]] or ["none"]) + [""]
        if len(v.skipped) > 50:
            parts += [f"... and {len(v.skipped) - 50} more (see skipped.txt)", ""]
    return "\n".join(parts)


# -- html -----------------------------------------------------------------------
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;
padding:3px 8px;text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{
text-align:left}img{max-width:100%;border:1px solid #eee}.figs{display:flex;flex-wrap:wrap;
gap:1em}.figs figure{margin:0;flex:1 1 45%}blockquote{border-left:4px solid #e8a33d;
margin:1em 0;padding:.3em 1em;background:#fff8ec}.unsafe{color:#b00}"""


def _h_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='unsafe'>{html.escape(str(c))}</td>"
            if "label-unsafe" in str(c)
            else f"<td>{html.escape(str(c))}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'></figure>"
    )


def render_html(views: list[RunView], sweeps: list[SweepView] | tuple = ()) -> str:
    p = [
        "<!doctype html><html><head><meta charset='utf-8'><title>countnet report</title>",
        f"<style>{CSS}</style></head><body><h1>countnet report</h1>",
    ]
    if views:
        p += [
            f"<p>{html.escape(ANSWER_INTRO)}</p>",
            _h_table(ANSWER_COLUMNS, [answer_row(v) for v in views]),
            "<h2>Summary</h2>",
            _h_table(SUMMARY_COLUMNS, [v.summary_row() for v in views]),
            "<h2>Model cost</h2>",
            f"<p>{html.escape(COST_INTRO)}</p>",
            _h_table(("run", *DISPLAY_COLUMNS), _cost_rows(views)),
        ]
        if pixel_rows := pixels.rows(views):
            p += ["<h2>Circles or pixels?</h2>", f"<p>{html.escape(pixels.INTRO)}</p>"]
            p.append(_h_table(pixels.COLUMNS, pixel_rows))
        if unseen_rows := regression.unseen_rows(views):
            p += ["<h2>Counts never seen</h2>", f"<p>{html.escape(regression.UNSEEN_INTRO)}</p>"]
            p.append(_h_table(regression.UNSEEN_COLUMNS, unseen_rows))
    for sv in sweeps:
        p += [
            f"<h2 id='{html.escape(sv.name)}'>Sweep {html.escape(sv.name)}</h2>",
            f"<p>{html.escape(sv.text())}</p>",
            _h_table(*sv.table()) if sv.summary else f"<p>{NO_SWEEP_RUNS}</p>",
            "<div class='figs'>",
            *(_img(path, title) for path, title in sv.figures()),
            "</div>",
        ]
    for v in views:
        p.append(f"<h2 id='{html.escape(v.name)}'>{html.escape(v.name)}</h2>")
        note = v.config["run"].get("note")
        if note:
            p.append(f"<blockquote>{html.escape(note)}</blockquote>")
        p.append(
            f"<p>Pretrained: <b>{html.escape(v.pretrained_text())}</b>. "
            f"Head: {html.escape(v.head_text())}. Schedule: "
            f"{html.escape(v.config['resolved']['schedule'])}. Transforms: "
            f"{html.escape(v.config['resolved']['transforms'])}.</p>"
        )
        p += [
            "<h3>Per-epoch results</h3>",
            _h_table(_blog_columns(v), _blog_rows(v)),
            f"<p>{html.escape(_lr_text(v))}</p>",
        ]
        if s := regression.summary_of(v.config):
            p += ["<h3>Counts: seen and unseen</h3>"]
            p += [_h_table(regression.GROUP_COLUMNS, regression.group_rows(s))]
            p += [_h_table(regression.COUNT_COLUMNS, regression.count_rows(s))]
        p.append("<div class='figs'>")
        p += [_img(v.path / f, t) for f, t in FIGURES if (v.path / f).is_file()]
        p.append("</div>")
        if v.selection:
            p += [
                "<h3>Transform selection</h3>",
                _h_table(*_selection_rows(v.selection)),
                f"<p>{html.escape(_selection_text(v.selection))}</p>",
            ]
        p += ["<h3>Dataset</h3>", _h_table(["", ""], _dataset_rows(v)), "<h3>Skipped files</h3>"]
        if v.skipped:
            items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in v.skipped[:50])
            more = f"<p>... and {len(v.skipped) - 50} more</p>" if len(v.skipped) > 50 else ""
            p.append(f"<ul>{items}</ul>{more}")
        else:
            p.append("<p>none</p>")
    p.append("</body></html>")
    return "\n".join(p)


def write_report(runs: list[Path | str], out_dir: Path | str) -> tuple[Path, Path]:
    """Write report.md and report.html for ``runs`` into ``out_dir``: run folders, and sweep
    folders (`countnet sweep`), which get a section each."""
    from countnet_classify.sweep import is_sweep

    if not runs:
        raise CountnetError("give at least one run or sweep folder")
    sweeps = [load_sweep_view(r) for r in runs if is_sweep(r)]
    views = [load_run(r) for r in runs if not is_sweep(r)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, render_markdown(views, out, sweeps))
    write_text_atomic(page, render_html(views, sweeps))
    return md, page
