"""A newcomer's own folder (#27, item 3): `--transforms auto`, the default, gives a folder
that is not a countnet counting set fastai's aug_transforms (no 90-degree turns, no
upside-down images) and a counting set dihedral, says which and why on stderr and in
config.yaml; and the LR finder's default sweep is proportionate to a short training."""

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
    """Both folders trained once with the default --transforms (and --lr auto on the
    counting set: the finder's steps): {name: (process, config.yaml)}."""
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for name, data, extra in (("own", own, ["--lr", "0.01"]), ("count", tiny, [])):
        proc = run_countnet("train", data, *SMALL, *extra, "--runs-dir", runs, "--name", name)
        assert proc.returncode == 0, proc.stderr
        out[name] = proc, yaml.safe_load((runs / name / "config.yaml").read_text())
    return out


def test_a_plain_folder_gets_fastai_aug_transforms_and_says_why(trained):
    proc, cfg = trained["own"]
    assert cfg["run"]["transforms"] == "auto"
    assert cfg["resolved"]["transforms"] == "aug"
    reason = cfg["resolved"]["transforms_reason"]
    assert reason.startswith("auto: not a countnet counting set"), reason
    assert f"transforms: aug ({reason})" in proc.stderr
    assert "can change the count" not in proc.stderr  # no circles here to cut off


def test_a_counting_set_keeps_dihedral(trained):
    proc, cfg = trained["count"]
    assert cfg["resolved"]["transforms"] == "dihedral"
    assert cfg["resolved"]["transforms_reason"].startswith("auto: a countnet counting set")
    assert "can change the count" not in proc.stderr


def test_explicit_presets_and_runs_recorded_before_auto(own, tiny):
    from countnet_classify.spec import RunSpec
    from countnet_classify.transforms import PRESETS, resolve_transforms

    for preset in PRESETS:
        assert resolve_transforms(preset, own) == (preset, f"--transforms {preset}")
    # a counting run recorded as dihedral before auto existed is the same run under auto
    # (a sweep's finished run, --resume); on a plain folder it is not
    for data, diff in ((tiny, {}), (own, {"transforms": ("dihedral", "aug")})):
        old = RunSpec(data=str(data), transforms="dihedral").resume_key()
        assert RunSpec(data=str(data)).resume_diff(old) == diff
