"""`countnet evaluate`: a finished run scored on any labelled set — fastai's
``learn.validate(dl=dls.test_dl(items, with_labels=True))``, Ultralytics' ``yolo val``.

A set is a countnet dataset (its valid/ and test/ splits, each scored, and the total), a
folder of class folders, or one split folder of a dataset. The images go through
countnet_classify.predict (``vet``, then ``Predictor``: the run's weights, an fp32 forward,
its own preprocessing), so `countnet evaluate` and `countnet predict` answer alike. Classes
are matched by name: an image of a class the run does not know is counted wrong (the run
cannot answer it); a regression run answers any count, seen in training or not. The
results go to <run>/eval/<set>/, staged and renamed into place.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from countnet import tables
from countnet.atomic import absolute, exclusive, staging_dir, write_text_atomic
from countnet.errors import CountnetError
from countnet.names import printable
from countnet_classify.evaluate import count_stats
from countnet_classify.labels import TEST, count_values, natural_key
from countnet_classify.model_meta import is_regression, locate
from countnet_classify.plots import plot_confusion, plot_scatter
from countnet_classify.predict import Inputs, Predictor, vet
from countnet_classify.record import dataset_params
from countnet_classify.run_folder import read_config
from countnet_classify.screen import (
    check_data_root,
    class_dirs,
    data_fingerprint,
    files_under,
    screen,
)

SPLITS = ("valid", TEST)  # a countnet dataset's scored splits (train/ is what it learned)
EVAL_DIR = "eval"  # <run>/eval/<set>/
# what an evaluation folder holds: only such a folder is ever replaced
OUR_FILES = frozenset({"metrics.json", "predictions.csv", "confusion_matrix.png", "scatter.png"})


@dataclass
class LabelledSet:
    """What one DATA argument names: its images with their class and split ("" for a
    folder of class folders), and the name of its evaluation folder."""

    name: str
    root: Path
    items: list[tuple[Path, str, str]]  # (file, class, split)
    splits: list[str]


@dataclass
class Scored:
    """A set scored: metrics.json's content, predictions.csv's rows, what was skipped."""

    labelled: LabelledSet
    metrics: dict
    rows: list[dict]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def run_folder(run: Path | str, runs_dir: Path | str | None = None) -> Path:
    """The run folder RUN names: a run folder, its model.json or model.safetensors (as
    `countnet predict` finds them), or with ``runs_dir`` a run's name there."""
    path = Path(runs_dir) / run if runs_dir is not None else Path(run)
    if runs_dir is not None and not path.exists():
        raise CountnetError(f"no run {printable(str(run))!r} in {printable(str(runs_dir))}")
    if path.suffix == ".onnx":
        raise CountnetError(
            f"{printable(str(path))}: evaluate scores a run's own weights; give its run folder"
        )
    meta, _ = locate(path)
    return meta.parent


def set_name(data: Path | str) -> str:
    """A set's default name: its folder's, or for a split folder (datasets/X/valid) X-valid."""
    p = absolute(data)
    return f"{p.parent.name}-{p.name}" if p.name in (*SPLITS, "train") else p.name


def check_set_name(name: str, data: Path | str | None = None) -> str:
    """``name`` if it can name one folder under <run>/eval/, else one line saying why
    (``data``: the set whose folder gave the name, when --name did not)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or not name.isprintable():
        if data is not None:
            raise CountnetError(
                f"{printable(str(data))}: its name '{printable(name)}' cannot name a folder of "
                "results (printable UTF-8, not starting with '.'): give the set a --name"
            )
        raise CountnetError(
            f"--name {printable(name)!r}: a set's name is one folder name (no '/', not "
            "starting with '.')"
        )
    return name


def read_set(data: Path | str, name: str | None = None) -> LabelledSet:
    """The labelled images under ``data``: a countnet dataset's valid/ and test/ class
    folders, or ``data``'s own class folders (a split folder is one such)."""
    check_data_root(data)
    root = Path(data)
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits and (root / "train").is_dir():
        raise CountnetError(f"{printable(str(root))} has train/ but no valid/ or test/ to score")
    folders = [(s, root / s) for s in splits] or [("", root)]
    items = [
        (f, d.name, split)
        for split, folder in folders
        for d in class_dirs(folder)
        for f in files_under(d)
    ]
    if not items:
        where = " or ".join(f"{printable(str(f))}/<class>/" for _, f in folders)
        raise CountnetError(f"no labelled images in {printable(str(root))}: expected {where}")
    checked = check_set_name(name) if name is not None else check_set_name(set_name(root), root)
    return LabelledSet(checked, root, items, splits)


