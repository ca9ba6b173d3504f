"""A sweep's results: sweep.csv (one row per finished run), summary.csv (one row per point:
mean and sample std over seeds), the table a person reads, and sweep.md."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from countnet.atomic import write_text_atomic
from countnet.tables import markdown_table, read_csv, write_csv
from countnet_classify import run_folder
from countnet_classify.experiments.sweep.checks import completed_config
from countnet_classify.experiments.sweep.figures import (
    CURVES_PNG,
    ERROR_PNG,
    plot_curves,
    plot_error,
)
from countnet_classify.experiments.sweep.spec import NOT_SWEPT, Sweep, format_value
from countnet_classify.spec import RunSpec

SWEEP_CSV = "sweep.csv"
SUMMARY_CSV = "summary.csv"
SWEEP_MD = "sweep.md"
RESULT_COLUMNS = (
    "seed",
    "final_error_rate",
    "best_error_rate",
    "best_epoch",
    "final_valid_loss",
    "train_seconds",
    "run",
)
# --task regression runs add MAE on the seen counts (validation) and, with a test/ split of
# counts never trained on, on those (evaluate.summarise)
MAE_COLUMNS = ("mae_seen", "mae_unseen")


def result_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per finished run of the sweep (sweep.csv)."""
    rows = []
    for point, seed, spec in sweep.runs():
        cfg = completed_config(spec)
        if cfg is None:
            continue
        s = cfg["summary"]
        metrics = read_csv(spec.run_dir / "metrics.csv")
        rows.append(
            {
                **point.as_dict(),
                "seed": seed,
                "final_error_rate": float(s["final_error_rate"]),
                "best_error_rate": float(s["best_error_rate"]),
                "best_epoch": int(s["best_epoch"]),
                "final_valid_loss": float(metrics[-1]["valid_loss"]),
                "train_seconds": float(s["train_seconds"]),
                "run": spec.run_dir.name,
                **_maes(s.get("regression")),
            }
        )
    return rows


def _maes(reg: dict | None) -> dict[str, float]:
    if not reg:
        return {}
    groups = {"mae_seen": reg.get("seen"), "mae_unseen": reg.get("unseen")}
    return {k: float(g["mae"]) for k, g in groups.items() if g}


def _mae_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The MAE columns some run of ``rows`` has (none for classifiers)."""
    return tuple(c for c in MAE_COLUMNS if any(c in r for r in rows))


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single run)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summary_rows(sweep: Sweep, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point with at least one finished run (summary.csv)."""
    out = []
    for point in sweep.points():
        mine = [r for r in rows if all(r[k] == v for k, v in point.values)]
        if not mine:
            continue
        row: dict[str, Any] = {**point.as_dict(), "n": len(mine)}
        for col in ("final_error_rate", "best_error_rate", *_mae_columns(mine)):
            values = [r[col] for r in mine if col in r]
            m, s = mean_std(values)
            row[f"{col}_mean"], row[f"{col}_std"] = m, s
        row["train_seconds_mean"] = statistics.fmean(r["train_seconds"] for r in mine)
        out.append(row)
    return out


SUMMARY_COLUMNS = (
    "n",
    "final_error_rate_mean",
    "final_error_rate_std",
    "best_error_rate_mean",
    "best_error_rate_std",
    "train_seconds_mean",
)


