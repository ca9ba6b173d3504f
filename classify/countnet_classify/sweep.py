"""`countnet sweep`: the seed documents' controlled experiment. Runs that each change one
option from a baseline (or every combination, ``grid``), each repeated over seeds 0..N-1,
summarised as mean ± std over seeds.

A sweep folder holds sweep.json (what was asked), one ordinary run folder per (point,
seed) named ``<point>-seed<k>`` (so ``countnet report`` and ``predict`` take them as they
are), and the summaries: sweep.csv (one row per run), summary.csv (one row per point),
sweep.md, sweep_error.png (error against each swept option, ± std bars) and
sweep_curves.png (every point's learning curve, mean over seeds, band = ± std).

Rerunning a sweep skips its finished runs and resumes an interrupted one (the run's own
--resume); a finished run trained with other options is refused, not silently reused.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countnet.atomic import atomic_path, exclusive, write_text_atomic
from countnet.errors import CountnetError

# Light imports only (no torch, no fastai): the workflow builds its sweeps from this module
# every time it reads the Snakefile, in every job.
from countnet_classify import outputs
from countnet_classify.config import RunSpec
from countnet_classify.outputs import read_rows
from countnet_classify.screen import data_fingerprint, fingerprint_test_split

SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
SUMMARY_CSV = "summary.csv"
SWEEP_MD = "sweep.md"
ERROR_PNG = "sweep_error.png"
CURVES_PNG = "sweep_curves.png"
# Options a sweep sets itself (seed: --seeds; where runs go, what they are called, whether
# they resume), and those that cannot change a result (how a run reports): never swept.
SET_BY_SWEEP = ("seed", "name", "runs_dir", "resume", "force")
NOT_SWEPT = (*SET_BY_SWEEP, "data", "quiet", "note", "workers")
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
# counts never trained on, on those (regression.summarise)
MAE_COLUMNS = ("mae_seen", "mae_unseen")
LOG_SCALE = ("lr", "wd")  # swept over decades: plotted on a log axis


def sweepable() -> list[str]:
    """The RunSpec fields a --param may name."""
    return [f.name for f in dataclasses.fields(RunSpec) if f.name not in NOT_SWEPT]


@dataclass(frozen=True)
class Point:
    """One setting of the swept options: ``values`` in --param order."""

    values: tuple[tuple[str, Any], ...]

    @property
    def slug(self) -> str:
        """A folder-safe name: ``lr-0.001_bs-32``."""
        return "_".join(f"{k.replace('_', '-')}-{_slug_value(v)}" for k, v in self.values)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _slug_value(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+]+", "-", format_value(value)).strip("-") or "x"


@dataclass(frozen=True)
class Sweep:
    """What to run. ``base``: every other option, as RunSpec keyword arguments (data
    included); ``params``: (option, values) in order — the first value of each is the
    baseline when ``grid`` is off; ``out``: the sweep folder."""

    base: dict[str, Any]
    params: tuple[tuple[str, tuple[Any, ...]], ...]
    out: str
    seeds: int = 3
    grid: bool = False

    def __post_init__(self) -> None:
        if not self.params:
            raise CountnetError("give at least one --param NAME=V1,V2,...")
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise CountnetError(f"--seeds must be an integer >= 1, got {self.seeds!r}")
        for key in self.base:
            if key in SET_BY_SWEEP:
                raise CountnetError(f"a sweep sets --{_opt(key)} itself: leave it out")
        if "data" not in self.base:
            raise CountnetError("a sweep needs its DATA folder")
        RunSpec.from_dict(self.base)  # unknown or bad options, before the values
        names = [k for k, _ in self.params]
        for k in names:
            if k not in sweepable():
                raise CountnetError(
                    f"--param {_opt(k)}: not an option a sweep can change; choose one of "
                    f"{', '.join(_opt(s) for s in sweepable())}"
                )
        dup = sorted({k for k in names if names.count(k) > 1})
        if dup:
            raise CountnetError(f"--param {_opt(dup[0])} is given twice: list its values once")
        params = []
        for k, values in self.params:
            params.append((k, self._normalised(k, values)))
        object.__setattr__(self, "params", tuple(params))
        both = [k for k in names if k in self.base]
        if both:
            raise CountnetError(
                f"--{_opt(both[0])} is given both as a train option and as --param: the "
                "--param values are the ones that run (the first is the baseline); drop one"
            )
        slugs = [p.slug for p in self.points()]
        if len(set(slugs)) != len(slugs):
            raise CountnetError("two points of this sweep would share a run folder name")
        self.specs()  # every run's RunSpec built, so checked, before any run starts

    def _normalised(self, key: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """Each value as RunSpec takes it (so 1e-3 and 0.001 are one value), checked."""
        if not values:
            raise CountnetError(f"--param {_opt(key)} has no values: give V1,V2,...")
        out: list[Any] = []
        for v in values:
            try:
                spec = RunSpec(**{**self.base, key: v})
            except CountnetError as e:
                raise CountnetError(f"--param {_opt(key)}={format_value(v)}: {e}") from None
            norm = getattr(spec, key)
            if norm in out:
                raise CountnetError(
                    f"--param {_opt(key)} lists {format_value(norm)} twice: each value once"
                )
            out.append(norm)
        return tuple(out)

    def points(self) -> list[Point]:
        """Grid: every combination. Otherwise one change at a time: the baseline (each
        option's first value), then each other value of each option with the rest at
        the baseline — the seed documents' tables."""
        keys = [k for k, _ in self.params]
        if self.grid:
            combos = itertools.product(*(vals for _, vals in self.params))
            return [Point(tuple(zip(keys, c, strict=True))) for c in combos]
        baseline = tuple((k, vals[0]) for k, vals in self.params)
        points = [Point(baseline)]
        for i, (_, vals) in enumerate(self.params):
            for v in vals[1:]:
                changed = list(baseline)
                changed[i] = (keys[i], v)
                points.append(Point(tuple(changed)))
        return points

    def runs(self) -> list[tuple[Point, int, RunSpec]]:
        """(point, seed, its RunSpec) for every run, point by point."""
        out = []
        for point in self.points():
            for seed in range(self.seeds):
                spec = RunSpec(
                    **{**self.base, **point.as_dict()},
                    seed=seed,
                    name=f"{point.slug}-seed{seed}",
                    runs_dir=self.out,
                )
                out.append((point, seed, spec))
        return out

    def specs(self) -> list[RunSpec]:
        return [spec for _, _, spec in self.runs()]

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.params]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "params": [[k, list(v)] for k, v in self.params],
            "seeds": self.seeds,
            "grid": self.grid,
            "points": [p.slug for p in self.points()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], out: str | Path) -> Sweep:
        params = tuple((k, tuple(v)) for k, v in d["params"])
        swept = {k for k, _ in params}
        # a sweep.json written before options given both ways were refused: the swept
        # values were the ones that ran
        base = {k: v for k, v in d["base"].items() if k not in swept}
        return cls(base, params, str(out), int(d["seeds"]), bool(d["grid"]))


