"""Where does the count come from? maps.png: a few validation images, each beside a map of
where the network found its answer.

With the linear head (average pooling + one linear layer) the output is the mean over
locations of a per-location score: the linear layer applied to the body's last feature map
before pooling. A classifier's map of a class (its class activation map) has that class's
logit as its mean; a regression run's map, through the head's output transform (Rescale),
has the predicted count as its mean. fastai's head (concat pooling, BatchNorm, a hidden
layer) is no such mean, so Grad-CAM of the predicted output stands in, and the caption
says so. LeNet has no body/head split: no maps, a note in the log.

The network is the finished run's, as `countnet predict` loads it (model.json and the
weights, fp32, the run's preprocessing), so a map's count is predict's count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.layers import Flatten as FastaiFlatten
from fastai.torch_core import TensorImage
from torch import nn

from countnet_classify import plots
from countnet_classify.predict import Predictor
from countnet_classify.regression import Rescale

MAPS_PNG = "maps.png"
MAX_IMAGES = 8
PER_CLASS = 2
CAM = "class activation map"
GRAD_CAM = "Grad-CAM"
CAPTIONS = {
    (CAM, "classification"): (
        "Class activation maps (linear head): the predicted class's score at each location of "
        "the body's last feature map; the map's mean is the class's logit. Red: evidence for "
        "the class, blue: against."
    ),
    (CAM, "regression"): (
        "Count maps (linear head): each location's share of the count, the head's score "
        "through its output transform divided by the number of locations; the map sums to "
        "the predicted count. Red adds to the count, blue takes from it."
    ),
    (GRAD_CAM, "classification"): (
        "Grad-CAM of the predicted class on the body's last feature map: fastai's head is "
        "not a mean over locations, so no exact map exists; brighter is stronger evidence, "
        "in no unit."
    ),
    (GRAD_CAM, "regression"): (
        "Grad-CAM of the predicted count on the body's last feature map: fastai's head is "
        "not a mean over locations, so no exact map exists; brighter is stronger evidence, "
        "in no unit."
    ),
}
# Layers of a linear head that do nothing to a per-location score (Dropout: eval mode).
_PASSIVE = (nn.Flatten, FastaiFlatten, nn.Dropout, Rescale)


@dataclass
class Maps:
    """One map per image for its answer: ``maps`` (batch, h, w) over the body's last
    feature map, ``outputs`` the network's own (logits, or counts)."""

    method: str  # CAM or GRAD_CAM
    outputs: torch.Tensor
    maps: torch.Tensor
    regression: bool

    @property
    def map_counts(self) -> torch.Tensor | None:
        """A regression CAM's count: the sum of its map (the mean of the count map)."""
        return self.maps.sum((1, 2)) if self.method == CAM and self.regression else None


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Sequential] | None:
    """fastai's body + head split of a torchvision network; None for LeNet and the like."""
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[1], nn.Sequential):
        return model[0], model[1]
    return None


def linear_layer(head: nn.Sequential) -> nn.Linear | None:
    """The head's one linear layer when the head is average pooling and that layer (with
    flattening, dropout and Rescale beside them); None for any other head."""
    active = [m for m in head if not isinstance(m, _PASSIVE)]
    if (
        len(active) == 2
        and isinstance(active[0], nn.AdaptiveAvgPool2d)
        and active[0].output_size in (1, (1, 1))
        and isinstance(active[1], nn.Linear)
    ):
        return active[1]
    return None


