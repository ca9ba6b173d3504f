"""What the report reads: a finished run folder (RunView) or a sweep folder (SweepView), and
the plain words each row says about a run (its chance error, the verdict against it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countnet.errors import CountnetError
from countnet.tables import read_csv
from countnet_classify.cost import COST_JSON
from countnet_classify.experiments.sweep.figures import CURVES_PNG, ERROR_PNG
from countnet_classify.experiments.sweep.results import (
    describe,
    result_rows,
    summary_rows,
    summary_table,
)
from countnet_classify.experiments.sweep.spec import Sweep, load_sweep
from countnet_classify.run_folder import CONFIG, format_time, read_config


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

    def summary_row(self) -> list[str]:
        res, s = self.config["resolved"], self.config["summary"]
        data = self.config["data"]
        return [
            self.name,
            Path(data["root"]).name,
            self.arch_text(),
            self.head_text(),
            self.pretrained_text(),
            res["transforms"],
            str(s["epochs"]),
            f"{s['final_error_rate']:.4f}",
            f"{s['best_error_rate']:.4f} (epoch {s['best_epoch']})",
            format_time(s["wall_seconds"]),
            self.device_text(),
        ]

    def device_text(self) -> str:
        """The device, the processes of a data-parallel run ("cuda x 4"), the precision and,
        on a CPU, its class of instructions: "cpu (fp32, AVX2)", "cpu (bf16, AMX)"."""
        res = self.config["resolved"]
        n = res.get("processes", 1)
        device = f"{res['device']} x {n}" if n > 1 else res["device"]
        detail = [res["precision"]] if res.get("precision") else []
        if res["device"] == "cpu" and res.get("cpu"):  # runs from before it: no cpu record
            detail.append(res["cpu"]["instructions"])
        return f"{device} ({', '.join(detail)})" if detail else device

    @property
    def counting(self) -> bool:
        """Trained on a counting set: one countnet gen wrote (dataset.json), or counts as
        numbers (--task regression)."""
        return bool(self.config.get("dataset_params")) or (
            self.config["resolved"].get("task") == "regression"
        )


def chance_error(config: dict) -> float:
    """The error of always answering the most common validation class."""
    d = config["data"]
    valid = d.get("valid_class_counts")
    if valid:
        return 1 - max(valid.values()) / sum(valid.values())
    return 1 - 1 / len(d["classes"])


# The "learned?" rule, here only: the report prints LEARNED_RULE under its table.
AT_CHANCE_SE = 2  # within this many binomial standard errors of chance: at chance
LEARNED_FRACTION = 0.1  # "yes": a final error at most this fraction of chance's
LEARNED_RULE = (
    "learned?: 'no: at chance' when the final error is within "
    f"{AT_CHANCE_SE} standard errors of chance; 'yes' when it is at most "
    f"{LEARNED_FRACTION:.0%} of chance (it removed {1 - LEARNED_FRACTION:.0%} or more of the "
    "errors of always answering the most common class, whatever the number of classes); "
    "'partly' in between. In brackets: the final error as a share of chance. 'can't tell' "
    "when the validation split is so small that even no error is within that reach of chance."
)


def verdict(final: float, chance: float, n_valid: int) -> str:
    """Plain words for a final error against chance (LEARNED_RULE), with the error as a
    share of chance's: "yes (3% of chance)"."""
    se = (chance * (1 - chance) / max(n_valid, 1)) ** 0.5
    if chance - AT_CHANCE_SE * se <= 0:  # even no error at all would be within chance's reach
        return "can't tell: too few validation images"
    if final >= chance - AT_CHANCE_SE * se:
        return "no: at chance"
    share = final / max(chance, 1e-9)
    word = "yes" if share <= LEARNED_FRACTION + 1e-9 else "partly"
    return f"{word} ({share:.1%} of chance)" if share < 0.095 else f"{word} ({share:.0%} of chance)"