def _opt(field: str) -> str:
    return field.replace("_", "-")


def is_sweep(folder: Path | str) -> bool:
    return (Path(folder) / SWEEP_JSON).is_file()


def load_sweep(folder: Path | str) -> Sweep:
    path = Path(folder) / SWEEP_JSON
    try:
        return Sweep.from_dict(json.loads(path.read_text()), folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CountnetError(f"{path} is not a countnet sweep.json ({e})") from None


# -- running ------------------------------------------------------------------
def run_sweep(
    sweep: Sweep,
    *,
    say: Callable[[str], None] = print,
    train_fn: Callable[..., Any] | None = None,
) -> Path:
    """Run every (point, seed) not finished yet, then write the summaries. Returns the
    sweep folder. ``train_fn(spec, say=...)``: the trainer (countnet_classify.train.train)."""
    from countnet_classify.parallel.group import refuse_launcher

    refuse_launcher("countnet sweep")
    if train_fn is None:
        from countnet_classify.train import train as train_fn
    out = Path(sweep.out)
    if not Path(sweep.base["data"]).is_dir():
        raise CountnetError(f"data folder {sweep.base['data']} does not exist")
    if out.exists() and not out.is_dir():
        raise CountnetError(f"--out {out} is a file, not a sweep folder")
    if out.is_dir() and any(out.iterdir()) and not is_sweep(out):
        raise CountnetError(
            f"--out {out} exists and is not a countnet sweep (no {SWEEP_JSON}): choose "
            "another --out or --name"
        )
    runs = sweep.runs()
    check_runs([spec for _, _, spec in runs if not finished(spec)])
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "sweep"):
        if any(finished(spec) for _, _, spec in runs):
            data = data_fingerprint(sweep.base["data"])
            for _, _, spec in runs:  # a finished run with other options or data: not reused
                check_finished_run(spec, data)
        write_spec(sweep)
        for i, (point, seed, spec) in enumerate(runs, 1):
            head = f"[{i}/{len(runs)}] {point.label}, seed {seed}"
            if finished(spec):
                say(f"{head}: finished before, skipped")
                continue
            resume = outputs.partial_dir(spec.run_dir).is_dir()
            say(f"{head}: {'resuming' if resume else 'training'} -> {spec.run_dir}")
            train_fn(dataclasses.replace(spec, resume=resume), say=say)
            write_tables(sweep)  # after every run: an interrupted sweep shows what it has
        write_summaries(sweep)
    return out


