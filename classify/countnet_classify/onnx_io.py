"""ONNX files of `countnet export`: the optional onnx/onnxruntime modules, the metadata an
exported file carries (model.json under "countnet", the preprocessing contract under
"preprocessing", the class names under "classes": docs/interop.md) and an onnxruntime
session that reads them back. ONNX is protobuf: reading a file never unpickles anything."""

from __future__ import annotations

import json
from pathlib import Path

from countnet.errors import CountnetError
from countnet.names import printable
from countnet_classify.model_meta import check_model_meta, is_regression

PREPROCESSING = (
    "image: float32 (batch, 3, size, size), RGB in [0, 1] (8-bit values / 255), after "
    "resizing the picture to size x size by the model.json 'resize' method ('squish': "
    "stretched, aspect ratio not kept, bilinear); normalisation is inside the graph"
)
MISSING = (
    "ONNX needs the onnx extra: `uv sync --extra onnx` in the repository (or "
    "`pip install 'countnet[onnx]'`)"
)


def onnx_modules():
    """(onnx, onnxruntime), or a one-line error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise CountnetError(MISSING) from None
    return onnx, onnxruntime


def metadata(meta: dict) -> dict[str, str]:
    """The metadata an exported file carries: model.json (``meta``) whole under "countnet",
    the preprocessing contract, and what a consumer needs on its own keys: "classes" (a JSON
    list: output column i is classes[i], in countnet's natural order), "task", "size",
    "resize" and "normalize" (JSON: the mean and std the graph applies itself, or null)."""
    return {
        "countnet": json.dumps(meta),
        "preprocessing": PREPROCESSING,
        "classes": json.dumps(meta["classes"]),
        "task": meta.get("task", "classification"),
        "size": str(meta["size"]),
        "resize": meta.get("resize", "squish"),
        "normalize": json.dumps(meta.get("normalize")),
    }


def set_metadata(proto, meta: dict) -> None:
    """Write ``metadata(meta)`` into ``proto``'s metadata_props, and a one-line description
    into its doc string."""
    del proto.metadata_props[:]
    for key, value in metadata(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    what = "counting (regression) trained on counts" if is_regression(meta) else "over classes"
    proto.doc_string = f"countnet {meta['arch']} {what} {', '.join(meta['classes'])}"


def session(path: Path | str):
    """(onnxruntime session, the run's model.json) of an exported file."""
    _, ort = onnx_modules()
    path = Path(path)
    if not path.is_file():
        raise CountnetError(f"{path} does not exist")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = json.loads(sess.get_modelmeta().custom_metadata_map["countnet"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        raise CountnetError(f"{path} is not an ONNX model written by countnet export") from None
    except Exception as e:  # onnxruntime's own errors: not a readable ONNX file
        raise CountnetError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise CountnetError(f"{path} is not an ONNX model written by countnet export")
    where = f"{printable(str(path))} (its countnet metadata)"
    meta = check_model_meta(meta, where)
    check_graph(sess, meta, where)
    return sess, meta


def check_graph(sess, meta: dict, where: str) -> None:
    """The metadata agrees with the graph it came with (an edited file may not): an input
    "image" of 3 x size x size, and a classifier's "probabilities" with a column a class, or
    a regression's "count"; else one line, not onnxruntime's error mid-prediction."""
    image = next((i.shape for i in sess.get_inputs() if i.name == "image"), None)
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    size, n = meta["size"], len(meta["classes"])
    fits = image is not None and list(image[1:]) == [3, size, size]
    if is_regression(meta):
        fits = fits and "count" in outputs
    else:  # a symbolic column count (not an int) is left to onnxruntime
        columns = (outputs.get("probabilities") or [None])[-1]
        fits = fits and "probabilities" in outputs and (columns == n or type(columns) is not int)
    if not fits:
        raise CountnetError(
            f"{where} disagrees with its graph (input {image}, outputs {sorted(outputs)}; "
            f"size {size}, {n} classes): export the run again"
        )