def _csv_rows(
    keys: list[str], columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> Iterator[list[str]]:
    """Swept values as given (repr: 1e-07 stays 1e-07), results to 6 decimals."""
    for r in rows:
        # .get: in a sweep of classifiers and regressions only the latter have MAE columns
        yield [_value(r[k]) for k in keys] + [_result(r.get(c)) for c in columns]


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return format_value(v)
    return repr(v) if isinstance(v, float) else str(v)


def _result(v: Any) -> str:
    if v is None:
        return ""
    return repr(round(v, 6)) if isinstance(v, float) else str(v)


def write_tables(sweep: Sweep) -> tuple[list[dict], list[dict]]:
    """sweep.csv and summary.csv from the runs finished so far; returns their rows."""
    out = Path(sweep.out)
    rows = result_rows(sweep)
    summary = summary_rows(sweep, rows)
    maes = _mae_columns(rows)
    columns = (*RESULT_COLUMNS[:-1], *maes, RESULT_COLUMNS[-1])
    summary_columns = (*SUMMARY_COLUMNS, *(f"{c}_{x}" for c in maes for x in ("mean", "std")))
    write_csv(out / SWEEP_CSV, [*sweep.keys, *columns], _csv_rows(sweep.keys, columns, rows))
    header = [*sweep.keys, *summary_columns]
    write_csv(out / SUMMARY_CSV, header, _csv_rows(sweep.keys, summary_columns, summary))
    return rows, summary


def write_summaries(sweep: Sweep) -> None:
    """sweep.csv, summary.csv, the two figures and sweep.md."""
    rows, summary = write_tables(sweep)
    if not summary:
        return
    out = Path(sweep.out)
    plot_error(sweep, summary, out / ERROR_PNG)
    plot_curves(sweep, out / CURVES_PNG)
    write_text_atomic(out / SWEEP_MD, render_markdown(sweep, summary))


def pm(mean: float, std: float | None, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def summary_table(sweep: Sweep, summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The summary as a person reads it: mean ± std (sample std over seeds)."""
    maes = [c for c in MAE_COLUMNS if any(f"{c}_mean" in r for r in summary)]
    mae_heads = [c.replace("mae_", "MAE ") for c in maes]
    head = [*sweep.keys, "runs", "final error_rate", "best error_rate", *mae_heads,
            "train time (mean)"]  # fmt: skip
    body = [
        [
            *(format_value(r[k]) for k in sweep.keys),
            str(r["n"]),
            pm(r["final_error_rate_mean"], r["final_error_rate_std"]),
            pm(r["best_error_rate_mean"], r["best_error_rate_std"]),
            *(pm(r[f"{c}_mean"], r[f"{c}_std"], 3) if f"{c}_mean" in r else "—" for c in maes),
            run_folder.format_time(r["train_seconds_mean"]),
        ]
        for r in summary
    ]
    return head, body


def describe(sweep: Sweep) -> str:
    """One paragraph: what changes, around what, over how many seeds."""
    if len(sweep.params) == 1:
        ((key, values),) = sweep.params
        what = f"{key} = {', '.join(format_value(v) for v in values)}"
    elif sweep.grid:
        what = "every combination of " + ", ".join(sweep.keys)
    else:
        what = (
            "one option at a time from the baseline ("
            + ", ".join(f"{k}={format_value(v[0])}" for k, v in sweep.params)
            + ")"
        )
    defaults = RunSpec(data=".")
    others = ", ".join(
        f"{k}={format_value(v)}"
        for k, v in sweep.base.items()
        if k not in NOT_SWEPT and v != getattr(defaults, k)
    )
    return (
        f"Sweep over {what} on {sweep.base['data']}, seeds 0..{sweep.seeds - 1} per point "
        f"(mean ± sample std over seeds). Other options: {others or 'countnet train defaults'}."
    )


def render_markdown(sweep: Sweep, summary: list[dict]) -> str:
    head, body = summary_table(sweep, summary)
    return "\n".join(
        [
            f"# Sweep {Path(sweep.out).name}",
            "",
            describe(sweep),
            "",
            markdown_table(head, body),
            "",
            f"![final error_rate against each swept option]({ERROR_PNG})",
            "",
            f"![learning curves, mean over seeds, band = ± std]({CURVES_PNG})",
            "",
            f"One row per run: {SWEEP_CSV}; per point: {SUMMARY_CSV}; each run's folder is "
            "`<point>-seed<k>/`.",
            "",
        ]
    )
