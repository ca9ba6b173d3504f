"""The typer app class of the `countnet` command and its sub-apps: ``-h`` as well as
``--help``, usage lines that name arguments as the docs do (``DATA``, ``[ARCHS]...``)
and flags without a ``<bool>`` type beside ``--x/--no-x``."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Command(TyperCommand):
    """A typer command with plain argument names in its usage line and no type shown for
    its flags (typer writes ``{data}`` and ``<bool>``)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or (param.name or "").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class Group(TyperGroup):
    """A typer group with no type shown for its flags (--version, -h)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def _untyped_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer shows the metavar, when set, as the type
    return params


class Typer(typer.Typer):
    """typer.Typer whose commands are ``Command``s and whose help is also ``-h``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["context_settings"] = HELP_OPTIONS | kwargs.get("context_settings", {})
        super().__init__(cls=Group, **kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any):
        settings = HELP_OPTIONS | kwargs.pop("context_settings", {})
        return super().command(*args, cls=cls or Command, context_settings=settings, **kwargs)
