"""DatasetSpec parsing and validation (the same model the CLI and Snakefile use)."""

from __future__ import annotations

import pytest

from countnet_gen.errors import CountnetError
from countnet_gen.spec import DatasetSpec, parse_int_range


def test_range_is_inclusive():
    spec = DatasetSpec(counts="45-50", per_class=10)
    assert spec.classes == [45, 46, 47, 48, 49, 50]


@pytest.mark.parametrize("text", ["50-45", "abc", "5", "-3-5", "0-4", "4-", "1-2-3", ""])
def test_bad_ranges(text):
    with pytest.raises(CountnetError):
        parse_int_range(text, "--range", allow_single=False)


def test_round_trip_through_dict():
    spec = DatasetSpec(counts=(1, 5), per_class=50, size=64, radius="2-4", no_overlap=True, seed=9)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    assert (
        DatasetSpec.from_dict(
            {
                "range": "1-5",
                "per_class": 50,
                "size": 64,
                "radius": "2-4",
                "no_overlap": True,
                "seed": 9,
            }
        )
        == spec
    )


def test_unknown_config_key_is_named():
    with pytest.raises(CountnetError, match="unknown dataset option.*colour"):
        DatasetSpec.from_dict({"range": "1-5", "colour": "red"})


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"per_class": 0}, "--per-class"),
        ({"size": 0}, "--size"),
        ({"radius": "0"}, "--radius must be positive"),
        ({"radius": "-2"}, "--radius"),
        ({"radius": "8-4"}, "reversed"),
        ({"radius": "200"}, "too large"),
        ({"valid_pct": 1.5}, "--valid-pct"),
        ({"fg": "#fff"}, "--fg"),
        ({"fg": "white"}, "same colour"),
        ({"counts": "400-500", "no_overlap": True, "radius": "10"}, "cannot be placed"),
    ],
)
def test_invalid_specs(kwargs, fragment):
    kwargs = {"counts": "1-5", **kwargs}
    with pytest.raises(CountnetError, match=fragment):
        DatasetSpec(**kwargs)


def test_default_name_reflects_parameters():
    a = DatasetSpec(counts="45-50", radius="4-12", no_overlap=True)
    b = DatasetSpec(counts="45-50")
    assert a.default_name() != b.default_name()
    assert a.default_name().startswith("count-45-50")