def write_spec(sweep: Sweep) -> None:
    """sweep.json: what the sweep asked for (the report and a rerun read it)."""
    write_text_atomic(Path(sweep.out) / SWEEP_JSON, json.dumps(sweep.to_dict(), indent=2) + "\n")


def completed_config(spec: RunSpec) -> dict | None:
    """The run's config.yaml if the run finished, else None."""
    if not (spec.run_dir / outputs.CONFIG).is_file():
        return None
    cfg = outputs.read_config(spec.run_dir)
    return cfg if cfg.get("status") == "complete" else None


def finished(spec: RunSpec) -> bool:
    return completed_config(spec) is not None


def check_runs(specs: list[RunSpec], *, weights: bool = True) -> None:
    """Every run's options checked before the first starts (train.check_spec, once per
    distinct setting), and (``weights``) the ImageNet weights each pretrained arch needs,
    fetched into the cache now if they are missing: offline, one line instead of a sweep
    stopped midway."""
    from countnet_classify.prepare import check_spec
    from countnet_classify.weights import imagenet_state_dict

    seen = set()
    where = ("seed", "name", "runs_dir")  # what differs between runs of one setting
    for spec in specs:
        key = tuple(sorted((k, repr(v)) for k, v in spec.resume_key().items() if k not in where))
        if key not in seen:
            seen.add(key)
            check_spec(spec)
    if weights:
        for arch, file in sorted({(s.arch, s.weights or "") for s in specs if s.uses_pretrained}):
            imagenet_state_dict(arch, file or None)


def check_finished_run(spec: RunSpec, fingerprint: str | None = None) -> None:
    """Refuse a finished run folder of this name trained with other options, or (given
    the dataset's ``fingerprint``) on files that have changed since."""
    saved = completed_config(spec)
    if saved is None:
        return
    diff = spec.resume_diff(saved.get("resume_key", {}))
    if diff:
        raise CountnetError(
            f"run {spec.run_dir} was trained with other options ({', '.join(diff)}): this is "
            "another sweep's folder; choose another --out/--name or delete that run"
        )
    changed = fingerprint and saved.get("data", {}).get("fingerprint") != fingerprint
    if fingerprint and spec.task == "regression":  # its unseen-count MAE comes from test/
        test = fingerprint_test_split(Path(spec.data))
        changed = changed or saved["data"].get("test_fingerprint") != test
    if changed:
        raise CountnetError(
            f"run {spec.run_dir} was trained on other files (those under {spec.data} changed "
            "since): delete the sweep's runs to retrain them, or choose another --out/--name"
        )


# -- summaries ----------------------------------------------------------------
def result_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per finished run of the sweep (sweep.csv)."""
    rows = []
    for point, seed, spec in sweep.runs():
        cfg = completed_config(spec)
        if cfg is None:
            continue
        s = cfg["summary"]
        metrics = read_rows(spec.run_dir / "metrics.csv")
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


def _csv(keys: list[str], columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """Swept values as given (repr: 1e-07 stays 1e-07), results to 6 decimals."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, *columns])
    for r in rows:
        # .get: in a sweep of classifiers and regressions only the latter have MAE columns
        w.writerow([_value(r[k]) for k in keys] + [_result(r.get(c)) for c in columns])
    return buf.getvalue()


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return format_value(v)
    return repr(v) if isinstance(v, float) else str(v)


