"""Beyond the training set: each run scored on shifted sets (`countnet evaluate`, the
workflow's probes) as one matrix, and a classical counter (`countnet baseline`) beside the
CNN on every counting set — where a ten-line counter does as well, and where it fails."""

from __future__ import annotations

from pathlib import Path

from countnet_classify.report.blocks import Block, Heading, Para, Shaded, Table
from countnet_classify.report.views import RunView, Score, chance_error

# generator parameters that change what an image looks like (not how many, or which split)
IGNORED_PARAMS = ("name", "seed", "per_class", "valid_pct", "holdout")
MATRIX_INTRO = (
    "Each trained run scored on sets that differ from its training set in one generator "
    "parameter (named under the set), with weights only, fp32, the run's preprocessing "
    "(`countnet evaluate`). Each cell: the error rate (MAE of the count for a regression "
    "run) and, in brackets, chance's: always answering the most common class (for "
    "regression, the middle of the counts trained on). Green: far below chance; red: at or "
    "above it. A class the model never saw is always an error."
)
CLASSICAL_INTRO = (
    "A classical counter fitted on each set's training split and scored on its validation "
    "split (`countnet baseline`: threshold, connected components with shape filters, and "
    "blobs split by area; no learning), beside the CNN's error on the same set."
)
CLASSICAL_COLUMNS = (
    "set", "what it is", "images", "classical error_rate", "classical MAE", "CNN error_rate",
    "chance",
)  # fmt: skip
NEAR_PERFECT = 0.02  # a classical error at most this: the set needs no learning
FAILS = 0.3  # at least this: the classical counter fails, the CNN's ground


def section(views: list[RunView], scores: list[Score]) -> list[Block]:
    """The two tables (each only where there is something to show)."""
    blocks: list[Block] = []
    evals = [s for s in scores if not s.classical]
    if rows := matrix_rows(views, evals):
        head = ["run", "own validation", *probe_names(views, evals)]
        blocks += [Heading(2, "Beyond the training set"), Para.of(MATRIX_INTRO)]
        blocks += [Table(head, rows)]
    classical = [s for s in scores if s.classical]
    if rows := classical_rows(views, evals, classical):
        blocks += [Heading(2, "A classical counter beside the CNN"), Para.of(CLASSICAL_INTRO)]
        blocks += [Table(CLASSICAL_COLUMNS, rows), Para.of(verdict_text(rows))]
    return blocks


def probe_names(views: list[RunView], evals: list[Score]) -> list[str]:
    """The matrix's columns: every set a reported run was scored on, in first-seen order."""
    runs = {v.name for v in views}
    return list(dict.fromkeys(s.set for s in evals if s.run in runs))


def matrix_rows(views: list[RunView], evals: list[Score]) -> list[list[str | Shaded]]:
    names = probe_names(views, evals)
    rows = []
    for v in views:
        mine = {s.set: s for s in evals if s.run == v.name}
        if not mine:
            continue
        cells = [cell(*own_figures(v))]
        cells += [cell(*probe_figures(v, mine[n])) if n in mine else "—" for n in names]
        rows.append([v.name, *cells])
    return rows


def cell(error: float, chance: float, shift: str = "") -> Shaded:
    text = f"{error:.3f} ({chance:.2f})" + (f" · {shift}" if shift else "")
    return Shaded(text, error / chance if chance > 0 else float(error > 0))


def own_figures(v: RunView) -> tuple[float, float]:
    """The run's final error on its own validation split (a regression run: its MAE)."""
    last = v.metrics[-1] if v.metrics else {}
    if is_regression(v):
        counts = {int(k): n for k, n in v.config["data"]["valid_class_counts"].items()}
        return float(last["mae"]), regression_chance(v, counts)
    return float(v.config["summary"]["final_error_rate"]), chance_error(v.config)


