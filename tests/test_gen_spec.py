"""DatasetSpec parsing and validation (the same model the CLI and Snakefile use)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from countnet.errors import CountnetError
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
        ({"fg": "#ggg"}, "--fg must be a colour"),
        ({"bg": "no-such-colour"}, "--bg must be a colour"),
        ({"fg": "white"}, "same colour"),
        ({"fg": "#fff"}, "same colour"),
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
    c = DatasetSpec(counts="45-50", valid_pct=0.1)
    assert c.default_name() not in (a.default_name(), b.default_name())


def test_sets_with_other_parameters_share_no_image():
    from countnet_gen.writer import ImageJob, make_image

    train = DatasetSpec(counts="3-4", per_class=50, size=32, radius=2, seed=0)
    test = DatasetSpec(counts="3-4", per_class=10, size=32, radius=2, seed=0)  # same seed
    renamed = DatasetSpec(counts="3-4", per_class=50, size=32, radius=2, seed=0, name="x")
    for i in range(10):
        job = ImageJob(3, i, "train")
        a, b, c = make_image(train, job)[0], make_image(test, job)[0], make_image(renamed, job)[0]
        assert not np.array_equal(a, b)
        assert np.array_equal(a, c)  # the folder name is not a parameter of the pixels


def test_colours_are_read_by_pillow():
    from countnet_gen.spec import parse_color

    assert parse_color("navy", "--fg") == "#000080"
    assert parse_color("rgb(31,119,180)", "--fg") == "#1f77b4"
    assert parse_color("#ABC", "--fg") == "#aabbcc"
    with pytest.raises(CountnetError, match="opaque"):
        parse_color("#00000080", "--fg")


def test_usable_cpus_honours_a_cgroup_quota(tmp_path):
    from countnet.cpus import cgroup_cpu_quota, usable_cpus

    assert cgroup_cpu_quota(tmp_path) is None  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker --cpus 1.5
    assert cgroup_cpu_quota(tmp_path) == 2
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 1
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
