"""The workflow's job commands (the Snakefile's shell rules): ``python -m MODULE`` with the
job's request as JSON on stdin, a bash here-string, its output in the rule's log.

Snakemake starts a shell rule's command itself; a ``run:`` block would cost a second
Snakemake process that parses the whole workflow again, seconds a job over dozens of jobs
(BENCHMARKS.md, "The main job's recipe").
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from countnet.errors import user_error_line
from countnet.signals import sigterm_as_interrupt, stop_report

# The interpreter: the Snakefile sets it to the one running Snakemake, whatever PATH says;
# a command pasted from a dry run (`snakemake -n -p`) falls back to the `python` on PATH.
# Braces doubled: Snakemake formats a shell command as a template.
PYTHON = '"${{COUNTNET_PYTHON:-python}}"'


class Request:
    """A job's request. Formatted into the command as one shell word (shlex), so any text
    in it (a note, a folder name) reaches the job as written. Not a builtin value: Snakemake
    neither records nor compares it (the rules' ``options`` params are what it compares),
    so where a job runs (its threads) never reruns it."""

    def __init__(self, **fields: Any):
        self.fields = fields

    def __format__(self, spec: str) -> str:
        return shlex.quote(json.dumps(self.fields))


def job_command(module: str) -> str:
    """The shell command of a job run by ``module``: ``params.request`` on stdin, stdout and
    stderr to the log (Snakemake's ``:q`` quotes its path)."""
    return f"{PYTHON} -m {module} <<< {{params.request}} > {{log:q}} 2>&1"


def run_job(work: Callable[[Callable[[str], None]], None], *, then: str) -> int:
    """A job process's body: ``work(say)``, SIGTERM stopping it as Ctrl-C does. An error a
    user can act on, or an interruption, ends the log with one ``error:`` line (``then``:
    what a rerun does); a bug ends it with its traceback. Returns the exit status."""

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        with sigterm_as_interrupt():
            work(say)
    except KeyboardInterrupt as e:  # Terminated (SIGTERM) is one too
        what, status = stop_report(e)
        say(f"error: {what}: {then}")
        return status
    except Exception as e:
        if (line := user_error_line(e)) is None:
            raise
        say(f"error: {line}")
        return 1
    return 0
