"""A finished run's network as `countnet predict` and `countnet export` read it: model.json
(arch, classes, size, head, task, normalisation) and the weights (model.safetensors, or a
weights-only torch file), rebuilt as the network training made. Nothing is unpickled."""

from __future__ import annotations

from pathlib import Path

import torch

from countnet_classify.model import build_model
from countnet_classify.model_meta import is_regression, locate, read_model_json
from countnet_classify.weights import check_state_dict, load_state_dict_file


def load_predictor(run_or_weights: Path | str) -> tuple[torch.nn.Module, dict]:
    """The run's network in eval mode with its weights, and its model.json (classes as a
    list, size as an int)."""
    meta_path, weights = locate(run_or_weights)
    meta = read_model_json(meta_path)
    arch, classes, size = meta["arch"], meta["classes"], meta["size"]
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
