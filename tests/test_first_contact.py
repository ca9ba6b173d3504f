"""A newcomer's own folder (#27, item 3): `--transforms auto`, the default, gives a folder
that is not a countnet counting set `upright`, fastai's aug_transforms without flips (no
90-degree turns, no mirror images), and a counting set dihedral, and says which and why on
stderr and in config.yaml."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import run_countnet

SMALL = ["--no-pretrained", "--arch", "lenet", "--size", "32", "--epochs", "1",
         "--bs", "8", "--workers", "0", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A user's folder: two classes of JPEGs, no countnet dataset.json."""
    root = tmp_path_factory.mktemp("own") / "photos"
    rng = np.random.default_rng(0)
    for cls, base in (("dark", 40), ("light", 180)):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            px = np.clip(rng.normal(base, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / cls / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def trained(own, tiny, tmp_path_factory):
    """Both folders trained once with the default --transforms and --lr:
    {name: (process, config.yaml)}."""
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for name, data in (("own", own), ("count", tiny)):
        proc = run_countnet("train", data, *SMALL, "--runs-dir", runs, "--name", name)
        assert proc.returncode == 0, proc.stderr
        cfg = yaml.safe_load((runs / name / "config.yaml").read_text())
        out[name] = proc, {**cfg, "_dir": runs / name}
    return out


def test_a_plain_folder_gets_aug_transforms_without_flips_and_says_why(trained):
    proc, cfg = trained["own"]
    assert cfg["run"]["transforms"] == "auto"
    assert cfg["resolved"]["transforms"] == "upright"
    reason = cfg["resolved"]["transforms_reason"]
    assert reason.startswith("auto: not a countnet counting set"), reason
    assert "without flips" in reason
    assert f"transforms: upright ({reason})" in proc.stderr
    assert "can change the count" not in proc.stderr  # no circles here to cut off


def test_a_counting_set_keeps_dihedral(trained):
    proc, cfg = trained["count"]
    assert cfg["resolved"]["transforms"] == "dihedral"
    assert cfg["resolved"]["transforms_reason"].startswith("auto: a countnet counting set")
    assert "can change the count" not in proc.stderr


def test_a_plain_folder_from_scratch_trains_at_a_fixed_rate_without_the_finder(trained):
    """--lr auto from scratch: a fixed rate on a user's folder (the finder's pick was worse
    and took half the time on digits and lfw); the finder's slide on a counting set."""
    from countnet_classify.spec import FOLDER_SCRATCH_LR

    proc, cfg = trained["own"]
    assert cfg["run"]["lr"] == "auto"
    assert cfg["lr"]["used"] == FOLDER_SCRATCH_LR and cfg["lr"]["suggestions"] == {}
    assert cfg["lr"]["source"].startswith("--lr auto (from scratch on a folder that is not")
    assert "LR finder" not in proc.stderr.replace("no LR finder", ""), proc.stderr
    assert not (cfg["_dir"] / "lr_find.png").exists()
    proc, cfg = trained["count"]
    assert cfg["lr"]["source"].startswith("LR finder, slide suggestion (--lr auto")
    assert "LR finder: up to 100 steps" in proc.stderr
    assert (cfg["_dir"] / "lr_find.png").is_file()


def test_explicit_presets_and_runs_recorded_before_auto(own, tiny):
    from countnet_classify.spec import RunSpec
    from countnet_classify.transforms import PRESETS, resolve_transforms

    for preset in PRESETS:
        assert resolve_transforms(preset, own) == (preset, f"--transforms {preset}")
    # a counting run recorded as dihedral before auto existed is the same run under auto
    # (a sweep's finished run, --resume); on a plain folder it is not
    for data, diff in ((tiny, {}), (own, {"transforms": ("dihedral", "upright")})):
        old = RunSpec(data=str(data), transforms="dihedral").resume_key()
        assert RunSpec(data=str(data)).resume_diff(old) == diff


def test_upright_augments_but_never_mirrors():
    """The plain-folder default on a training batch of 64 images, bright on the left: each
    most are moved or relit, none comes out mirrored (aug, fastai's default, flips about half,
    which turns a "7" into no digit at all)."""
    import torch
    from fastai.data.transforms import Pipeline
    from fastai.torch_core import TensorImage

    from countnet_classify.transforms import batch_transforms

    x = torch.zeros(64, 3, 32, 32)
    x[..., :16] = 1.0
    torch.manual_seed(0)
    y = Pipeline(batch_transforms("upright"), split_idx=0)(TensorImage(x.clone()))
    left_minus_right = y[..., :16].mean((1, 2, 3)) - y[..., 16:].mean((1, 2, 3))
    assert bool((left_minus_right > 0.2).all()), left_minus_right.min()
    changed = (y - x).abs().amax((1, 2, 3)) > 0.05
    assert int(changed.sum()) >= 48  # it augments (each transform applies with p = 0.75)


def test_a_hostile_dataset_json_is_no_counting_set_and_never_blocks(own, tmp_path):
    """`--transforms auto` and `--lr auto` look for countnet's dataset.json in DATA: a FIFO
    by that name (reading it would wait forever) or an oversized file is just not countnet's."""
    import os
    import subprocess
    import sys

    fifo, big = tmp_path / "fifo", tmp_path / "big"
    for folder in (fifo, big):
        folder.mkdir()
    os.mkfifo(fifo / "dataset.json")
    with open(big / "dataset.json", "wb") as f:
        f.truncate(17 << 20)  # sparse: 17 MB of zeros, over the 16 MB cap
    code = (
        "import sys; from countnet_gen.outdir import is_dataset; "
        "print(*map(is_dataset, sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, fifo, big, own],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.split() == ["False", "False", "False"], proc.stderr


def test_a_damaged_or_forged_dataset_json_makes_a_plain_folder(own, tiny, tmp_path):
    """Only a dataset.json whose spec is a valid DatasetSpec makes a counting set for the
    classifier: a forged one on a user's folder, or a damaged one beside a real manifest,
    gives the plain folder's defaults and records no dataset parameters; the label-safety
    check of a preset that can cut circles still refuses the damaged set in one line."""
    import json
    import shutil

    from countnet.errors import CountnetError
    from countnet_classify.record import dataset_params
    from countnet_classify.spec import RunSpec, auto_lr
    from countnet_classify.transforms import counting_metadata, default_preset
    from countnet_gen.outdir import counting_spec

    forged, damaged = tmp_path / "forged", tmp_path / "damaged"
    shutil.copytree(own, forged)
    (forged / "dataset.json").write_text(json.dumps({"spec": {"fg": 5}, "classes": None}))
    shutil.copytree(tiny, damaged)
    (damaged / "dataset.json").write_text('{"spec": {"range": "x"}, "classes": ["1"]}')
    for data in (forged, damaged):
        assert counting_spec(data) is None
        assert default_preset(data)[0] == "upright" and dataset_params(data) is None
        assert auto_lr(RunSpec(data=str(data), pretrained=False))[0] is None  # the fixed rate
    assert counting_metadata(forged) is None  # no manifest: a user's folder
    with pytest.raises(CountnetError, match="dataset.json is damaged"):
        counting_metadata(damaged)
    assert counting_spec(tiny) is not None and dataset_params(tiny)["counts"]
