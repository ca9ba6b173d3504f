"""ImageNet weights: where torchvision keeps them (the torch hub cache,
``$TORCH_HOME/hub/checkpoints``), their download (a short timeout, the published hash
checked), `countnet weights import`, and reading any weights file without unpickling
(``torch.load(weights_only=True)`` or safetensors). Never waited on forever: offline,
training stops with one line naming the expected file and the ways out (``--weights FILE``,
``countnet weights import FILE``, ``--no-pretrained``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import warnings
from pathlib import Path

import torch
from safetensors.torch import load, load_file
from torch import nn

from countnet.atomic import atomic_path
from countnet.errors import CountnetError
from countnet_classify.model import torchvision_builder

# torch.hub's refusal of a download whose sha256 does not start with the published prefix
HASH_MISMATCH = re.compile(r'invalid hash value \(expected "(\w+)", got "(\w+)"\)')


def download_timeout() -> float:
    """Seconds to wait for a weights download before giving up (never hang offline)."""
    return float(os.environ.get("COUNTNET_DOWNLOAD_TIMEOUT", "10"))


def expected_weights_path(arch: str) -> Path:
    """Where torchvision's cache keeps ``arch``'s ImageNet weights."""
    _, w = torchvision_builder(arch)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name


def file_sha256(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a weights-only file (.safetensors, or a torch state dict): never unpickles."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CountnetError(f"weights file {path} {what}")
    if path.suffix != ".safetensors" and not _torch_file(path):
        raise CountnetError(
            f"{path} is not a readable weights file: expected a torch state dict (.pth/.pt, "
            "as torch.save writes it) or a .safetensors file"
        )  # torch's own words for a text file are unpickler internals (pop from empty list)
    try:
        if path.suffix == ".safetensors":
            sd = _load_safetensors(path)
        else:
            with warnings.catch_warnings():  # torch warns of a pickle protocol on stderr
                warnings.simplefilter("ignore")
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, pickled objects, wrong format: all the same to a user
        if "Weights only load failed" in str(e):
            raise CountnetError(
                f"{path} is not a readable weights file: it holds pickled Python objects, "
                "not only tensors (never unpickled); save a plain state dict or .safetensors"
            ) from None
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CountnetError(f"{path} is not a readable weights file ({first})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if (
        not isinstance(sd, dict)
        or not sd
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    ):
        raise CountnetError(f"{path} is not a state dict (a mapping of names to tensors)")
    return sd


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The file mapped by path, as safetensors does; a path that is not UTF-8 (a name from
    another system's bytes) is no str to the library: its bytes are read instead."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return load(path.read_bytes())
    return load_file(str(path))


def _torch_file(path: Path) -> bool:
    """Whether ``path`` begins as a torch.save file does: a zip archive, or a pickle."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith((b"PK\x03\x04", b"\x80"))


def check_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Refuse weights whose names, shapes or kinds of number do not fit ``model``: integer
    tensors where it has floating ones would load, truncated, and predict nonsense."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    wrong = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    ints = [k for k in want if k in sd and want[k].is_floating_point()
            and (not sd[k].is_floating_point() or sd[k].is_complex())]  # fmt: skip
    if missing or unexpected or wrong or ints:
        parts = []
        if ints:
            k = ints[0]
            parts.append(f"{len(ints)} not floating point, e.g. {k}: file {sd[k].dtype}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatch(es), e.g. {k}: file {tuple(sd[k].shape)} vs "
                f"model {tuple(want[k].shape)}"
            )
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CountnetError(f"{source} does not fit {type(model).__name__}: {'; '.join(parts)}")


def imagenet_state_dict(arch: str, weights_file: str | None) -> tuple[dict, str]:
    """ImageNet weights for ``arch`` and where they came from: --weights, the cache, or a
    download into the cache (bounded by COUNTNET_DOWNLOAD_TIMEOUT seconds)."""
    fn, _ = torchvision_builder(arch)
    reference = fn(weights=None)
    if weights_file:
        sd = load_state_dict_file(weights_file)
        check_state_dict(sd, reference, f"--weights {weights_file}")
        return sd, str(Path(weights_file).resolve())
    path = expected_weights_path(arch)
    if not path.is_file():
        download(arch, path)
    sd = load_state_dict_file(path)
    check_state_dict(sd, reference, str(path))
    return sd, str(path)


def published_sha256_prefix(arch: str) -> str | None:
    """The sha256 prefix torchvision puts in its weights' file name (resnet34-b627a593.pth),
    read with torch.hub's own pattern; what its download checks with check_hash=True."""
    _, w = torchvision_builder(arch)
    m = torch.hub.HASH_REGEX.search(Path(w.url).name)
    return m.group(1) if m else None


def download(arch: str, path: Path, url: str | None = None) -> None:
    """torchvision's weights for ``arch`` into ``path``, checked against the published
    sha256 prefix (``url``: another source of the same file, e.g. a mirror)."""
    _, w = torchvision_builder(arch)
    hint = (
        f"no ImageNet weights for {arch}: expected {path} (not cached, download failed: "
        "{why}). Pass --weights FILE (a torchvision state dict; `countnet weights import FILE` "
        "caches it) or train from scratch with --no-pretrained"
    )
    if os.environ.get("COUNTNET_OFFLINE"):
        raise CountnetError(hint.format(why="COUNTNET_OFFLINE is set"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.hub opens the URL without a timeout: the socket default bounds every wait
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout())
    try:
        torch.hub.download_url_to_file(
            url or w.url, str(path), hash_prefix=published_sha256_prefix(arch), progress=False
        )
    except Exception as e:
        raise CountnetError(hint.format(why=_why(e)[:80])) from None
    finally:
        socket.setdefaulttimeout(before)


def _why(e: Exception) -> str:
    """A failed download's reason, one line: the hash mismatch as "sha256 ... is not
    torchvision's ..." (torch.hub's check_hash), a URLError's reason, else the error."""
    if m := HASH_MISMATCH.search(str(e)):
        return f"sha256 {m.group(2)[:12]}... is not torchvision's {m.group(1)}..."
    return str(getattr(e, "reason", None) or e)


def import_weights(file: Path | str, arch: str) -> tuple[Path, str | None]:
    """Verify ``file`` as ``arch``'s ImageNet weights and place it in the torch hub cache.
    Returns where, and a warning when the file is not torchvision's published one (its
    sha256 differs from the prefix in torchvision's file name): such weights still fit the
    model, but a run started from them is not the fastai/torchvision baseline."""
    fn, _ = torchvision_builder(arch)
    sd = load_state_dict_file(file)
    check_state_dict(sd, fn(weights=None), str(file))
    dest = expected_weights_path(arch)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix, digest = published_sha256_prefix(arch), file_sha256(file)
    published = bool(prefix) and digest.startswith(prefix)
    with atomic_path(dest) as tmp:
        if published:
            shutil.copyfile(file, tmp)  # torchvision's own file, byte for byte
        else:
            torch.save(sd, tmp)  # plain tensors only: loadable with weights_only=True
    if prefix and not published:
        return dest, (
            f"warning: {file} is not torchvision's published {arch} weights (its sha256 "
            f"starts {digest[:8]}, torchvision's {prefix}): cached under torchvision's name "
            "because names and shapes fit; runs record this file's sha256"
        )
    return dest, None