def own_split(labelled: LabelledSet, run_dir: Path) -> LabelledSet:
    """``labelled`` itself, unless it is the folder of class folders ``run_dir`` trained on:
    then only the images the run held out for validation (its seed and --valid-pct over
    the same files), as split "valid", so no training image is scored as unseen."""
    if labelled.splits or not (run_dir / "config.yaml").is_file():  # weights alone: no split
        return labelled
    record = read_config(run_dir)
    data, run = record.get("data") or {}, record.get("run") or {}
    same = str(data.get("root")) == str(labelled.root.resolve())
    if data.get("layout") != "class folders" or not same:
        return labelled
    valid_pct, seed = run.get("valid_pct"), run.get("seed")
    if not isinstance(valid_pct, float) or not isinstance(seed, int):  # a hand-edited record
        raise CountnetError(f"{run_dir / 'config.yaml'} is damaged (run.valid_pct, run.seed)")
    if data_fingerprint(labelled.root) != data.get("fingerprint"):  # names, sizes, mtimes
        raise CountnetError(
            f"{printable(str(labelled.root))} is the folder {run_dir.name} trained on, and its "
            "files changed since: its validation images cannot be told from its training "
            "ones (score a folder without them)"
        )
    sc = screen(labelled.root, valid_pct=valid_pct, seed=seed)
    valid = {f for f, _, is_valid in sc.items if is_valid}
    items = [(f, c, "valid") for f, c, _ in labelled.items if f in valid]
    return replace(labelled, items=items, splits=["valid"])


def unknown_classes(labelled: LabelledSet, meta: dict) -> list[str]:
    """The set's classes the run does not know (none for a regression run: it answers any
    count, so its class folders need only name counts); a set with none of the run's
    classes is refused."""
    classes = sorted({c for _, c, _ in labelled.items}, key=natural_key)
    where = f"{printable(str(labelled.root))} class folder"
    if is_regression(meta):
        count_values(classes, where=where)
        return []
    known = set(meta["classes"])
    if not known & set(classes):
        raise CountnetError(
            f"{printable(str(labelled.root))} has none of the run's classes "
            f"({listed(meta['classes'])}); its class folders: {listed(classes)}"
        )
    return [c for c in classes if c not in known]


