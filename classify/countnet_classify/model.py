"""The networks: torchvision archs and fastai's XResNet-18 (at a width) as fastai's body +
head (``--head``), LeNet, and the regression variant (one output, rescaled to a count).
ImageNet weights: ``weights``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from countnet.errors import CountnetError
from countnet_classify.regression import attach_rescale
from countnet_classify.spec import XRESNETS, head_dropout_for


def batchnorms(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``module`` (1d, 2d, SyncBatchNorm, ...)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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
    except (RuntimeError, MemoryError) as e:
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if isinstance(e, MemoryError) or "alloc" in why or "out of memory" in why:
            raise CountnetError(
                f"--size {size} is too large: one image does not fit in memory ({why})"
            ) from None
        raise CountnetError(f"--size {size} is too small for this network ({why})") from None
    finally:
        model.train(was_training)


def torchvision_builder(arch: str) -> tuple[Callable, object]:
    """(torchvision model function, its default ImageNet weights enum)."""
    import torchvision.models as tvm

    fn = getattr(tvm, arch)
    weights = tvm.get_model_weights(fn).DEFAULT
    return fn, weights


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


class _XResNetArch:
    """fastai's XResNet-18 at ``width`` of its channels (``widen``), for vision_learner:
    registered in fastai's model_meta with xresnet18's cut/split/stats, so the learner is
    built exactly as for fastai's own."""

    def __init__(self, width: float):
        from fastai.vision.learner import model_meta
        from fastai.vision.models.xresnet import xresnet18

        self.width = width
        model_meta[self] = dict(model_meta[xresnet18])

    def __call__(self, pretrained: bool = False) -> nn.Module:
        from fastai.vision.models.xresnet import xresnet18

        return xresnet18(pretrained=False, widen=self.width)


def arch_builder(arch: str, state_dict: dict | None = None) -> Callable[..., nn.Module]:
    """What fastai's vision_learner builds ``arch`` with (not LeNet): a torchvision arch
    loading ``state_dict`` as its ImageNet weights, or an XResNet of its width."""
    if arch in XRESNETS:
        return _XResNetArch(XRESNETS[arch])
    return _PretrainedArch(arch, state_dict)


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

    # lazy: optim imports fastai, which `countnet weights import` (weights -> model) skips
    from countnet_classify.optim import FusedAdam

    kwargs.setdefault("opt_func", FusedAdam)
    n_out = 1 if target else len(dls.vocab)
    if arch == "lenet":
        learn = Learner(dls, LeNet(n_out), **kwargs)
    else:
        learn = vision_learner(
            dls,
            arch_builder(arch, state_dict),
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
    if arch == "lenet":
        model = LeNet(1 if regression else n_out)
    else:
        from fastai.vision.learner import create_vision_model

        opts = head_options(head, head_dropout)
        model = create_vision_model(
            arch_builder(arch), 1 if regression else n_out, pretrained=False, **opts
        )
    return attach_rescale(model, arch) if regression else model
