"""`countnet predict`: classify images with a finished run's weights, or count them with a
regression run's (``--task regression``: the count, and its rounding).

Reads only model.json and model.safetensors (or a weights-only torch file), or an ONNX file
from `countnet export` (protobuf): nothing is unpickled. Preprocessing is fastai's own
validation pipeline for the run (RGB decode, squish resize, scale to [0, 1], the run's
normalisation), so predictions match the learner's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
from fastai.torch_core import TensorImage
from fasttransform import Pipeline

from countnet import tables
from countnet.errors import CountnetError
from countnet_classify.artifact import is_regression, load_predictor
from countnet_classify.images import RGBImage, item_transforms
from countnet_classify.onnx_io import session
from countnet_classify.regression import rounded
from countnet_classify.screen import check_image


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


def _pipeline(meta: dict):
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
    if Path(run_or_weights).suffix == ".onnx":
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
    if preds and preds[0].count is not None:
        header = ["path", "prediction", "count"]
        rows = [[p.path, p.label, f"{p.count:.4f}"] for p in preds]
    else:
        classes = list(preds[0].probs) if preds else []
        header = ["path", "prediction", "probability", *[f"p_{c}" for c in classes]]
        rows = [
            [p.path, p.label, f"{p.probability:.6f}", *[f"{p.probs[c]:.6f}" for c in classes]]
            for p in preds
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tables.write_csv(path, header, rows)
