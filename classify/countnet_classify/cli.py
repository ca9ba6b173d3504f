"""The `countnet` command: one verb per stage, each a thin wrapper over a library function.

Errors users can act on (CountnetError, missing files, permissions) end as one line on
stderr and exit code 2; set COUNTNET_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from countnet_gen.cli import EXAMPLES as GEN_EXAMPLES
from countnet_gen.cli import gen
from countnet_gen.errors import CountnetError

app = typer.Typer(
    name="countnet",
    help="What can a CNN learn, and what does it take? Generate counting datasets, train, report.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"countnet {version('countnet')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """What can a CNN learn, and what does it take? Generate counting datasets, train, report."""


app.command("gen", epilog=GEN_EXAMPLES)(gen)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line."""
    try:
        result = app(standalone_mode=False)
    except CountnetError as e:
        _fail(str(e))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        _fail(f"{e.strerror}: {e.filename}" if e.filename else str(e))
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", code=130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: bad option values, unknown options
        if type(e).__name__ == "NoArgsIsHelpError":
            typer.echo(e.format_message())
            sys.exit(0)
        _fail(" ".join(e.format_message().split()), code=getattr(e, "exit_code", 2))
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    if os.environ.get("COUNTNET_DEBUG"):
        raise
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)
