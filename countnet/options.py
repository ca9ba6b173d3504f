"""One declaration per option: a spec dataclass's field carries its command-line help,
choices and spelling in its metadata (``cli``), and ``spec_options`` gives a typer command
those fields as its options, so adding a field adds the option.

typer builds a command from its function's signature; ``spec_options`` writes that
signature (``__signature__`` and ``__annotations__``) with one ``Annotated[type,
typer.Option(...)]`` parameter per field, where the function's ``**options`` stands.
``spec_values`` turns the parsed values back into the spec's keyword arguments.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

METADATA_KEY = "cli"


class _AsField:
    """Cli.default when the command line's default is the field's own."""

    def __repr__(self) -> str:
        return "AS_FIELD"


_AS_FIELD: Any = _AsField()


@dataclasses.dataclass(frozen=True)
class Cli:
    """How a spec field appears on the command line (see ``cli``)."""

    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    notes: Mapping[str, str] | None = None
    type: Any = None
    default: Any = _AS_FIELD
    argument: bool = False
    multiple: bool = False

    def help_text(self) -> str:
        """``help`` with "{choices}" replaced by the choices (each with its note, if any)."""
        if not self.choices:
            return self.help
        if self.notes is not None:
            if set(self.notes) != set(self.choices):
                raise ValueError(f"notes {sorted(self.notes)} != choices {list(self.choices)}")
            text = "; ".join(f"{c}: {self.notes[c]}" for c in self.choices)
        else:
            text = " | ".join(self.choices)
        if "{choices}" not in self.help:
            raise ValueError(f"help {self.help!r} does not show its choices ({{choices}})")
        return self.help.replace("{choices}", text)


def cli(
    help: str,
    *,
    flags: tuple[str, ...] = (),
    choices: Iterable[str] = (),
    notes: Mapping[str, str] | None = None,
    type: Any = None,
    default: Any = _AS_FIELD,
    argument: bool = False,
    multiple: bool = False,
) -> dict[str, Cli]:
    """Field metadata declaring the field a command-line option (``argument``: a positional
    argument). ``help`` may hold "{choices}", rendered from ``choices`` (joined by " | ", or
    "choice: note; ..." with ``notes``). ``flags``: the spelling where it is not --field-name
    (e.g. ("--quiet", "-q")). ``type`` and ``default``: the command line's, where the
    field's differ (a range typed as text, say). ``multiple``: repeatable, the values joined
    by commas (what the spec parses)."""
    return {
        METADATA_KEY: Cli(
            help, tuple(flags), tuple(choices), notes, type, default, argument, multiple
        )
    }


# Metadata of a field that is no command-line option (set by other means).
NOT_CLI: dict[str, None] = {METADATA_KEY: None}


def option_fields(spec: type) -> dict[str, Cli]:
    """{field name: its Cli} of every command-line field of ``spec``, in field order. A
    field without metadata is an error: each is an option (``cli``) or says it is not
    (``NOT_CLI``)."""
    out = {}
    for f in dataclasses.fields(spec):
        if METADATA_KEY not in f.metadata:
            raise TypeError(f"{spec.__name__}.{f.name}: declare cli(...) or NOT_CLI metadata")
        if f.metadata[METADATA_KEY] is not None:
            out[f.name] = f.metadata[METADATA_KEY]
    return out


def _default(spec: type, name: str, meta: Cli) -> Any:
    """The command line's default of field ``name`` (dataclasses.MISSING: required)."""
    if meta.default is not _AS_FIELD:
        return meta.default
    return next(f.default for f in dataclasses.fields(spec) if f.name == name)


def spec_parameters(
    spec: type,
    *,
    only: Iterable[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[inspect.Parameter]:
    """typer parameters for ``spec``'s command-line fields (``only`` those, if given), in
    field order; ``overrides`` replaces Cli attributes per field (a command's own default
    or help)."""
    # lazy: the specs import this module, and the Snakefile reads them without typer
    import typer

    fields, hints, overrides = option_fields(spec), typing.get_type_hints(spec), overrides or {}
    unknown = (set(overrides) | set(only or ())) - set(fields)
    if unknown:
        raise ValueError(f"not options of {spec.__name__}: {', '.join(sorted(unknown))}")
    params = []
    for name, meta in fields.items():
        if only is not None and name not in only:
            continue
        meta = dataclasses.replace(meta, **overrides.get(name, {}))
        kind = typer.Argument if meta.argument else typer.Option
        info = kind(*([] if meta.argument else meta.flags), help=meta.help_text())
        annotation = list[str] | None if meta.multiple else (meta.type or hints[name])
        default = _default(spec, name, meta)
        if default is dataclasses.MISSING:
            default = inspect.Parameter.empty
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, info],
            )
        )
    return params


def spec_options(
    spec: type,
    *,
    only: Iterable[str] | None = None,
    before: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Decorate a typer command ``f(..., **options)``: its signature gets ``spec``'s options
    (see ``spec_parameters``) after its own parameters, or before its parameter ``before``;
    typer passes their values in ``options``."""

    def decorate(func: F) -> F:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        names = [p.name for p in own]
        if before is not None and before not in names:
            raise ValueError(f"{func.__name__} has no parameter {before!r}")
        at = len(own) if before is None else names.index(before)
        generated = spec_parameters(spec, only=only, overrides=overrides)
        params = own[:at] + generated + own[at:]
        func.__signature__ = inspect.Signature(params, return_annotation=None)
        func.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return func

    return decorate


def spec_values(spec: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Parsed command-line ``values`` of ``spec``'s fields as its keyword arguments: paths
    as text, a repeatable option's values joined by commas (None when none was given)."""
    fields = option_fields(spec)
    out = {}
    for name, value in values.items():
        if fields[name].multiple:
            value = ",".join(value) if value else None
        elif isinstance(value, Path):
            value = str(value)
        out[name] = value
    return out