def _result(v: Any) -> str:
    if v is None:
        return ""
    return repr(round(v, 6)) if isinstance(v, float) else str(v)


def write_tables(sweep: Sweep) -> tuple[list[dict], list[dict]]:
    out = Path(sweep.out)
    rows = result_rows(sweep)
    summary = summary_rows(sweep, rows)
    maes = _mae_columns(rows)
    columns = (*RESULT_COLUMNS[:-1], *maes, RESULT_COLUMNS[-1])
    summary_columns = (*SUMMARY_COLUMNS, *(f"{c}_{x}" for c in maes for x in ("mean", "std")))
    write_text_atomic(out / SWEEP_CSV, _csv(sweep.keys, columns, rows))
    write_text_atomic(out / SUMMARY_CSV, _csv(sweep.keys, summary_columns, summary))
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
            outputs.format_time(r["train_seconds_mean"]),
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
    from countnet_classify.report import _md_table

    head, body = summary_table(sweep, summary)
    return "\n".join(
        [
            f"# Sweep {Path(sweep.out).name}",
            "",
            describe(sweep),
            "",
            _md_table(head, body),
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


# -- figures ------------------------------------------------------------------
def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_error(sweep: Sweep, summary: list[dict], path: Path) -> None:
    """Final error_rate (mean ± std bars) against each swept option: one panel per option;
    one-at-a-time shows the others at the baseline, a grid one line per combination of
    the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sweep.keys
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    baseline = {k: v[0] for k, v in sweep.params}
    for ax, key in zip(axes[0], keys, strict=True):
        values = list(dict(sweep.params)[key])
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[dict]] = {}
        for r in summary:
            if not sweep.grid and any(r[o] != baseline[o] for o in others):
                continue
            groups.setdefault(tuple(r[o] for o in others), []).append(r)
        numeric = _numeric(values)
        for combo, rs in groups.items():
            rs = sorted(rs, key=lambda r: values.index(r[key]))
            xs = [r[key] if numeric else values.index(r[key]) for r in rs]
            ys = [r["final_error_rate_mean"] for r in rs]
            es = [r["final_error_rate_std"] or 0.0 for r in rs]
            label = ", ".join(f"{o}={format_value(v)}" for o, v in zip(others, combo, strict=True))
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label=label or None)
        if numeric:
            # a 0 (wd=0) has no place on a log axis: linear then
            positive = all(v > 0 for v in values)
            if positive and (key in LOG_SCALE or max(values) / min(values) >= 20):
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(values)), [format_value(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel("final error_rate (mean ± std)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if sweep.grid and len(groups) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(sweep.out).name}: {sweep.seeds} seed(s) per point", fontsize=10)
    _save(path)


def plot_curves(sweep: Sweep, path: Path) -> None:
    """Validation error_rate per epoch for every point: mean over its seeds, band ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    by_point: dict[Point, list[list[float]]] = {}
    for point, _, spec in sweep.runs():  # once: each finished run's curve, by point
        if finished(spec):
            rows = read_rows(spec.run_dir / "metrics.csv")
            by_point.setdefault(point, []).append([float(m["error_rate"]) for m in rows])
    plt.figure(figsize=(7, 4.2))
    for point in sweep.points():
        curves = by_point.get(point)
        if not curves:
            continue
        n = min(len(c) for c in curves)
        arr = np.array([c[:n] for c in curves])
        mean, std = arr.mean(axis=0), arr.std(axis=0, ddof=1) if len(arr) > 1 else 0 * arr[0]
        epochs = np.arange(1, n + 1)
        (line,) = plt.plot(epochs, mean, marker=".", label=point.label)
        plt.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
    plt.xlabel("epoch")
    plt.ylabel("validation error_rate")
    plt.ylim(bottom=0)
    plt.grid(alpha=0.3)
    plt.legend(fontsize=7)
    plt.title(f"{Path(sweep.out).name}: mean over seeds, band = ± std", fontsize=10)
    _save(path)


def _save(path: Path) -> None:
    """The current figure to ``path``, atomically (a reader never sees half a PNG)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        plt.gcf().savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close("all")
