"""`countnet export`: a finished run's network as an ONNX model, for any ONNX runtime.

The graph takes ``image``: float32 (batch, 3, size, size), RGB scaled to [0, 1] after the
run's resize (model.json: size, resize); the run's normalisation, if any, is inside the
graph. It returns ``probabilities`` (softmax over the classes) and ``logits``; a regression
run's (``--task regression``) returns ``count``, shape (batch,), unrounded. The ONNX
file's metadata carries model.json (under "countnet") and this contract (under
"preprocessing"), so `countnet predict FILE.onnx` needs nothing else. Reading it never
unpickles anything: ONNX is protobuf.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from countnet.atomic import atomic_path
from countnet.errors import CountnetError
from countnet_classify.artifact import load_predictor
from countnet_classify.model_meta import is_regression
from countnet_classify.onnx_io import onnx_modules, session, set_metadata

FORMATS = ("onnx",)
OPSET = 18


class Exported(torch.nn.Module):
    """The run's network with its normalisation in front and a softmax behind (none for a
    regression network, whose output is already the count)."""

    def __init__(self, model: torch.nn.Module, normalize: dict | None, regression: bool = False):
        super().__init__()
        self.model, self.regression = model, regression
        mean = (normalize or {}).get("mean", [0.0, 0.0, 0.0])
        std = (normalize or {}).get("std", [1.0, 1.0, 1.0])
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def output_names(self) -> list[str]:
        return ["count"] if self.regression else ["probabilities", "logits"]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.model((image - self.mean) / self.std)
        return (y,) if self.regression else (torch.softmax(y, dim=1), y)


class Unrolled(torch.nn.Module):
    """An adaptive max/avg pool for one input size, as explicit windows (PyTorch's: start
    floor(i L / O), end ceil((i + 1) L / O)): the same numbers, in ops every exporter knows.
    TorchScript's exporter refuses an output size that does not divide the input (LeNet's 4
    from 5 at 32 px)."""

    def __init__(self, pool: torch.nn.Module, height: int, width: int):
        super().__init__()
        oh, ow = _output_size(pool, height, width)

        def windows(length: int, n: int) -> list[tuple[int, int]]:
            return [(i * length // n, -(-(i + 1) * length // n)) for i in range(n)]

        self.rows, self.cols = windows(height, oh), windows(width, ow)
        self.max = isinstance(pool, torch.nn.AdaptiveMaxPool2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def cell(a: int, b: int, c: int, d: int) -> torch.Tensor:
            window = x[:, :, a:b, c:d]
            return window.amax((-2, -1)) if self.max else window.mean((-2, -1))

        rows = [torch.stack([cell(a, b, c, d) for c, d in self.cols], -1) for a, b in self.rows]
        return torch.stack(rows, -2)


def exportable(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """A copy of ``model`` whose adaptive pools with output sizes that do not divide their
    input (at ``size`` px) are unrolled; the model itself is left alone."""
    import copy

    pools = (torch.nn.AdaptiveMaxPool2d, torch.nn.AdaptiveAvgPool2d)
    model = copy.deepcopy(model)
    shapes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, i[0].shape[-2:])
        )
        for name, m in model.named_modules()
        if isinstance(m, pools)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    for name, (height, width) in shapes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        pool = getattr(parent, child)
        oh, ow = _output_size(pool, height, width)
        if height % oh or width % ow:
            setattr(parent, child, Unrolled(pool, int(height), int(width)))
    return model


def _output_size(pool: torch.nn.Module, height: int, width: int) -> tuple[int, int]:
    """An adaptive pool's output (height, width) for this input (None keeps the input's)."""
    out = pool.output_size
    oh, ow = (out, out) if isinstance(out, int) else out
    return oh or height, ow or width


def export(run: Path | str, fmt: str = "onnx", out: Path | str | None = None) -> Path:
    """Write ``run``'s network as ONNX to ``out`` (default RUN/model.onnx), checked against
    the PyTorch weights with onnxruntime on a random batch before it is renamed into place."""
    if fmt not in FORMATS:
        raise CountnetError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    onnx, _ = onnx_modules()
    model, meta = load_predictor(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    out = Path(out) if out is not None else run_dir / "model.onnx"
    if out.suffix != ".onnx":
        raise CountnetError(f"--out must end in .onnx, got {out}")
    if out.parent and not out.parent.is_dir():
        raise CountnetError(f"{out.parent} is not a folder")
    size, regression = meta["size"], is_regression(meta)
    net = Exported(exportable(model, size), meta.get("normalize"), regression).eval()
    weights = Exported(model, meta.get("normalize"), regression).eval()  # the check's reference
    example = torch.rand(2, 3, size, size)
    with atomic_path(out) as tmp:
        _export_graph(net, example, tmp)
        proto = onnx.load(str(tmp))
        set_metadata(proto, meta)
        onnx.save(proto, str(tmp))
        check(tmp, weights, size)
    return out


def _export_graph(net: Exported, example: torch.Tensor, path: Path) -> None:
    # TorchScript's exporter: a single self-contained file in ~1 s; the dynamo exporter
    # took minutes per network here for the same graph.
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["image"],
            output_names=net.output_names,
            dynamic_axes={name: {0: "batch"} for name in ["image", *net.output_names]},
            opset_version=OPSET,
            dynamo=False,
        )


def check(path: Path, net: Exported, size: int, tol: float = 1e-4) -> None:
    """The ONNX file's probabilities equal the PyTorch network's within ``tol`` (a count:
    within ``tol`` of it relative to its size, at least 1: float32 holds 47 to ~4e-6)."""
    sess, _ = session(path)
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x)[0].numpy()
    got = sess.run(net.output_names[:1], {"image": x.numpy()})[0]
    scale = np.maximum(1.0, np.abs(want)) if net.regression else 1.0
    diff = float((abs(got - want) / scale).max())
    if diff > tol:
        raise CountnetError(f"the exported model differs from the weights by {diff:.2g} (> {tol})")
