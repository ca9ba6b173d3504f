"""`countnet predict`: classify images with a finished run's weights, or count them with a
regression run's (``--task regression``: the count, and its rounding).

Reads only model.json and model.safetensors (or a weights-only torch file), or an ONNX file
from `countnet export` (protobuf): nothing is unpickled. Preprocessing is fastai's own
validation pipeline for the run (RGB decode, squish resize, scale to [0, 1], the run's
normalisation), so predictions match the learner's."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from countnet.atomic import write_text_atomic
from countnet.errors import CountnetError
from countnet_classify.model import build_model
from countnet_classify.outputs import MODEL_JSON, WEIGHTS
from countnet_classify.regression import rounded
from countnet_classify.weights import check_state_dict, load_state_dict_file


@dataclass
class Prediction:
    path: str
    label: str  # the class; a regression run's rounded count
    probability: float | None  # the class's probability (None for a regression run)
    probs: dict[str, float]  # every class's (empty for a regression run)
    count: float | None = None  # a regression run's prediction, unrounded

    def text(self) -> str:
        """One line of `countnet predict`: path, class and probability, or path, the count
        to one decimal and its rounding."""
        if self.count is not None:
            return f"{self.path}\t{self.count:.1f}\t{self.label}"
        return f"{self.path}\t{self.label}\t{self.probability:.4f}"


def is_regression(meta: dict) -> bool:
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


def _pipeline(meta: dict):
    from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
    from fasttransform import Pipeline

    from countnet_classify.images import RGBImage, item_transforms

    items = Pipeline([RGBImage.create, *item_transforms(meta["size"]), ToTensor()], split_idx=1)
    batch = [IntToFloatTensor()]
    if meta.get("normalize"):
        batch.append(
            Normalize.from_stats(meta["normalize"]["mean"], meta["normalize"]["std"], cuda=False)
        )
    return items, Pipeline(batch, split_idx=1)


def predict(
    run_or_weights: Path | str, images: list[Path | str], *, bs: int = 64
) -> list[Prediction]:
    """Class and probability for each image, in order (a regression run: the count and its
    rounding). ``run_or_weights`` may also be an ONNX file written by `countnet export`,
    run with onnxruntime."""
    from fastai.torch_core import TensorImage

    from countnet_classify.screen import check_image

    if Path(run_or_weights).suffix == ".onnx":
        from countnet_classify.export import session

        sess, meta = session(run_or_weights)
        output = "count" if is_regression(meta) else "probabilities"

        def outputs(x: torch.Tensor) -> torch.Tensor:
            (p,) = sess.run([output], {"image": x.numpy()})
            return torch.from_numpy(p)

        # the graph normalises: only fastai's item transforms and the [0, 1] scaling here
        items, batch = _pipeline({**meta, "normalize": None})
    else:
        model, meta = load_predictor(run_or_weights)

        def outputs(x: torch.Tensor) -> torch.Tensor:
            y = model(x).float()
            return y if is_regression(meta) else torch.softmax(y, dim=1)

        items, batch = _pipeline(meta)
    for img in images:
        p = Path(img)
        if not p.is_file():
            raise CountnetError(f"image {p} does not exist")
        why = check_image(p)
        if why:
            raise CountnetError(f"image {p}: {why}")
    out: list[Prediction] = []
    with torch.inference_mode():
        for i in range(0, len(images), bs):
            chunk = images[i : i + bs]
            x = batch(TensorImage(torch.stack([items(Path(p)) for p in chunk])))
            ys = outputs(x)
            for p, row in zip(chunk, ys, strict=True):
                if is_regression(meta):
                    finite = bool(torch.isfinite(row))  # a diverged run's weights: nan
                    label = str(int(rounded(row))) if finite else "nan"
                    out.append(Prediction(str(p), label, None, {}, float(row)))
                    continue
                k = int(row.argmax())
                out.append(
                    Prediction(
                        str(p),
                        meta["classes"][k],
                        float(row[k]),
                        dict(zip(meta["classes"], map(float, row), strict=True)),
                    )
                )
    return out


def write_csv(preds: list[Prediction], path: Path | str) -> None:
    """path, prediction, probability, p_<class>...; a regression run's: path, prediction
    (the rounded count), count."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if preds and preds[0].count is not None:
        w.writerow(["path", "prediction", "count"])
        w.writerows([p.path, p.label, f"{p.count:.4f}"] for p in preds)
    else:
        classes = list(preds[0].probs) if preds else []
        w.writerow(["path", "prediction", "probability", *[f"p_{c}" for c in classes]])
        for p in preds:
            probs = [f"{p.probs[c]:.6f}" for c in classes]
            w.writerow([p.path, p.label, f"{p.probability:.6f}", *probs])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, buf.getvalue())
