"""One declaration per option: RunSpec's and DatasetSpec's fields, the commands' options
(countnet.options) and config/schemas/config.schema.yaml agree, and any drift fails here."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from countnet import cli as countnet_cli
from countnet.options import NOT_CLI, cli, option_fields, spec_options, spec_values
from countnet_classify import spec as cfg
from countnet_classify.spec import RunSpec
from countnet_classify.transforms import AUTO, PRESETS
from countnet_gen.distractors import SHAPES
from countnet_gen.spec import DatasetSpec

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schemas" / "config.schema.yaml").read_text())
# `countnet gen`'s options that are not part of the dataset (how and where it is written)
GEN_ONLY = {"workers", "out", "force", "quiet"}
# select-transforms' own options, beside the RunSpec fields it takes
SELECT_ONLY = {"out", "candidates", "default"}


def _command(name: str):
    return typer.main.get_command(countnet_cli.app).commands[name]


def _params(name: str) -> dict:
    return {p.name: p for p in _command(name).params if p.name != "help"}


def test_every_field_is_an_option_unless_marked_and_every_option_a_field():
    assert set(_params("train")) == set(option_fields(RunSpec))
    assert set(_params("gen")) == set(option_fields(DatasetSpec)) | GEN_ONLY
    assert set(_params("select-transforms")) == set(countnet_cli.SELECT_OPTIONS) | SELECT_ONLY
    not_cli = {
        spec: {f.name for f in dataclasses.fields(spec)} - set(option_fields(spec))
        for spec in (RunSpec, DatasetSpec)
    }
    assert not_cli == {RunSpec: {"note"}, DatasetSpec: {"name"}}


def test_defaults_are_the_fields_own():
    """Each command's defaults, parsed, give the spec's defaults (select-transforms: its
    own, declared as overrides where it calls spec_options)."""
    ctx = _command("train").make_context("train", ["d"])
    assert countnet_cli._run_spec(ctx.params) == RunSpec(data="d")
    ctx = _command("gen").make_context("gen", ["--range", "1-5"])
    given = {k: v for k, v in ctx.params.items() if k not in GEN_ONLY}
    assert DatasetSpec(**spec_values(DatasetSpec, given)) == DatasetSpec(counts=(1, 5))
    ctx = _command("select-transforms").make_context("select-transforms", ["d"])
    given = {k: v for k, v in ctx.params.items() if k not in SELECT_ONLY}
    expected = {"epochs": 1, "lr": 1e-3}
    defaults = RunSpec(data="d").to_dict()
    assert spec_values(RunSpec, given) == {
        k: expected.get(k, defaults[k]) for k in countnet_cli.SELECT_OPTIONS
    }
    assert ctx.params["candidates"] == ",".join(PRESETS)


def test_spellings_that_are_not_the_field_name():
    opts = {name: (p.opts, p.secondary_opts) for name, p in _params("train").items()}
    assert opts["pretrained"] == (["--pretrained"], ["--no-pretrained"])
    assert opts["quiet"] == (["--quiet", "-q"], [])
    assert opts["lr_find_iters"] == (["--lr-find-iters"], [])
    assert _params("train")["data"].param_type_name == "argument"
    gen = _params("gen")
    assert gen["counts"].opts == ["--range"] and gen["counts"].required
    assert (gen["no_overlap"].opts, gen["no_overlap"].secondary_opts) == (
        ["--no-overlap"],
        ["--overlap"],
    )
    assert gen["holdout"].multiple and gen["distractor_shape"].multiple
    assert gen["quiet"].opts == ["--quiet", "-q"]


@pytest.mark.parametrize("command, spec", [("train", RunSpec), ("gen", DatasetSpec)])
def test_help_shows_every_choice(command, spec):
    params = _params(command)
    for name, meta in option_fields(spec).items():
        assert "{choices}" not in params[name].help, name
        for choice in meta.choices:
            assert choice in params[name].help, (name, choice)


def test_choices_are_the_constants():
    fields = option_fields(RunSpec)
    for name, choices in (
        ("task", cfg.TASKS), ("loss", cfg.LOSSES), ("arch", cfg.ARCHS),
        ("lr_policy", cfg.LR_POLICIES), ("opt", cfg.OPTIMIZERS), ("device", cfg.DEVICES),
        ("precision", cfg.PRECISIONS), ("loader", cfg.LOADERS), ("head", cfg.HEADS),
        ("transforms", (AUTO, *PRESETS)),
    ):  # fmt: skip
        assert fields[name].choices == choices, name
    assert option_fields(DatasetSpec)["distractor_shape"].choices == SHAPES


# -- config/schemas/config.schema.yaml ------------------------------------------------

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
# Run options the workflow sets itself (a config cannot)
SET_BY_WORKFLOW = {"data", "name", "runs_dir", "quiet", "resume", "force"}
# --transforms takes a preset or a select-transforms JSON: the schema cannot list it
OPEN_CHOICES = {"transforms"}


def _json_types(hint) -> set[str]:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return {JSON_TYPES[a] for a in args}


def test_the_config_schema_knows_every_run_option():
    """config/schemas: each `countnet train` option a config may set is in runOptions, with
    the choices countnet accepts (a new option or arch is never refused by the schema) and
    the field's types, null where the field's default is None."""
    props = SCHEMA["definitions"]["runOptions"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(RunSpec)}
    assert set(props) == set(fields) - SET_BY_WORKFLOW
    hints = typing.get_type_hints(RunSpec)
    cli_fields = option_fields(RunSpec)
    for name, prop in props.items():
        choices = cli_fields[name].choices if name in cli_fields else ()
        if choices and name not in OPEN_CHOICES:
            assert set(prop["enum"]) - {None} == set(choices), name
        if "type" in prop:
            types_ = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            assert set(types_) == _json_types(hints[name]), name
        if fields[name].default is None:
            assert "null" in prop.get("type", ()) or None in prop.get("enum", ()), name


def test_the_config_schema_knows_every_dataset_option():
    dataset = SCHEMA["definitions"]["datasetOptions"]  # datasets:, probe_defaults:, probes:
    assert SCHEMA["properties"]["datasets"]["additionalProperties"]["allOf"][0] == {
        "$ref": "#/definitions/datasetOptions"
    }
    # "range" is the config's (and the CLI's) word for counts; the name is the config's key
    names = {"range" if f.name == "counts" else f.name for f in dataclasses.fields(DatasetSpec)}
    assert set(dataset["properties"]) == names - {"name"}
    assert dataset["properties"]["distractor_shape"]["items"]["enum"] == list(SHAPES)
    select = SCHEMA["properties"]["select_transforms"]["allOf"][1]["properties"]
    assert select["candidates"]["items"]["enum"] == list(PRESETS)
    assert select["default"]["enum"] == list(PRESETS)


# -- countnet.options on a spec of its own ----------------------------------------------

LEVELS = ("low", "high")


@dataclass(frozen=True)
class Toy:
    path: str = field(metadata=cli("Where.", type=Path, argument=True))
    level: str = field(default="low", metadata=cli("{choices}.", choices=LEVELS))
    tags: tuple[str, ...] = field(default=(), metadata=cli("Tags.", multiple=True, default=None))
    quiet: bool = field(default=False, metadata=cli("Hush.", flags=("--quiet", "-q")))
    secret: str | None = field(default=None, metadata=NOT_CLI)


def _toy_app(spec=Toy, **kwargs) -> typer.Typer:
    app = typer.Typer()
    seen = {}

    @app.command()
    @spec_options(spec, **kwargs)
    def run(count: int = 1, **options) -> None:
        seen.update(spec_values(spec, options), count=count)

    app.seen = seen
    return app


def test_a_field_is_an_option_with_its_help_choices_and_spelling():
    app = _toy_app()
    r = CliRunner().invoke(app, ["p", "--level", "high", "--tags", "a", "--tags", "b,c", "-q"])
    assert r.exit_code == 0, r.output
    assert app.seen == {"path": "p", "level": "high", "tags": "a,b,c", "quiet": True, "count": 1}
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "low | high." in help_text and "--secret" not in help_text
    assert help_text.index("--count") < help_text.index("--level")  # own options first


def test_overrides_and_subsets_at_the_call_site():
    app = _toy_app(only=("path", "level"), before="count", overrides={"level": {"default": "high"}})
    assert CliRunner().invoke(app, ["p"]).exit_code == 0
    assert app.seen == {"path": "p", "level": "high", "count": 1}
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--tags" not in help_text and help_text.index("--level") < help_text.index("--count")
    with pytest.raises(ValueError, match="nope"):
        _toy_app(overrides={"nope": {}})


def test_declarations_that_cannot_be_rendered_are_refused():
    @dataclass
    class Bare:
        x: int = 0

    with pytest.raises(TypeError, match="Bare.x"):
        option_fields(Bare)

    @dataclass
    class Hidden:
        x: str = field(default="low", metadata=cli("No choices shown.", choices=LEVELS))

    with pytest.raises(ValueError, match="choices"):
        _toy_app(Hidden)

    @dataclass
    class Unnoted:
        x: str = field(default="low", metadata=cli("{choices}", choices=LEVELS, notes={"low": ""}))

    with pytest.raises(ValueError, match="notes"):
        _toy_app(Unnoted)


@pytest.mark.parametrize("name", ["ok-1.a_b", "nl\n", "a b", "../x", "it's", "$(id)", "é"])
def test_the_schema_refuses_a_name_a_job_command_could_not_hold(name):
    """Dataset, experiment and sweep names become paths in the jobs' shell commands: the
    default config with one dataset renamed, validated as the Snakefile validates it, passes
    with a plain name only, not even one ending in a newline (Python's $ matches before
    it); experiments and sweeps share the pattern."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"][name] = config["datasets"].pop("count-1-5")
    schema = str(REPO / "config" / "schemas" / "config.schema.yaml")
    if name == "ok-1.a_b":
        validate(config, schema)
    else:
        with pytest.raises(WorkflowError):
            validate(config, schema)
    patterns = {SCHEMA["properties"][k]["propertyNames"]["pattern"]
                for k in ("datasets", "experiments", "sweeps")}  # fmt: skip
    assert len(patterns) == 1
