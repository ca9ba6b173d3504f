"""The report's "circles or pixels?" pairing and reading (countnet_classify.report.pixels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from countnet_classify.report import pixels
from countnet_classify.report.views import RunView

PLAIN = {"counts": "1-5", "per_class": 300, "size": 48, "radius": "3", "no_overlap": True,
         "seed": 0, "name": "count-1-5"}  # fmt: skip
SHAPES = {"distractors": "3-5", "distractor_shape": ["square", "ring"],
          "distractor_radius": "2-6", "match_area": True}  # fmt: skip


def view(
    name: str, params: dict | None, error: float, transforms="dihedral", lr_used=0.01, **run
) -> RunView:
    options = {"arch": "resnet18", "pretrained": False, "size": 48, "epochs": 4, "lr": 0.01}
    config = {
        "run": {**options, **run},
        "resolved": {
            "name": name,
            "batch_size": 64,
            "transforms": transforms,
            "precision": "bf16",
        },  # fmt: skip
        "summary": {"final_error_rate": error},
        "data": {
            "root": f"datasets/{name}",
            "n_valid": 300,
            "classes": list("12345"),
            "valid_class_counts": dict.fromkeys("12345", 60),
        },  # fmt: skip
        "dataset_params": params,
        "lr": {"used": lr_used},
    }
    return RunView(Path(name), config, [], [], None)


def test_runs_pair_on_the_same_set_and_budget_only():
    plain = view("plain", PLAIN, 0.0)
    shapes = view("shapes", {**PLAIN, **SHAPES, "name": "other-name"}, 0.36)
    longer = view("longer", {**PLAIN, **SHAPES}, 0.17, epochs=12)  # another budget
    decayed = view("decayed", {**PLAIN, **SHAPES}, 0.3, wd=0.1)  # another recipe
    bigger = view("bigger", {**PLAIN, "size": 64, **SHAPES}, 0.2)  # another set
    folder = view("folder", None, 0.1)  # not a countnet set
    flipped = view("flipped", {**PLAIN, **SHAPES}, 0.4, transforms="none", lr_used=0.003)
    views = [plain, shapes, longer, decayed, bigger, folder, flipped]
    pairs = pixels.pairs(views)
    assert [(p.name, d.name) for p, d in pairs] == [("plain", "shapes"), ("plain", "flipped")]
    row, other = pixels.rows(views)
    assert row[:7] == ["plain", "0.0000", "shapes", "3-5 an image (square, ring)", "yes",
                       "0.3600", "0.8000"]  # fmt: skip
    assert row[7].startswith("circles, not pixels (far below chance") and row[8] == "none"
    assert other[8] == "transforms: dihedral vs none; lr used: 0.01 vs 0.003"  # said
    assert pixels.rows([plain, longer, decayed, folder]) == []  # nothing to compare


@pytest.mark.parametrize(
    "plain, error, matched, words",
    [
        (0.0, 0.78, True, "cannot tell: at chance with distractors, where foreground area"),
        (0.0, 0.01, True, "circles, not pixels: as accurate"),
        (0.02, 0.03, True, "circles, not pixels: as accurate"),
        (0.0, 0.36, True, "circles, not pixels (far below chance"),
        (0.0, 0.36, False, "circles among other shapes; areas not matched, so pixels could"),
        (0.0, 0.79, False, "cannot tell: at chance with distractors"),
    ],
)
def test_reading_against_chance_and_the_plain_run(plain, error, matched, words):
    assert pixels.reading(plain, error, 0.8, 300, matched).startswith(words)