def listed(names: list[str], most: int = 8) -> str:
    """Up to ``most`` names, escaped, then how many there are (one line stays readable)."""
    shown = ", ".join(printable(n) for n in names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def readable(labelled: LabelledSet) -> Inputs:
    """The set's files decoded in full: those that decode, and the others with why (as
    `countnet predict` skips them); a set with none that decodes is one line."""
    inputs = vet([(f, "") for f, _, _ in labelled.items])
    if not inputs.images:
        raise CountnetError(
            f"no readable image in {printable(str(labelled.root))} "
            f"({len(inputs.skipped)} file(s) skipped)"
        )
    return inputs


def score(
    predictor: Predictor, labelled: LabelledSet, inputs: Inputs | None = None, *, bs: int = 64
) -> Scored:
    """Every image of ``labelled`` that decodes (``inputs``: ``readable``'s, found here if
    not given) predicted by ``predictor``; the others skipped and listed."""
    unknown = unknown_classes(labelled, predictor.meta)
    truth = {f: (c, s) for f, c, s in labelled.items}
    inputs = inputs or readable(labelled)
    rows = []
    for pred in predictor(inputs.images, bs=bs):
        cls, split = truth[Path(pred.path)]
        rel = Path(pred.path).relative_to(labelled.root).as_posix()
        row = {"path": rel, "split": split, "true": cls, "predicted": pred.label}
        if not math.isfinite(pred.count if pred.count is not None else pred.probability):
            raise CountnetError("the run's outputs are not finite numbers (diverged weights)")
        if pred.count is None:
            row.update(probability=pred.probability, log_p=pred.log_probs.get(cls))
        else:
            count = int(cls)  # a folder "07" is the count 7
            seen = str(count) in predictor.meta["classes"]
            row.update(true=str(count), count=count, prediction=pred.count, seen=seen)
            row["rounded"] = int(pred.label)
        rows.append(row)
    metrics = set_metrics(labelled, rows, predictor.meta, unknown)
    metrics["skipped"] = [{"path": printable(str(p)), "why": w} for p, w in inputs.skipped]
    return Scored(labelled, metrics, rows, inputs.skipped)


def group_metrics(rows: list[dict], regression: bool) -> dict:
    """Images, error rate and accuracy of ``rows``; a classifier's mean cross-entropy over
    the images of classes it knows (fastai's valid_loss), a regression run's MAE, RMSE and
    bias (mean residual)."""
    n = len(rows)
    hits = sum(r["true"] == r["predicted"] for r in rows)
    out: dict = {"images": n, "error_rate": (n - hits) / n, "accuracy": hits / n}
    if regression:
        stats = count_stats(rows)
        out.update(mae=stats["mae"], rmse=stats["rmse"], bias=stats["bias"])
    else:
        logs = [r["log_p"] for r in rows if r["log_p"] is not None]
        if logs:
            out["loss"] = -math.fsum(logs) / len(logs)
    return out


def set_metrics(labelled: LabelledSet, rows: list[dict], meta: dict, unknown: list[str]) -> dict:
    """metrics.json: the set's figures in all, per split, per class (and per count)."""
    regression = is_regression(meta)
    by_class: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_class[r["true"]].append(r)
    out = {
        "set": labelled.name,
        "path": str(absolute(labelled.root)),
        "dataset_params": dataset_params(labelled.root),  # None: not a countnet set
        "task": "regression" if regression else "classification",
        **group_metrics(rows, regression),
        "class_counts": {c: len(rs) for c, rs in by_class.items()},
        "per_class": {
            c: sum(r["predicted"] == c for r in rs) / len(rs)
            for c, rs in sorted(by_class.items(), key=lambda kv: natural_key(kv[0]))
        },
        "unknown_classes": unknown,
        "unknown_images": sum(len(by_class[c]) for c in unknown),
        "splits": {
            s: group_metrics([r for r in rows if r["split"] == s], regression)
            for s in labelled.splits
            if any(r["split"] == s for r in rows)
        },
    }
    if regression:
        out["per_count"] = {
            c: {**count_stats(rs), "seen": rs[0]["seen"]}
            for c, rs in sorted(by_class.items(), key=lambda kv: int(kv[0]))
        }
    return out


def confusion(rows: list[dict], true: list[str], predicted: list[str]) -> np.ndarray:
    """Images per (true class, predicted class)."""
    pairs = Counter((r["true"], r["predicted"]) for r in rows)
    return np.array([[pairs[(t, p)] for p in predicted] for t in true], dtype=int)


def is_eval_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only what `countnet evaluate` writes (so it may replace it)."""
    # by name and kind: a user's folder or link named metrics.json is not ours to delete
    return folder.is_dir() and all(
        p.name in OUR_FILES and p.is_file() and not p.is_symlink() for p in folder.iterdir()
    )


def is_probe_scores(folder: Path) -> bool:
    """Whether ``folder`` holds only what ``evaluate_into`` writes: a folder a set, each an
    evaluation folder (so a rerun may replace it; anything else is someone's)."""
    return folder.is_dir() and all(
        p.is_dir() and not p.is_symlink() and is_eval_folder(p) for p in folder.iterdir()
    )


def write_eval(run_dir: Path, scored: Scored, meta: dict) -> Path:
    """<run>/eval/<set>/: metrics.json, predictions.csv and confusion_matrix.png (or, for a
    regression run, scatter.png), staged beside it and renamed into place; an earlier
    evaluation of the set is replaced, a folder of anything else never."""
    final = absolute(run_dir / EVAL_DIR / scored.labelled.name)
    if final.exists() and not is_eval_folder(final):
        raise CountnetError(
            f"{printable(str(final))} holds files countnet evaluate did not write: nothing "
            "was changed (move them, or give the set another --name)"
        )
    with (
        exclusive(final, what="evaluation"),
        staging_dir(final, force=True, what="evaluation", replaceable=is_eval_folder) as tmp,
    ):
        write_files(tmp, scored, meta, run_dir)
    return final


def write_files(folder: Path, scored: Scored, meta: dict, run_dir: Path) -> None:
    """metrics.json (naming the run ``run_dir`` scored), predictions.csv and the figure into
    ``folder`` (a staging folder)."""
    scored.metrics.update(run=absolute(run_dir).name, run_path=str(absolute(run_dir)))
    text = json.dumps(scored.metrics, indent=2, allow_nan=False)
    write_text_atomic(folder / "metrics.json", text + "\n")
    rows = scored.rows
    if is_regression(meta):
        header = ["path", "true", "predicted", "count"]
        lines = [[r["path"], r["true"], r["predicted"], f"{r['prediction']:.4f}"] for r in rows]
        plot_scatter(rows, folder / "scatter.png")
    else:
        header = ["path", "true", "predicted", "probability"]
        lines = [[r["path"], r["true"], r["predicted"], f"{r['probability']:.6f}"] for r in rows]
        true = sorted({r["true"] for r in rows}, key=natural_key)
        matrix = confusion(rows, true, meta["classes"])
        plot_confusion(matrix, true, meta["classes"], folder / "confusion_matrix.png")
    tables.write_csv(folder / "predictions.csv", header, lines)


def table_rows(scored: Scored) -> list[list[str]]:
    """The printed table's rows for one set: each split, then the set in all."""
    m = scored.metrics
    regression = m["task"] == "regression"

    def row(label: str, g: dict) -> list[str]:
        cells = [scored.labelled.name, label, str(g["images"])]
        cells += [f"{g['error_rate']:.4f}", f"{g['accuracy']:.4f}"]
        return cells + ([f"{g['mae']:.3f}"] if regression else [])

    rows = [row(s, g) for s, g in m["splits"].items()]
    return [*rows, row("all" if rows else "", m)]


def check_distinct(sets: list[LabelledSet]) -> None:
    """One line if two DATA would be written to the same <run>/eval/<set>/."""
    seen: dict[str, Path] = {}
    for s in sets:
        if s.name in seen:
            raise CountnetError(
                f"{printable(str(seen[s.name]))} and {printable(str(s.root))} are both named "
                f"{printable(s.name)!r}: evaluate them one at a time, each with its own --name"
            )
        seen[s.name] = s.root


def table_columns(regression: bool) -> list[str]:
    return ["set", "split", "images", "error_rate", "accuracy", *(["MAE"] if regression else [])]


def evaluate_into(
    run: Path | str, sets: dict[str, Path | str], out_dir: Path | str, say=print
) -> None:
    """The workflow's probes: ``run`` scored on each named set, into ``out_dir``/<name>/,
    staged and renamed as one folder (a rerun replaces it whole)."""
    folder = run_folder(run)
    predictor = Predictor(folder)
    labelled = [read_set(path, name) for name, path in sets.items()]
    for s in labelled:  # every set's classes checked before any is scored
        unknown_classes(s, predictor.meta)
    final = absolute(out_dir)
    with (
        exclusive(final, what="probe scores"),
        staging_dir(final, force=True, what="probe scores", replaceable=is_probe_scores) as tmp,
    ):
        for s in labelled:
            scored = score(predictor, s)
            (tmp / s.name).mkdir()
            write_files(tmp / s.name, scored, predictor.meta, folder)
            m = scored.metrics
            figure = f"MAE {m['mae']:.3f}" if "mae" in m else f"error_rate {m['error_rate']:.4f}"
            say(f"{folder.name} on {s.name} ({s.root}): {m['images']} images, {figure}")
