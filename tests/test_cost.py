"""countnet cost: the counts against torchvision's published figures, the table and CSV as a
user gets them, cost.json beside every run, bad input. No timing is asserted (speed lives
in bench/); only that latency and throughput were measured."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import assert_one_line_error, run_countnet

ROOT = Path(__file__).resolve().parents[1]


def test_resnet34_counts_are_torchvisions_published_figures():
    """torchvision's ResNet-34 card: 21.8 M parameters, 3.66 GFLOPS (its name for MACs)."""
    from countnet_classify.cost import model_cost

    row = model_cost("resnet34", size=224, classes=1000, head="linear", timed=False)
    assert row["params"] == 21_797_672  # torchvision's num_params, exactly
    assert row["params"] / 1e6 == pytest.approx(21.8, abs=0.05)
    assert row["macs"] / 1e9 == pytest.approx(3.66, abs=0.005)
    assert row["latency_ms"] is None and row["trainable"] == row["params"]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_other_resnets_match_torchvisions_model_cards(arch):
    from torchvision.models import get_model_weights

    from countnet_classify.cost import model_cost

    meta = get_model_weights(arch).DEFAULT.meta
    row = model_cost(arch, size=224, classes=1000, head="linear", timed=False)
    assert row["params"] == meta["num_params"]
    assert row["macs"] / 1e9 == pytest.approx(meta["_ops"], abs=0.001)


def test_alexnet_counts_match_torchvisions_model_card():
    """countnet counts torchvision's AlexNet as torchvision's card does (61.1 M parameters,
    0.71 GFLOPS); countnet's alexnet is that body (features) under countnet's head."""
    import torchvision
    from torchvision.models import get_model_weights

    from countnet_classify.cost import count_macs, count_params, model_cost

    meta = get_model_weights("alexnet").DEFAULT.meta
    tv = torchvision.models.alexnet(weights=None)
    assert count_params(tv)[0] == meta["num_params"]
    assert count_macs(tv, 224) / 1e9 == pytest.approx(meta["_ops"], abs=0.001)
    row = model_cost("alexnet", size=224, classes=10, head="linear", timed=False)
    body = count_params(tv.features)[0]
    assert row["params"] == body + 256 * 10 + 10  # features + one linear layer on 256 maps
    assert row["macs"] == count_macs(tv.features, 224) + 256 * 10


def test_frozen_phase_trains_the_head_and_batchnorm():
    """The trainable count of fine_tune's frozen phase, from a real fastai freeze()."""
    import torchvision
    from fastai.vision.learner import vision_learner

    from countnet_classify.cost import model_cost
    from countnet_classify.model import head_options
    from tests.test_optim import _learner

    row = model_cost("resnet18", size=64, classes=3, head="linear", timed=False)
    dls = _learner(None).dls
    dls.vocab, dls.c = ["a", "b", "c"], 3
    loss = torch.nn.CrossEntropyLoss()
    arch = torchvision.models.resnet18
    opts = head_options("linear")
    learn = vision_learner(dls, arch, pretrained=False, n_out=3, loss_func=loss, **opts)
    learn.freeze()
    trained = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    assert row["trainable_frozen"] == trained < row["params"] / 10


