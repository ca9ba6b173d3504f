"""What a sweep runs: its options and values (Sweep), one setting of them (Point), every
run's RunSpec, and sweep.json, which records them in the sweep folder.

Light imports only (no torch, no fastai): the workflow builds its sweeps from this module
every time it reads the Snakefile, in every job."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countnet.atomic import write_text_atomic
from countnet.errors import CountnetError
from countnet_classify.spec import RunSpec

SWEEP_JSON = "sweep.json"
# Options a sweep sets itself (seed: --seeds; where runs go, what they are called, whether
# they resume), and those that cannot change a result (how a run reports): never swept.
SET_BY_SWEEP = ("seed", "name", "runs_dir", "resume", "force")
NOT_SWEPT = (*SET_BY_SWEEP, "data", "quiet", "note", "workers")


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
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise CountnetError(f"{path} is not a countnet sweep.json ({e})") from None


def write_spec(sweep: Sweep) -> None:
    """sweep.json: what the sweep asked for (the report and a rerun read it)."""
    write_text_atomic(Path(sweep.out) / SWEEP_JSON, json.dumps(sweep.to_dict(), indent=2) + "\n")
