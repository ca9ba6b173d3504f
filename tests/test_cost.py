"""countnet cost: the counts against torchvision's published figures, the table and CSV as a
user gets them, cost.json beside every run, bad input. No timing is asserted (speed lives
in bench/); only that latency and throughput were measured."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_countnet

ROOT = Path(__file__).resolve().parents[1]


def test_resnet34_counts_are_torchvisions_published_figures():
    """torchvision's ResNet-34 card: 21.8 M parameters, 3.66 GFLOPS (its name for MACs)."""
    import torchvision

    from countnet_classify.cost import model_cost

    row = model_cost("resnet34", size=224, classes=1000, head="linear", timed=False)
    tv = torchvision.models.resnet34(weights=None)
    assert row["params"] == sum(p.numel() for p in tv.parameters()) == 21_797_672
    assert row["params"] / 1e6 == pytest.approx(21.8, abs=0.05)
    assert row["macs"] / 1e9 == pytest.approx(3.66, abs=0.005)
    assert row["latency_ms"] is None and row["trainable"] == row["params"]


def test_cost_table_and_csv(tmp_path):
    import torchvision

    out = tmp_path / "cost.csv"
    r = run_countnet("cost", "resnet18", "lenet", "--size", "32", "--classes", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resnet18" in r.stdout and "lenet" in r.stdout and "MACs/image" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert [row["arch"] for row in rows] == ["resnet18", "lenet"]
    tv = torchvision.models.resnet18(weights=None)
    body = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    r18 = rows[0]
    assert int(r18["params"]) == body + 512 * 3 + 3  # the linear head on 3 classes
    # at 32 px the feature maps are 1/49 of 224 px's (stem /32: 1x1 against 7x7 at the end)
    assert 0.01 < int(r18["macs"]) / 1.814e9 < 0.05
    for row in rows:
        assert float(row["latency_ms"]) > 0 and float(row["throughput_ips"]) > 0
        assert int(row["weights_bytes"]) > 4 * int(row["params"]) - 1  # fp32 weights + header
        assert row["size"] == "32" and row["classes"] == "3"


def test_documented_cost_examples_run(tmp_path):
    readme = (ROOT / "README.md").read_text()
    examples = [
        shlex.split(ln, comments=True)[2:]
        for ln in readme.splitlines()
        if ln.startswith("countnet cost")
    ]
    assert len(examples) >= 2
    for args in examples:
        if "--no-timing" not in args:
            args = [*args, "--no-timing"]  # the timing itself is tested above, at 32 px
        r = run_countnet("cost", *args, cwd=tmp_path)
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
    ],
)
def test_cost_bad_input(args, fragments):
    r = run_countnet("cost", *args, "--no-timing")
    assert_one_line_error(r, *fragments)
