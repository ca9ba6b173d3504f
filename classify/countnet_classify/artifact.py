"""A finished run's network as `countnet predict` and `countnet export` read it: model.json
(arch, classes, size, head, task, normalisation) and the weights (model.safetensors, or a
weights-only torch file), rebuilt as the network training made. Nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from countnet.errors import CountnetError
from countnet_classify.model import build_model
from countnet_classify.run_folder import MODEL_JSON, WEIGHTS
from countnet_classify.weights import check_state_dict, load_state_dict_file


def is_regression(meta: dict) -> bool:
    """Whether model.json (``meta``) is a ``--task regression`` run's: one output, a count."""
    return meta.get("task") == "regression"


def locate(run_or_weights: Path | str) -> tuple[Path, Path]:
    """(model.json, weights file) from a run folder, model.json or a weights file."""
    p = Path(run_or_weights)
    if p.is_dir():
        meta, weights = p / MODEL_JSON, p / WEIGHTS
    elif p.name == MODEL_JSON:
        meta, weights = p, p.with_name(WEIGHTS)
    else:
        meta, weights = p.with_name(MODEL_JSON), p
    if not p.exists():
        raise CountnetError(f"{p} does not exist: give a run folder (runs/<name>) or its weights")
    for f in (meta, weights):
        if not f.is_file():
            raise CountnetError(f"{f} is missing: is {p} a finished countnet run?")
    return meta, weights


def load_predictor(run_or_weights: Path | str) -> tuple[torch.nn.Module, dict]:
    """The run's network in eval mode with its weights, and its model.json (classes as a
    list, size as an int)."""
    meta_path, weights = locate(run_or_weights)
    try:
        meta = json.loads(meta_path.read_text())
        arch, classes, size = meta["arch"], list(meta["classes"]), int(meta["size"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise CountnetError(f"{meta_path} is not a countnet model.json") from None
    sd = load_state_dict_file(weights)
    head = meta.get("head") or "fastai"
    regression = is_regression(meta)
    if meta.get("head_dropout") is not None:
        model = build_model(arch, len(classes), head, float(meta["head_dropout"]), regression)
    else:
        # model.json from before head_dropout was recorded: fastai leaves p = 0 dropout
        # layers out, so take the layout whose layer names the weights have.
        # (LeNet records none: it has no head options.)
        layouts = [build_model(arch, len(classes), head, p, regression) for p in (0.5, 0.0)]
        model = next((m for m in layouts if set(m.state_dict()) == set(sd)), layouts[0])
    check_state_dict(sd, model, str(weights))
    model.load_state_dict(sd)
    model.eval()
    return model, {**meta, "classes": classes, "size": size}