@dataclass
class Score:
    """One set's figures: a run's (`countnet evaluate`'s metrics.json) or the classical
    counter's (`countnet baseline`'s), from the folder holding them."""

    path: Path
    metrics: dict[str, Any]

    @property
    def set(self) -> str:
        return str(self.metrics["set"])

    @property
    def run(self) -> str | None:
        return self.metrics.get("run")

    @property
    def classical(self) -> bool:
        return "method" in self.metrics

    @property
    def folder_name(self) -> str:
        """The scored set's folder name (what a run's data root is matched by)."""
        return Path(str(self.metrics.get("path", self.set))).name

    @property
    def dataset_params(self) -> dict:
        return self.metrics.get("dataset_params") or {}

    def class_counts(self) -> dict[str, int]:
        """Images per true class: recorded, or counted from predictions.csv."""
        if counts := self.metrics.get("class_counts"):
            return {str(k): int(n) for k, n in counts.items()}
        out: dict[str, int] = {}
        for row in _read(self.path / "predictions.csv", read_csv) or []:
            out[row["true"]] = out.get(row["true"], 0) + 1
        return out


SCORES = "metrics.json"


def is_score(path: Path | str) -> bool:
    """A folder `countnet evaluate` or `countnet baseline` wrote (not a run or a sweep)."""
    path = Path(path)
    return (path / SCORES).is_file() and not (path / CONFIG).is_file()


def load_score(path: Path | str) -> Score:
    path = Path(path)
    metrics = _read(path / SCORES, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not isinstance(metrics, dict) or "set" not in metrics or "error_rate" not in metrics:
        raise CountnetError(f"{path / SCORES} is not countnet evaluate's or baseline's: delete it")
    return Score(path, metrics)


def run_scores(run: Path) -> list[Score]:
    """The sets a run folder was scored on (`countnet evaluate` writes <run>/eval/<set>/)."""
    found = sorted((run / "eval").glob("*"))  # dot-names: staging left by a kill, not scores
    return [load_score(p) for p in found if not p.name.startswith(".") and is_score(p)]


def load_run(path: Path | str) -> RunView:
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise CountnetError(f"{path} is not a countnet run folder (no {CONFIG})")
    cfg = read_config(path)
    if cfg.get("status") != "complete":
        raise CountnetError(f"run {path} did not finish (status: {cfg.get('status')})")
    sel = path / "transforms.json"
    skipped = _read(path / "skipped.txt", lambda p: p.read_text(encoding="utf-8").splitlines())
    selection = _read(sel, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if selection is not None and not isinstance(selection, dict):
        raise CountnetError(f"{sel} is not a select-transforms result: delete it")
    metrics = _read(path / "metrics.csv", read_csv)
    return RunView(path, cfg, metrics or [], skipped or [], selection, read_cost(path / COST_JSON))


def _read(path: Path, parse: Callable[[Path], Any]) -> Any:
    """``parse(path)``, None where the file is absent (runs from before it), one line where
    a user or a disk damaged it (not UTF-8, not JSON, nested too deep)."""
    if not path.is_file():
        return None
    try:
        return parse(path)
    except (ValueError, RecursionError) as e:
        raise CountnetError(f"{path} is damaged ({type(e).__name__}: {e})") from None


def read_cost(path: Path) -> dict | None:
    """A run's cost.json, checked (None: the run has none)."""
    if not path.is_file():
        return None
    try:
        cost = json.loads(path.read_text())
        int(cost["params"]), int(cost["macs"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise CountnetError(
            f"{path} is not a countnet cost.json: delete it (the report then shows dashes)"
        ) from None
    return cost


@dataclass
class SweepView:
    """A `countnet sweep` folder: its spec and the per-point summary of its finished runs."""

    path: Path
    sweep: Sweep
    summary: list[dict]

    @property
    def name(self) -> str:
        return self.path.name

    def table(self) -> tuple[list[str], list[list[str]]]:
        return summary_table(self.sweep, self.summary)

    def text(self) -> str:
        return describe(self.sweep)

    def figures(self) -> list[tuple[Path, str]]:
        figs = ((ERROR_PNG, "Final error_rate against each swept option (± std)"),
                (CURVES_PNG, "Learning curves, mean over seeds (band = ± std)"))  # fmt: skip
        return [(self.path / f, t) for f, t in figs if (self.path / f).is_file()]


def load_sweep_view(path: Path | str) -> SweepView:
    sweep = load_sweep(path)
    return SweepView(Path(path), sweep, summary_rows(sweep, result_rows(sweep)))