def test_cost_table_and_csv(tmp_path):
    import torchvision

    out = tmp_path / "cost.csv"
    args = ("resnet18", "lenet", "--size", "32", "--classes", "3", "--head", "linear")
    r = run_countnet("cost", *args, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resnet18" in r.stdout and "lenet" in r.stdout and "MACs/image" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert [row["arch"] for row in rows] == ["resnet18", "lenet"]
    tv = torchvision.models.resnet18(weights=None)
    body = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    r18 = rows[0]
    assert int(r18["params"]) == body + 512 * 3 + 3  # the linear head on 3 classes
    # torchvision's resnet18 counted at 32 px, with a 3-class instead of a 1000-class fc
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        tv.eval()(torch.zeros(1, 3, 32, 32))
    assert int(r18["macs"]) == counter.get_total_flops() // 2 - 512 * 1000 + 512 * 3
    for row in rows:
        assert float(row["latency_ms"]) > 0 and float(row["throughput_ips"]) > 0
        assert int(row["weights_bytes"]) > 4 * int(row["params"]) - 1  # fp32 weights + header
        assert row["size"] == "32" and row["classes"] == "3"


def test_documented_cost_examples_run(cli, tmp_path, monkeypatch):
    page = (ROOT / "docs" / "cost.md").read_text()  # the manual's examples
    examples = [
        shlex.split(ln[2:], comments=True)[2:]
        for ln in page.splitlines()
        if ln.startswith("$ countnet cost")
    ]
    assert len(examples) >= 2
    for args in examples:  # as written
        monkeypatch.chdir(tmp_path)
        r = cli("cost", *args)
        assert r.returncode == 0, f"countnet cost {shlex.join(args)}: {r.stderr}"
        assert "resnet18" in r.stdout
    assert (tmp_path / "cost.csv").is_file()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["resnet99"], ["unknown architecture", "resnet99"]),
        (["resnet18", "--size", "4"], ["--size"]),
        (["resnet18", "--classes", "0"], ["--classes"]),
        (["resnet18", "--head", "deep"], ["unknown head", "deep"]),
        (["resnet18", "--device", "tpu"], ["--device"]),
        (["resnet18", "lenet", "--size", "12"], ["--size 12 is too small"]),
        (["squeezenet1_1", "--size", "16"], ["--size 16 is too small"]),
        (["alexnet", "--size", "62"], ["--size 62 is too small"]),
        (["resnet18", "--out", "{tmp}"], ["is a folder"]),
        (["resnet18", "--out", "{tmp}/a-file/x.csv"], ["cannot create"]),
    ],
)
def test_cost_bad_input(cli, args, fragments, tmp_path):
    (tmp_path / "a-file").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = cli("cost", *args, "--no-timing")  # the same main() as the console script
    assert_one_line_error(r, *fragments)
    assert not r.stdout  # refused before any table was printed


def test_narrower_xresnets_are_fastais_at_a_fraction_of_the_channels():
    """--arch xresnet18_half / _quarter: fastai's xresnet18 with widen 0.5 / 0.25 as the
    body (the same parameters), and far fewer MACs an image than ResNet-18."""
    from fastai.vision.models.xresnet import xresnet18

    from countnet_classify.cost import model_cost

    rows = {a: model_cost(a, size=48, classes=6, head="linear", device="cpu", timed=False)
            for a in ("resnet18", "xresnet18", "xresnet18_half", "xresnet18_quarter")}  # fmt: skip
    for arch, widen in (("xresnet18", 1.0), ("xresnet18_half", 0.5), ("xresnet18_quarter", 0.25)):
        fastai = xresnet18(widen=widen)
        body = sum(p.numel() for m in list(fastai.children())[:-4] for p in m.parameters())
        n_feat = fastai[-1].in_features
        assert rows[arch]["params"] == body + n_feat * 6 + 6, arch  # + the linear head
    macs = [
        rows[a]["macs"] for a in ("resnet18", "xresnet18", "xresnet18_half", "xresnet18_quarter")
    ]
    # the stem (32-32-64 channels at half the image's size) keeps its width
    assert macs[1] > 2.5 * macs[2] > 4 * macs[3] and macs[2] < macs[0] / 2


@pytest.mark.parametrize("arch", ["xresnet18_half", "lenet"])
def test_an_arch_without_imagenet_weights_refuses_them_first(arch):
    """--weights with an arch that has none says so, even where the workflow's `pretrained:
    auto` has already turned pretraining off (not "--no-pretrained", which nobody wrote)."""
    from countnet.errors import CountnetError
    from countnet_classify.spec import RunSpec

    for pretrained in (True, False):
        with pytest.raises(CountnetError, match=f"--arch {arch} has no pretrained weights"):
            RunSpec(data="d", arch=arch, weights="w.pth", pretrained=pretrained)
