"""SIGTERM handled as Ctrl-C is: kill, systemd and SLURM (at preemption and at the time
limit) send it before SIGKILL, and a run stopped by it must be resumable like one stopped
by Ctrl-C, with the same hint and the shell's exit status for the signal (128 + number)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGINT_STATUS, SIGTERM_STATUS = 128 + signal.SIGINT, 128 + signal.SIGTERM
_received: list[int] = []  # SIGTERMs received: typer turns the exception into a bare 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python next runs bytecode, as Ctrl-C's KeyboardInterrupt is
    (every cleanup that handles one handles both). Every file countnet writes is
    temp-then-rename, so any such point is a safe one."""


class Stopped(Exception):
    """An interruption (``cause``: SIGINT's KeyboardInterrupt or SIGTERM's Terminated) and
    what to do next (``then``). Not a KeyboardInterrupt: typer would swallow it into a
    silent exit 130."""

    def __init__(self, cause: BaseException, then: str):
        super().__init__(then)
        self.cause, self.then = cause, then


def _raise_terminated(signum, frame) -> None:
    _received.append(signum)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated (main thread only, as signal handlers
    are); the previous handler is put back afterwards (the tests run main() in-process)."""
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_report(error: BaseException) -> tuple[str, int]:
    """(the line, the exit status) for an interruption: 130 for SIGINT, 143 for SIGTERM."""
    cause = error.cause if isinstance(error, Stopped) else error
    terminated = isinstance(cause, Terminated)
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    line = f"{what}: {error.then}" if isinstance(error, Stopped) else what
    return line, SIGTERM_STATUS if terminated else SIGINT_STATUS


def exit_status(status: int) -> int:
    """``status``, with typer's 130 for any interruption made 143 where it was SIGTERM."""
    return SIGTERM_STATUS if status == SIGINT_STATUS and _received else status