def probe_figures(v: RunView, s: Score) -> tuple[float, float, str]:
    shift = shift_text(v.config.get("dataset_params") or {}, s.dataset_params)
    counts = s.class_counts()
    if is_regression(v):
        return (
            float(s.metrics["mae"]),
            regression_chance(v, {int(k): n for k, n in counts.items()}),
            shift,
        )
    known = [n for c, n in counts.items() if c in set(v.config["data"]["classes"])]
    total = sum(counts.values())
    chance = 1 - max(known, default=0) / total if total else 1.0
    return float(s.metrics["error_rate"]), chance, shift


def is_regression(v: RunView) -> bool:
    return v.config["resolved"].get("task") == "regression"


def regression_chance(v: RunView, counts: dict[int, int]) -> float:
    """MAE of always answering the middle of the counts the run trained on."""
    trained = [int(c) for c in v.config["data"]["classes"]]
    middle = (min(trained) + max(trained)) / 2
    total = sum(counts.values())
    return sum(n * abs(c - middle) for c, n in counts.items()) / total if total else 0.0


def shift_text(trained: dict, probe: dict) -> str:
    """How a probe set's generator parameters differ from the training set's:
    "radius 3 → 2"; empty when either set has none (not a countnet set)."""
    if not trained or not probe:
        return ""
    keys = [k for k in {**trained, **probe} if k not in IGNORED_PARAMS]
    return ", ".join(
        f"{k} {_value(trained.get(k))} → {_value(probe.get(k))}"
        for k in keys
        if trained.get(k) != probe.get(k)
    )


def _value(x: object) -> str:
    if isinstance(x, list):
        return ",".join(map(str, x))
    return "—" if x is None else str(x)


def classical_rows(
    views: list[RunView], evals: list[Score], classical: list[Score]
) -> list[list[str]]:
    """One row per set the classical counter scored: what the set is to the runs, and the
    CNN's error there (a run trained on it, or scored on it)."""
    rows = []
    for b in classical:
        trained_on = [v for v in views if Path(v.config["data"]["root"]).name == b.folder_name]
        scored = [e for e in evals if e.folder_name == b.folder_name]
        what, cnn, chance = _describe(trained_on, scored, views)
        mae = b.metrics.get("mae")
        rows.append([
            b.set, what, str(b.metrics.get("images", "")), f"{b.metrics['error_rate']:.4f}",
            "—" if mae is None else f"{mae:.3f}", cnn, chance,
        ])  # fmt: skip
    return rows


def _describe(trained_on: list[RunView], scored: list[Score], views: list[RunView]):
    by_name = {v.name: v for v in views}
    if trained_on:
        v = trained_on[0]
        names = ", ".join(t.name for t in trained_on)
        if is_regression(v):
            return f"trained on by {names}", "— (regression)", "—"
        s = v.config["summary"]
        return (
            f"trained on by {names}",
            f"{s['final_error_rate']:.4f}",
            f"{chance_error(v.config):.2f}",
        )
    for e in scored:
        v = by_name.get(e.run)
        if v is not None and not is_regression(v):
            error, chance, shift = probe_figures(v, e)
            return f"probe of {v.name}: {shift or e.set}", f"{error:.4f}", f"{chance:.2f}"
    return "scored alone", "—", "—"


def verdict_text(rows: list[list[str]]) -> str:
    """Plain words: where the classical counter is as good, and where the CNN earns its keep."""
    easy = [r[0] for r in rows if float(r[3]) <= NEAR_PERFECT]
    hard = [r for r in rows if float(r[3]) >= FAILS]
    parts = []
    if easy:
        parts.append(
            f"The classical counter is near perfect (error ≤ {NEAR_PERFECT}) on "
            f"{', '.join(easy)}: there a CNN shows nothing a few lines of scikit-image do not."
        )
    if hard:
        where = "; ".join(f"{r[0]} (classical {r[3]}, CNN {r[5]})" for r in hard)
        parts.append(f"It fails (error ≥ {FAILS}) on {where}: the CNN's value is shown there.")
    if not hard:
        parts.append(f"On none of these sets does the classical counter fail (error ≥ {FAILS}).")
    return " ".join(parts)
