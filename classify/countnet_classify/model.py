"""Architectures and their weights.

ImageNet weights are looked up where torchvision keeps them (the torch hub cache,
``$TORCH_HOME/hub/checkpoints``), downloaded with a short timeout when possible, and never
waited on forever: offline, training stops with one line naming the expected file and the
ways out (``--weights FILE``, ``countnet weights import FILE``, ``--no-pretrained``).
Weight files are read with ``torch.load(weights_only=True)`` or safetensors: never unpickled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from countnet.atomic import atomic_path
from countnet.errors import CountnetError
from countnet_classify.config import head_dropout_for


def batchnorms(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``module`` (1d, 2d, SyncBatchNorm, ...)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def download_timeout() -> float:
    """Seconds to wait for a weights download before giving up (never hang offline)."""
    return float(os.environ.get("COUNTNET_DOWNLOAD_TIMEOUT", "10"))


class LeNet(nn.Module):
    """The Caffe/Mocha tutorials' LeNet (conv20-pool-conv50-pool-fc500-fc), made size-agnostic
    by an adaptive pool before the classifier."""

    def __init__(self, n_out: int, n_in: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(n_in, 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
            nn.AdaptiveMaxPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * 16, 500), nn.ReLU(inplace=True), nn.Linear(500, n_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def check_input_size(model: nn.Module, size: int, device: torch.device | str = "cpu") -> None:
    """Refuse a --size the network cannot take (feature maps shrink to nothing: LeNet below
    16 px, SqueezeNet below 17, AlexNet below 63) with one line, before any training.
    One image forward in eval mode, so no BatchNorm statistic moves."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    except RuntimeError as e:
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CountnetError(f"--size {size} is too small for this network ({why})") from None
    finally:
        model.train(was_training)


def torchvision_builder(arch: str) -> tuple[Callable, object]:
    """(torchvision model function, its default ImageNet weights enum)."""
    import torchvision.models as tvm

    fn = getattr(tvm, arch)
    weights = tvm.get_model_weights(fn).DEFAULT
    return fn, weights


def expected_weights_path(arch: str) -> Path:
    """Where torchvision's cache keeps ``arch``'s ImageNet weights."""
    _, w = torchvision_builder(arch)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a weights-only file (.safetensors, or a torch state dict): never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise CountnetError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, pickled objects, wrong format: all the same to a user
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


def check_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Refuse weights whose names or shapes do not fit ``model``."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    wrong = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or wrong:
        parts = []
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
        _download(arch, path)
    sd = load_state_dict_file(path)
    check_state_dict(sd, reference, str(path))
    return sd, str(path)


class _BadHash(Exception):
    """A download that is not the file torchvision published."""


def published_sha256_prefix(arch: str) -> str | None:
    """The sha256 prefix torchvision puts in its weights' file name (resnet34-b627a593.pth),
    read with torch.hub's own pattern; what its download checks with check_hash=True."""
    _, w = torchvision_builder(arch)
    m = torch.hub.HASH_REGEX.search(Path(w.url).name)
    return m.group(1) if m else None


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(arch: str, path: Path, url: str | None = None) -> None:
    """torchvision's weights for ``arch`` into ``path``, checked against the published
    sha256 prefix (``url``: another source of the same file, e.g. a mirror)."""
    _, w = torchvision_builder(arch)
    url = url or w.url
    hint = (
        f"no ImageNet weights for {arch}: expected {path} (not cached, download failed: "
        "{why}). Pass --weights FILE (a torchvision state dict; `countnet weights import FILE` "
        "caches it) or train from scratch with --no-pretrained"
    )
    if os.environ.get("COUNTNET_OFFLINE"):
        raise CountnetError(hint.format(why="COUNTNET_OFFLINE is set"))
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = published_sha256_prefix(arch)
    try:
        with atomic_path(path) as tmp:
            with (
                urllib.request.urlopen(url, timeout=download_timeout()) as r,
                open(tmp, "wb") as f,
            ):
                shutil.copyfileobj(r, f)
            digest = file_sha256(tmp)
            if prefix and not digest.startswith(prefix):  # torch.hub's check_hash, as one line
                raise _BadHash(f"sha256 {digest[:12]}... is not torchvision's {prefix}...")
    except Exception as e:
        why = getattr(e, "reason", None) or e
        raise CountnetError(hint.format(why=str(why)[:80])) from None


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


