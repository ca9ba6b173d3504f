"""`countnet predict`: classify images with a finished run's weights, or count them with a
regression run's (``--task regression``: the count, and its rounding).

Reads only model.json and model.safetensors (or a weights-only torch file), or an ONNX file
from `countnet export` (protobuf): nothing is unpickled. Preprocessing is fastai's own
validation pipeline for the run (RGB decode, squish resize, scale to [0, 1], the run's
normalisation), so predictions match the learner's. What the command line names is
gathered first (``gather``): folders walked, every file decoded once in full, the ones
that do not decode set aside with why, so one damaged photo does not stop the others."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
from fastai.torch_core import TensorImage
from fasttransform import Pipeline
from PIL import Image

from countnet import tables
from countnet.errors import CountnetError
from countnet.names import printable
from countnet_classify.artifact import load_predictor
from countnet_classify.images import RGBImage, item_transforms
from countnet_classify.labels import natural_key
from countnet_classify.model_meta import is_regression
from countnet_classify.onnx_io import session
from countnet_classify.regression import rounded
from countnet_classify.screen import check_image, files_under


@dataclass
class Prediction:
    path: str
    label: str  # the class; a regression run's rounded count
    probability: float | None  # the class's probability (None for a regression run)
    probs: dict[str, float]  # every class's (empty for a regression run)
    count: float | None = None  # a regression run's prediction, unrounded
    # every class's log-probability (log-softmax: finite where a probability underflows)
    log_probs: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """One line of `countnet predict`: path, class and probability, or path, the count
        to one decimal and its rounding."""
        if self.count is not None:
            return f"{printable(str(self.path))}\t{self.count:.1f}\t{self.label}"
        # a class name with a newline or an escape sequence must not break the line
        return f"{printable(str(self.path))}\t{printable(self.label)}\t{self.probability:.4f}"


def _pipeline(meta: dict):
    items = Pipeline([RGBImage.create, *item_transforms(meta["size"]), ToTensor()], split_idx=1)
    batch = [IntToFloatTensor()]
    if meta.get("normalize"):
        batch.append(
            Normalize.from_stats(meta["normalize"]["mean"], meta["normalize"]["std"], cuda=False)
        )
    return items, Pipeline(batch, split_idx=1)


class Predictor:
    """A run's network (its weights, or an ONNX file from `countnet export`) and the
    preprocessing it was trained with, loaded once: call it on images that decode."""

    def __init__(self, run_or_weights: Path | str):
        if Path(run_or_weights).suffix == ".onnx":
            sess, meta = session(run_or_weights)
            output = "count" if is_regression(meta) else "probabilities"

            def outputs(x: torch.Tensor) -> torch.Tensor:
                (p,) = sess.run([output], {"image": x.numpy()})
                return torch.from_numpy(p) if is_regression(meta) else torch.from_numpy(p).log()

            # the graph normalises: only fastai's item transforms and the [0, 1] scaling here
            self.items, self.batch = _pipeline({**meta, "normalize": None})
            self.model = None
        else:
            model, meta = load_predictor(run_or_weights)

            def outputs(x: torch.Tensor) -> torch.Tensor:
                y = model(x).float()
                return y if is_regression(meta) else torch.log_softmax(y, dim=1)

            self.items, self.batch = _pipeline(meta)
            self.model = model  # eval mode, fp32, on the CPU (maps reads it)
        self.meta, self.outputs = meta, outputs

    def __call__(self, images: list[Path], *, bs: int = 64) -> list[Prediction]:
        """Each image's prediction, in order (each must decode: see ``gather``)."""
        chunks = [images[i : i + bs] for i in range(0, len(images), bs)]
        out: list[Prediction] = []
        # the next batch is decoded (PIL: mostly outside the GIL) while this one runs forward
        with ThreadPoolExecutor(1) as pool, torch.inference_mode():
            pending = pool.submit(self._batch, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                x = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(self._batch, chunks[k + 1])
                rows = zip(chunk, self.outputs(x), strict=True)
                out += [self._prediction(p, row) for p, row in rows]
        return out

    def _batch(self, chunk: list[Path]) -> torch.Tensor:
        return self.batch(TensorImage(torch.stack([self.items(Path(p)) for p in chunk])))

    def _prediction(self, path: Path | str, row: torch.Tensor) -> Prediction:
        if is_regression(self.meta):
            finite = bool(torch.isfinite(row))  # a diverged run's weights: nan
            label = str(int(rounded(row))) if finite else "nan"
            return Prediction(str(path), label, None, {}, float(row))
        classes = self.meta["classes"]  # ``row``: log-probabilities
        k = int(row.argmax())
        probs = dict(zip(classes, map(float, row.exp()), strict=True))
        logs = dict(zip(classes, map(float, row), strict=True))
        return Prediction(str(path), classes[k], probs[classes[k]], probs, log_probs=logs)


def predict(
    run_or_weights: Path | str, images: list[Path | str], *, bs: int = 64
) -> list[Prediction]:
    """Class and probability for each image, in order (a regression run: the count and its
    rounding). ``run_or_weights`` may also be an ONNX file written by `countnet export`,
    run with onnxruntime. An image that is missing or does not decode is an error."""
    predictor = Predictor(run_or_weights)
    for img in images:
        p = Path(img)
        if not (p.exists() or p.is_symlink()):
            raise CountnetError(f"image {p} does not exist")
        why = check_image(p)
        if why:
            raise CountnetError(f"image {p}: {why}")
    return predictor([Path(p) for p in images], bs=bs)


@dataclass
class Inputs:
    """What `countnet predict`'s arguments name: the images to predict, in order, and the
    inputs skipped, each with why."""

    images: list[Path]
    skipped: list[tuple[Path, str]]

    @property
    def total(self) -> int:
        return len(self.images) + len(self.skipped)


def image_suffixes() -> frozenset[str]:
    """The file name extensions of the formats Pillow can read (".jpg", ".png", ...)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` and its subfolders (by extension; hidden ones left
    out), in natural order: img2.jpg before img10.jpg, each folder level compared alike."""
    suffixes = image_suffixes()
    found = [p for p in files_under(folder) if p.suffix.lower() in suffixes]
    return sorted(found, key=lambda p: [natural_key(s) for s in p.relative_to(folder).parts])


def gather(paths: list[Path | str], *, threads: int = 8) -> Inputs:
    """The images ``paths`` name: a file as given, a folder's image files (``image_files``).
    Each is decoded in full first (on ``threads`` threads); a missing path, a folder without
    images and a file that does not decode (zero bytes, truncated, not an image) are skipped."""
    named: list[tuple[Path, str]] = []  # (path, why it is skipped, or "")
    for p in map(Path, paths):
        if p.is_dir():
            files = image_files(p)
            named += [(f, "") for f in files] or [(p, "a folder without image files")]
        elif p.exists() or p.is_symlink():  # a broken link, a FIFO: check_image says so
            named.append((p, ""))
        else:
            named.append((p, "does not exist"))
    return vet(named, threads=threads)


def vet(named: list[tuple[Path, str]], *, threads: int = 8) -> Inputs:
    """``named`` (path, why it is skipped already, or "") decoded in full on ``threads``
    threads: those that decode, in order, and the rest with why (``gather``'s last step;
    `countnet evaluate` hands it the files of its class folders)."""
    to_check = [p for p, why in named if not why]
    with ThreadPoolExecutor(max(1, min(threads, len(to_check)))) as pool:
        problems = dict(zip(to_check, pool.map(check_image, to_check), strict=True))
    images, skipped = [], []
    for p, why in named:
        why = why or problems[p]
        if why:
            skipped.append((p, why))
        else:
            images.append(p)
    return Inputs(images, skipped)


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
