"""Where torchvision keeps each arch's ImageNet weights (the torch hub cache), known without
importing torch or torchvision (~4 s): the workflow asks for every experiment each time
Snakemake reads the Snakefile, which it does again in every job."""

from __future__ import annotations

import os
from pathlib import Path

# torchvision's file name for each arch's default ImageNet weights; tests/test_train.py
# checks every one against torchvision's own.
WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
    "squeezenet1_1": "squeezenet1_1-b8a52dc0.pth",
    "alexnet": "alexnet-owt-7be5be79.pth",
}


def hub_dir() -> Path:
    """torch.hub.get_dir() as torch computes it: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def cached_weights_path(arch: str) -> Path:
    """``weights.expected_weights_path(arch)``, without torch for the archs of WEIGHT_FILES."""
    if arch not in WEIGHT_FILES:
        # lazy: weights imports torch, which the Snakefile's parse must not (see above)
        from countnet_classify.weights import expected_weights_path

        return expected_weights_path(arch)
    return hub_dir() / "checkpoints" / WEIGHT_FILES[arch]