class _PretrainedArch:
    """A torchvision arch for fastai's vision_learner whose weights come from countnet's
    loader instead of torchvision's downloader. Registered in fastai's model_meta with the
    original arch's cut/split/stats, so the learner is built exactly as for the original."""

    def __init__(self, arch: str, state_dict: dict | None):
        from fastai.vision.learner import model_meta

        self.fn, _ = torchvision_builder(arch)
        self.state_dict = state_dict
        meta = dict(model_meta[self.fn])
        meta.pop("weights", None)  # makes fastai call arch(pretrained=...)
        model_meta[self] = meta

    def __call__(self, pretrained: bool = False) -> nn.Module:
        model = self.fn(weights=None)
        if pretrained and self.state_dict is not None:
            model.load_state_dict(self.state_dict)
        return model


def head_options(head: str = "fastai", dropout: float | None = None) -> dict:
    """fastai create_head options for ``--head``. ``linear`` is torchvision's own head:
    average pooling and one linear layer, so each logit is a sum of per-location evidence
    (a count, for counting sets); fastai's adds max pooling, which sees only the strongest
    location, and a BatchNorm + 512-unit hidden layer (BENCHMARKS.md measures both).
    ``dropout`` None: the head's default (config.head_dropout_for)."""
    dropout = head_dropout_for(head, dropout)
    if head == "linear":
        return {"concat_pool": False, "lin_ftrs": [], "first_bn": False, "ps": dropout}
    if head == "fastai":
        return {"ps": dropout}
    raise CountnetError(f"unknown head {head!r}")


def make_learner(
    dls,
    arch: str,
    state_dict: dict | None,
    *,
    pretrained: bool,
    head: str = "fastai",
    head_dropout: float | None = None,
    target: tuple[float, float] | None = None,
    **kwargs,
):
    """A fastai Learner for ``arch``: vision_learner (body + a new ``head`` with dropout
    ``head_dropout``) for torchvision archs, a plain Learner for LeNet. The optimizer is
    fastai's Adam on a fused kernel (optim.FusedAdam) unless ``opt_func`` says otherwise.
    ``target`` (mean, std): --task regression, one output rescaled to a count
    (regression.Rescale); else one output per class."""
    from fastai.learner import Learner
    from fastai.vision.learner import vision_learner

    from countnet_classify.optim import FusedAdam
    from countnet_classify.regression import attach_rescale

    kwargs.setdefault("opt_func", FusedAdam)
    n_out = 1 if target else len(dls.vocab)
    if arch == "lenet":
        learn = Learner(dls, LeNet(n_out), **kwargs)
    else:
        learn = vision_learner(
            dls,
            _PretrainedArch(arch, state_dict),
            pretrained=pretrained,
            n_out=n_out,
            **head_options(head, head_dropout),
            **kwargs,
        )
    if target:
        attach_rescale(learn.model, arch, *target)
    return learn


def build_model(
    arch: str,
    n_out: int,
    head: str = "fastai",
    head_dropout: float | None = None,
    regression: bool = False,
) -> nn.Module:
    """The same network make_learner trains, freshly initialised (for loading weights).
    ``head_dropout`` matters to the layout: fastai leaves out dropout layers with p = 0,
    which shifts the state dict's layer indices. ``regression``: one output and the
    Rescale whose mean and std the weights bring."""
    from countnet_classify.regression import attach_rescale

    if arch == "lenet":
        model = LeNet(1 if regression else n_out)
    else:
        from fastai.vision.learner import create_vision_model

        opts = head_options(head, head_dropout)
        model = create_vision_model(
            _PretrainedArch(arch, None), 1 if regression else n_out, pretrained=False, **opts
        )
    return attach_rescale(model, arch) if regression else model