def class_maps(linear: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """Every output's map (batch, outputs, h, w): ``linear`` at each location of
    ``features``. Its mean over locations is the linear layer on the pooled features."""
    maps = torch.einsum("oc,bchw->bohw", linear.weight, features)
    return maps if linear.bias is None else maps + linear.bias[None, :, None, None]


def grad_cam(head: nn.Module, features: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of each image's answer (its predicted class, or its
    count) on ``features``: the feature maps weighted by the answer's mean gradient, summed,
    negatives dropped. (batch, h, w)."""
    feats = features.detach().requires_grad_(True)
    with torch.enable_grad():
        out = head(feats)
        score = out if out.dim() == 1 else out.gather(1, outputs.argmax(1, keepdim=True))[:, 0]
        (grad,) = torch.autograd.grad(score.sum(), feats)
    weights = grad.mean((2, 3), keepdim=True)
    return torch.relu((weights * feats.detach()).sum(1))


def compute(model: nn.Module, x: torch.Tensor) -> Maps | None:
    """The maps of ``model`` (eval mode) for the batch ``x`` as predict feeds it; None when
    the network has no body/head split."""
    parts = body_and_head(model)
    if parts is None:
        return None
    body, head = parts
    with torch.no_grad():
        features = body(x).float()
        outputs = head(features).float()
    regression = outputs.dim() == 1
    linear = linear_layer(head)
    if linear is None:
        return Maps(GRAD_CAM, outputs, grad_cam(head, features, outputs), regression)
    with torch.no_grad():
        maps = class_maps(linear, features)
        if regression:
            rescale = next(m for m in head if isinstance(m, Rescale))
            h, w = maps.shape[2:]
            maps = rescale(maps) / (h * w)  # each location's share: sums to the count
        else:
            maps = maps.gather(1, _expand(outputs.argmax(1), maps))[:, 0]
    return Maps(CAM, outputs, maps, regression)


def _expand(index: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    b, _, h, w = maps.shape
    return index.view(b, 1, 1, 1).expand(b, 1, h, w)


def pick(
    items: Sequence[tuple[Path, str, bool]],
    classes: Sequence[str],
    n: int = MAX_IMAGES,
    per_class: int = PER_CLASS,
) -> list[tuple[Path, str]]:
    """Up to ``n`` validation images, ``per_class`` of each class at most, chosen the same
    way every time: each class's first images by path, one class after another (evenly
    spread over the classes when there are more than ``n``), in class order."""
    valid = {c: sorted(p for p, lbl, v in items if v and lbl == c) for c in classes}
    shown = [c for c in classes if valid[c]]
    if len(shown) > n:
        shown = [shown[i] for i in np.linspace(0, len(shown) - 1, n).round().astype(int)]
    chosen: list[tuple[int, int]] = []  # (class index, image index)
    for k in range(per_class):
        for i, c in enumerate(shown):
            if len(chosen) < n and k < len(valid[c]):
                chosen.append((i, k))
    return [(valid[shown[i]][k], shown[i]) for i, k in sorted(chosen)]


def titles(result: Maps, labels: Sequence[str], classes: Sequence[str]) -> list[str]:
    """Each image's title: true label, prediction and (regression CAM) the map's count."""
    out = []
    counts = result.map_counts
    for i, label in enumerate(labels):
        if result.regression:
            text = f"true {label} · pred {float(result.outputs[i]):.2f}"
            if counts is not None:
                text += f" · map {float(counts[i]):.2f}"
        else:
            text = f"true {label} · pred {classes[int(result.outputs[i].argmax())]}"
        out.append(text)
    return out


def draw(images: np.ndarray, result: Maps, names: Sequence[str], caption: str, path: Path) -> None:
    """Each image (batch, H, W, 3 uint8) beside its map upsampled over it in grey, two
    pairs a row; signed maps (CAM) on a diverging scale centred at 0, its end in the map's
    title (a colour bar each costs a second). Saved atomically."""
    plt = plots.plt
    n, cols = len(images), 2
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(8, 2.2 * rows + 0.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    maps = result.maps.numpy()
    signed = result.method == CAM
    for i in range(n):
        ax_img, ax_map = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        img, m = images[i], maps[i]
        height, width = img.shape[:2]
        ax_img.imshow(img)
        ax_img.set_title(names[i], fontsize=8)
        ax_map.imshow(img.mean(-1), cmap="gray", vmin=0, vmax=255)
        lim = float(np.abs(m).max()) or 1.0
        ax_map.imshow(
            m, cmap="RdBu_r" if signed else "inferno", vmin=-lim if signed else 0.0, vmax=lim,
            alpha=0.6, interpolation="bilinear", extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        )  # fmt: skip
        scale = f"±{lim:.3g}" if signed else f"0 to {lim:.3g}"
        ax_map.set_title(f"{m.shape[0]}x{m.shape[1]} map, {scale}", fontsize=8)
    fig.suptitle("\n".join(_wrapped(caption, 100)), fontsize=8)
    plots.save_current(path)


def _wrapped(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line]


def inputs(predictor: Predictor, paths: Sequence[Path]) -> tuple[np.ndarray, torch.Tensor]:
    """``paths`` as `countnet predict` feeds them to the network: the pixels it sees
    (batch, H, W, 3 uint8) and the batch itself (normalised, fp32)."""
    raw = torch.stack([predictor.items(p) for p in paths]).as_subclass(torch.Tensor)
    x = predictor.batch(TensorImage(raw)).as_subclass(torch.Tensor).float()
    return raw.permute(0, 2, 3, 1).numpy().astype(np.uint8), x


def write_maps(run_dir: Path, items: Sequence[tuple[Path, str, bool]], say) -> dict:
    """maps.png in ``run_dir`` (which holds model.json and the weights already) for a few of
    ``items``' validation images; what was drawn, for config.yaml (``method`` None: why
    not, a line the log also says)."""
    predictor = Predictor(run_dir)
    meta = predictor.meta
    task = meta.get("task", "classification")
    if body_and_head(predictor.model) is None:
        why = f"{meta['arch']} has no body and head to map"
        say(f"maps: none drawn ({why})")
        return {"method": None, "note": why}
    picked = pick(items, meta["classes"])
    if not picked:
        say("maps: none drawn (no validation images)")
        return {"method": None, "note": "no validation images"}
    images, x = inputs(predictor, [p for p, _ in picked])
    result = compute(predictor.model, x)
    assert result is not None  # body_and_head said so above
    caption = CAPTIONS[(result.method, task)]
    draw(images, result, titles(result, [lbl for _, lbl in picked], meta["classes"]), caption,
         run_dir / MAPS_PNG)  # fmt: skip
    grid = list(result.maps.shape[1:])  # at 48 px a ResNet's last feature map is 2x2
    return {"method": result.method, "images": len(picked), "grid": grid, "caption": caption}
