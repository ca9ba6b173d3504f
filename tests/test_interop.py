"""countnet's files read by code that is not countnet's, as docs/interop.md says: the ONNX
export's class names mapped onto torchvision ImageFolder's labels, model.safetensors loaded
with fastai's create_vision_model, and `countnet gen`'s palette PNGs through each common
loader. docs/interop.md's Python blocks run here as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import run_countnet

DOC = Path(__file__).resolve().parents[1] / "docs" / "interop.md"
CLASSES = ["8", "9", "10", "11", "12"]  # ImageFolder's order differs: 10 11 12 8 9


def doc_block(containing: str) -> str:
    """The Python block of docs/interop.md that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


@pytest.fixture(scope="module")
def c812(tmp_path_factory) -> Path:
    """A folder of class folders 8..12 (a colour each, noisy, 40 x 48 px), and a run
    `runs/c812` trained on it and exported to ONNX, as a user makes them."""
    root = tmp_path_factory.mktemp("interop")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        colour = np.array([(k * 53) % 256, (k * 101 + 40) % 256, 255 - k * 50])
        (root / "photos-812" / name).mkdir(parents=True)
        for i in range(12):
            noise = rng.integers(-40, 41, (40, 48, 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "photos-812" / name / f"{i}.png")
    for verb in ("train", "export"):  # the page's own lines, as written
        (line,) = [ln for ln in DOC.read_text().splitlines() if ln.startswith(f"$ countnet {verb}")]
        extra = ["--quiet", "--workers", "0"] if verb == "train" else []
        run_countnet(*line.split()[2:], *extra, cwd=root, check=True)
    return root


def test_onnx_outputs_mapped_through_classes_score_as_countnet(c812, monkeypatch):
    from countnet_classify.predict import predict

    monkeypatch.chdir(c812)
    scope: dict = {}
    exec(doc_block("ImageFolder("), scope)
    assert scope["classes"] == CLASSES
    assert scope["ds"].classes == sorted(CLASSES)  # the trap: another order
    images = [path for path, _ in scope["ds"].samples]
    preds = predict("runs/c812", images)
    own = np.mean([p.label == Path(p.path).parent.name for p in preds])
    assert scope["accuracy"] == pytest.approx(own)
    assert own > 0.5  # a trained network: the mapping decides the score
    unmapped = np.mean(scope["probs"].argmax(1) == np.array(scope["ds"].targets))
    assert unmapped < own
    meta = json.loads((c812 / "runs" / "c812" / "model.json").read_text())
    onnx_meta = scope["meta"]
    assert json.loads(onnx_meta["countnet"]) == meta
    assert (onnx_meta["task"], onnx_meta["resize"]) == ("classification", "squish")
    assert json.loads(onnx_meta["normalize"]) == meta["normalize"]


def test_docs_predict_command_runs_as_written(c812):
    (line,) = [ln for ln in DOC.read_text().splitlines() if ln.startswith("$ countnet predict")]
    proc = run_countnet(*line.split()[2:], cwd=c812)
    assert proc.returncode == 0, proc.stderr
    rows = (c812 / "preds.csv").read_text().splitlines()
    assert rows[0].startswith("path,prediction,probability,p_8,p_9,p_10,p_11,p_12")
    # natural order: photos-812/8/... first, 12/ last; 0.png, 1.png, ... 10.png, 11.png
    paths = [r.split(",")[0] for r in rows[1:]]
    assert paths == [f"photos-812/{c}/{i}.png" for c in CLASSES for i in range(12)]


def test_safetensors_loads_with_fastai_and_countnet(c812, monkeypatch):
    import torchvision

    monkeypatch.chdir(c812)
    scope: dict = {}
    exec(doc_block("load_predictor("), scope)
    exec(doc_block("create_vision_model("), scope)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(scope["net"](x), scope["model"](x), atol=1e-5)
    from safetensors.torch import load_file

    sd = load_file("runs/c812/model.safetensors")
    assert {k.split(".")[0] for k in sd} == {"0", "1"}
    with pytest.raises(RuntimeError, match="Missing key"):  # the trap docs/interop.md names
        torchvision.models.resnet18().load_state_dict(sd)
    documented = set(re.findall(r"^\| `(\w+)` \|", DOC.read_text().split("holds:")[1], re.M))
    assert set(scope["meta"]) <= documented


@pytest.fixture(scope="module")
def png(tiny) -> Path:
    return sorted((tiny / "train").rglob("*.png"))[0]


def shown(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the colours a viewer shows, the palette indices) of a palette PNG, from its own
    PLTE chunk."""
    with Image.open(path) as im:
        assert im.mode == "P"
        index = np.asarray(im)
        palette = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
    return palette[index], index


def test_gen_pngs_read_by_loaders_asked_for_rgb_are_the_shown_colours(png, tiny):
    from fastai.vision.core import PILImage
    from torchvision.datasets import ImageFolder
    from torchvision.io import ImageReadMode, decode_image

    rgb, index = shown(png)
    assert len(np.unique(index)) > 2 and not (rgb[..., 0] == rgb[..., 2]).all()  # colours
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), rgb)
    assert np.array_equal(np.asarray(PILImage.create(png)), rgb)
    folder = ImageFolder(str(tiny / "train"))
    i = [p for p, _ in folder.samples].index(str(png))
    assert np.array_equal(np.asarray(folder[i][0]), rgb)
    decoded = decode_image(str(png), mode=ImageReadMode.RGB)
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), rgb)


def test_gen_pngs_read_without_conversion_are_coverage_indices(png):
    from torchvision.io import decode_image

    _, index = shown(png)
    raw = decode_image(str(png))
    assert raw.shape == (1, *index.shape) and np.array_equal(raw[0].numpy(), index)
    with Image.open(png) as im:
        assert np.asarray(im).shape == index.shape
