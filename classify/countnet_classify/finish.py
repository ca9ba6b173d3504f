"""The end of a run: the test split predicted (regression), the figures, the weights and
model.json, cost.json and the summary; then the partial folder becomes the run folder."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastai.data.transforms import Normalize
from fastai.interpret import ClassificationInterpretation

from countnet.atomic import write_text_atomic
from countnet.errors import CountnetError
from countnet.tables import read_csv, write_csv
from countnet_classify import maps, plots, run_folder
from countnet_classify.cost import COST_JSON, model_cost
from countnet_classify.evaluate import evaluate
from countnet_classify.prepare import PreparedRun
from countnet_classify.record import now, summary, target_dict
from countnet_classify.spec import RunSpec

PREDICTIONS_CSV = "predictions.csv"  # --task regression: every validation and test image
PREDICTIONS_FIELDS = ("split", "path", "count", "seen", "prediction", "rounded")


@dataclass
class TrainResult:
    run_dir: Path
    learner: Any
    metrics: list[dict]
    record: dict


def finish_run(
    spec: RunSpec, run: PreparedRun, learn, record: dict, *, say, figures: bool, session: dict
) -> TrainResult:
    """Figures, weights, the summary; then the partial folder becomes the run folder."""
    partial = run.partial
    metrics = read_csv(partial / "metrics.csv")
    total = record["resolved"]["total_epochs"]
    if len(metrics) != total:
        raise CountnetError(f"internal: {len(metrics)} epochs recorded, {total} expected")
    # Predicted before the figures swap in file loaders: the training loaders' pixels.
    evaluated = (
        evaluate(learn, run.screened, run.test_items, spec.size, run.bs) if run.regression else None
    )
    if evaluated:
        write_csv(partial / PREDICTIONS_CSV, PREDICTIONS_FIELDS, evaluated[0])
    if figures:
        if spec.loader == "cache":
            # Figures through fastai's own file pipeline: interpretation and show_batch need
            # the file items, and the pixels are the same (the cache holds exactly them).
            learn.dls = _with_same_normalization(run.file_dls(), learn.dls)
        write_figures(learn, partial, metrics, evaluated[0] if evaluated else None)
    run_folder.export_weights(partial, learn.model, model_meta(spec, run, learn))
    if figures:
        record["maps"] = write_maps(partial, run.screened.items, say)
    _write_cost(spec, run)
    reg = evaluated[1] if evaluated else None
    record.update(status="complete", summary=summary(spec, metrics, total, session, reg))
    record["finished"] = now()
    run_folder.write_config(partial, record)
    shutil.rmtree(partial / ".tmp", ignore_errors=True)
    run_folder.finish(partial, run.final)
    # After the rename: a run killed just before it still has the checkpoint, so --resume
    # loads the trained weights and finishes instead of retraining from nothing.
    for name in run_folder.CHECKPOINTS:
        (run.final / name).unlink(missing_ok=True)
    learn.path = run.final
    say(_done_line(record["summary"], reg, run.final))
    return TrainResult(run.final, learn, metrics, record)


def model_meta(spec: RunSpec, run: PreparedRun, learn) -> dict[str, Any]:
    """model.json: what predict needs to rebuild the network and feed it."""
    return {
        "arch": spec.arch,
        **spec.head_layout,
        "task": spec.task,
        **({"target": target_dict(run.target)} if run.regression else {}),
        "classes": list(run.screened.classes),
        "size": spec.size,
        "resize": "squish",
        "normalize": _normalize_stats(learn),
        "n_in": 3,
        "format": "safetensors state dict of countnet_classify.model.build_model"
        "(arch, n, head, head_dropout, regression)",
    }


def write_maps(run_dir: Path, items: list, say) -> dict:
    """maps.png from the exported weights; a failure to draw is a line in the log and a
    note in config.yaml, never a lost run."""
    t0 = time.perf_counter()
    try:
        drawn = maps.write_maps(run_dir, items, say)
    except Exception as e:  # any: a figure is not worth the trained run
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        say(f"maps: none drawn ({why})")
        return {"method": None, "note": f"drawing failed: {why}"}
    seconds = time.perf_counter() - t0
    if drawn["method"]:
        cells = "x".join(map(str, drawn["grid"]))
        say(f"maps: {drawn['method']} ({cells} cells) of {drawn['images']} validation images, "
            f"{seconds:.1f} s")  # fmt: skip
    return {**drawn, "seconds": round(seconds, 2)}


def _write_cost(spec: RunSpec, run: PreparedRun) -> None:
    n_out = 1 if run.regression else len(run.screened.classes)
    cost = model_cost(
        spec.arch, size=spec.size, classes=n_out, head=spec.head,
        head_dropout=spec.dropout, device=run.device, batch=min(64, run.bs),
    )  # fmt: skip
    if not spec.uses_pretrained:  # trained from scratch: this run had no frozen phase
        cost["trainable_frozen"] = None
    write_text_atomic(run.partial / COST_JSON, json.dumps(cost, indent=2) + "\n")


def _done_line(s: dict, reg: dict | None, final: Path) -> str:
    counted = ""
    if reg:
        counted = f", MAE {reg['seen']['mae']:.3f} on seen counts" + (
            f", {reg['unseen']['mae']:.3f} on unseen" if "unseen" in reg else ""
        )
    return (
        f"done: final error_rate {s['final_error_rate']:.4f} "
        f"(best {s['best_error_rate']:.4f}){counted}; run folder {final}"
    )


def _with_same_normalization(new, old):
    """``new`` DataLoaders with ``old``'s Normalize (vision_learner adds one when pretrained)."""
    norms = [t for t in old.after_batch.fs if isinstance(t, Normalize)]
    if norms:
        new.add_tfms(norms, "after_batch")
    return new


def _normalize_stats(learn) -> dict | None:
    for t in learn.dls.after_batch.fs:
        if isinstance(t, Normalize):
            return {"mean": t.mean.flatten().tolist(), "std": t.std.flatten().tolist()}
    return None


def write_figures(
    learn, run_dir: Path, metrics: list[dict], predictions: list[dict] | None = None
) -> None:
    """Learning curves and a batch; a classifier's confusion matrix and top losses, or a
    regression's predicted-vs-true scatter and residuals by count (``predictions``)."""
    plots.plot_losses(read_csv(run_dir / "losses.csv"), metrics, run_dir / "losses.png")
    with learn.no_bar():
        if predictions is not None:
            plots.plot_scatter(predictions, run_dir / "scatter.png")
            plots.plot_residuals(predictions, run_dir / "residuals.png")
        else:
            interp = ClassificationInterpretation.from_learner(learn)
            interp.plot_confusion_matrix(figsize=(5, 5))
            plots.save_current(run_dir / "confusion_matrix.png")
            k = min(9, len(learn.dls.valid_ds))
            interp.plot_top_losses(k, nrows=3 if k > 3 else 1)
            plots.save_current(run_dir / "top_losses.png")
        learn.dls.show_batch(max_n=9, show=True)
        plots.save_current(run_dir / "batch.png")
