"""Transform selection (label safety from the generator's metadata) and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from countnet_classify.transforms import PRESETS, at_risk, label_safety
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate
from tests.conftest import assert_one_line_error

FAST = ["--size", "32", "--bs", "8", "--workers", "0"]


def rows(*circle_sets, split="train"):
    return [{"split": split, "circles": np.asarray(c, float)} for c in circle_sets]


def test_zoom_warp_preset_flagged_near_border_dihedral_safe():
    size = 64
    near_border = rows([[4.0, 30.0, 3.0]], [[32.0, 32.0, 3.0]])  # one image touches the band
    assert label_safety(near_border, size, "aug") == pytest.approx(0.5)
    for safe in ("none", "flips", "dihedral"):
        assert label_safety(near_border, size, safe) == 0.0
    centred = rows([[32.0, 32.0, 3.0], [30.0, 35.0, 2.0]])
    assert label_safety(centred, size, "aug") == 0.0  # depends on the data, not the name
    assert not at_risk(np.zeros((0, 3)), size, PRESETS["aug"].cut)
    # validation images do not count: they are never augmented
    assert label_safety(rows([[2.0, 2.0, 1.0]], split="valid"), size, "aug") == 0.0


@pytest.fixture(scope="module")
def border_set(tmp_path_factory) -> Path:
    """Overlapping circles anywhere: plenty of them near the border."""
    spec = DatasetSpec(counts=(2, 3), per_class=10, size=32, radius=(2, 3), valid_pct=0.3)
    return generate(spec, tmp_path_factory.mktemp("sel") / "border", workers=1)


def test_select_transforms_then_train_with_the_file_then_report(cli, border_set, tmp_path):
    out = tmp_path / "sel.json"
    r = cli(
        "select-transforms",
        border_set,
        "--out",
        out,
        "--candidates",
        "none,dihedral,aug",
        "--no-pretrained",
        "--arch",
        "resnet18",
        "--epochs",
        "1",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    table = {row["preset"]: row for row in result["table"]}
    assert list(table) == ["none", "dihedral", "aug"]
    assert table["aug"]["label_safe"] is False and table["aug"]["label_risk_fraction"] > 0.5
    assert table["dihedral"]["label_safe"] is True and table["none"]["label_risk_fraction"] == 0
    for row in table.values():
        assert set(row) >= {"error_rate", "valid_loss", "time"}
    assert result["chosen"] in ("none", "dihedral")
    assert result["budget"]["epochs"] == 1 and result["budget"]["lr"] == 1e-3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".select-")]

    runs = tmp_path / "runs"
    r = cli(
        "train",
        border_set,
        "--transforms",
        out,
        "--no-pretrained",
        "--epochs",
        "1",
        "--lr-find-iters",
        "30",
        "--runs-dir",
        runs,
        "--name",
        "sel",
        "--quiet",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    run = runs / "sel"
    assert json.loads((run / "transforms.json").read_text())["chosen"] == result["chosen"]

    r = cli("report", run, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    assert (
        "| run | dataset | arch | head | pretrained | transforms | epochs | final error_rate "
        "| best error_rate | wall time | device |" in md
    )
    # the run's cost.json: the trained network's counts, its exported weights' size
    from countnet_classify.model import build_model

    cost = json.loads((run / "cost.json").read_text())
    model_json = json.loads((run / "model.json").read_text())
    net = build_model(model_json["arch"], 2, model_json["head"], model_json["head_dropout"])
    assert cost["params"] == sum(p.numel() for p in net.parameters())
    assert cost["weights_bytes"] == (run / "model.safetensors").stat().st_size
    assert cost["size"] == 32 and cost["classes"] == 2 and cost["latency_ms"] > 0
    assert cost["arch"] == "resnet34" and cost["trainable_frozen"] is None  # from scratch
    # the answer comes first: learned?, final error, chance (2 balanced classes: 0.5)
    assert md.index("Can a CNN count?") < md.index("## Summary")
    assert "| run | dataset | learned? | final error_rate | chance | first reached best |" in md
    answer = next(ln for ln in md.splitlines() if ln.startswith("| sel | border |"))
    assert "| 0.5000 |" in answer and "epoch 1 of 1" in answer
    assert "| epoch | train_loss | valid_loss | error_rate | time |" in md
    assert "| 1 | " in md and "no: trained from scratch" in md
    assert "label-unsafe: can change" in md and "(chosen)" in md
    assert "![LR finder](../runs/sel/lr_find.png)" in md
    assert "Chosen learning rate" in md and "valley" in md
    assert "gen: counts | 2-3" in md  # dataset parameters
    assert "](../runs/sel/maps.png)" in md  # where the count comes from
    assert page.count("data:image/png;base64,") == 6  # every figure embedded: reads offline
    assert "<th>error_rate</th>" in page
    assert "## Model cost" in md and "<h2>Model cost</h2>" in page
    cost_row = next(
        ln for ln in md.split("## Model cost")[1].splitlines() if ln.startswith("| sel |")
    )
    assert f"| {cost['weights_bytes'] / 2**20:.1f} MiB |" in cost_row
    assert f"| {cost['params'] / 1e6:.2f} M |" in cost_row
    assert f"| {cost['macs'] / 1e9:.3f} G |" in cost_row

    # A run from before cost.json: dashes; a damaged cost.json: one line, no report
    (run / "cost.json").write_text('{"params": ')
    r = cli("report", run, "--out", tmp_path / "rep2")
    assert_one_line_error(r, "not a countnet cost.json")
    assert not (tmp_path / "rep2" / "report.md").exists()
    (run / "cost.json").unlink()
    r = cli("report", run, "--out", tmp_path / "rep3")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep3" / "report.md").read_text()
    cost_row = next(
        ln for ln in md.split("## Model cost")[1].splitlines() if ln.startswith("| sel |")
    )
    assert "| — | — | — |" in cost_row


def test_report_and_select_bad_input(cli, border_set, tmp_path):
    r = cli("report", tmp_path)
    assert_one_line_error(r, "not a countnet run folder")
    r = cli(
        "select-transforms",
        border_set,
        "--candidates",
        "none,sideways",
        "--out",
        tmp_path / "x.json",
        *FAST,
    )
    assert_one_line_error(r, "unknown preset", "sideways")
    r = cli("train", border_set, "--transforms", tmp_path / "missing.json", *FAST)
    assert_one_line_error(r, "does not exist")
    bad = tmp_path / "bad.json"
    bad.write_text('{"table": []}')
    r = cli("train", border_set, "--transforms", bad, *FAST)
    assert_one_line_error(r, "not a select-transforms result")


def test_verdict_against_chance():
    from countnet_classify.report.views import chance_error, verdict

    cfg = {"data": {"classes": ["1", "2", "3"], "valid_class_counts": {"1": 10, "2": 10, "3": 20}}}
    assert chance_error(cfg) == pytest.approx(0.5)  # always answering "3"
    assert chance_error({"data": {"classes": list("abcde")}}) == pytest.approx(0.8)
    assert verdict(0.80, 0.8, 600) == "no: at chance"
    assert verdict(0.78, 0.8, 600) == "no: at chance"  # within two standard errors (0.033)
    assert verdict(0.60, 0.8, 600) == "partly (75% of chance)"
    assert verdict(0.01, 0.8, 600) == "yes (1.2% of chance)"
    assert verdict(0.0, 0.8, 600) == "yes (0.0% of chance)"


def test_selection_keeps_the_default_within_noise_and_never_picks_unsafe():
    from countnet_classify.experiments.select import choose

    def row(preset, err, safe=True):
        return {"preset": preset, "error_rate": err, "valid_loss": err, "label_safe": safe}

    rows = [row("none", 0.40), row("dihedral", 0.42), row("aug", 0.0, safe=False)]
    chosen, why = choose(rows, "dihedral", 100)  # 2 SE of the difference: 0.139 > 0.02
    assert chosen == "dihedral" and "within noise" in why
    chosen, why = choose(rows, "dihedral", 100_000)  # the same gap on many images is real
    assert chosen == "none" and "beats the default" in why
    chosen, _ = choose([row("none", 0.5), row("flips", 0.3)], "dihedral", 50)  # no default
    assert chosen == "flips"
    # every chance-level tie keeps the default
    assert choose([row("none", 0.8), row("dihedral", 0.8)], "dihedral", 600)[0] == "dihedral"
    with pytest.raises(Exception, match="every candidate"):
        choose([row("aug", 0.0, safe=False)], "dihedral", 10)


def test_markdown_cells_escape_pipes_once():
    from countnet.tables import markdown_table

    table = markdown_table(["note"], [["a|b"]])
    assert table.splitlines()[-1] == "| a\\|b |"  # one backslash: a literal pipe
    # a data folder named with a newline stays on its row
    table = markdown_table(["data", "error"], [["/d/a\nb", 0.5]])
    assert table.splitlines()[-1] == "| /d/a\\nb | 0.5 |"
