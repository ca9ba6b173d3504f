"""``countnet train --gpus N``: N processes started here, each joining the group and calling
an entry function (`countnet train` passes its own), with rank 0's output relayed back."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from countnet.atomic import write_text_atomic
from countnet.errors import USER_ERRORS, CountnetError, one_line
from countnet.malloc import retain_freed_memory_for_training
from countnet_classify.parallel.group import join

Entry = Callable[..., object]  # entry(spec, say=..., figures=...), as train.train


def launch(spec, entry: Entry, *, say=print, figures: bool = True) -> Path:
    """Call ``entry`` for ``spec`` in ``spec.gpus`` processes started here; returns the run
    folder. What rank 0 says and prints comes back here (``say``, and this process's
    sys.stdout and sys.stderr — a workflow job's log, a test's capture — not the inherited
    descriptors); a user error it raises comes back as this one's. When one process fails
    the others are stopped (they would wait for it in the next collective)."""
    ctx = mp.get_context("spawn")
    output, rank0_output = ctx.Pipe(duplex=False)
    pump = threading.Thread(target=_pump, args=(output, say), daemon=True)
    with tempfile.TemporaryDirectory(prefix="countnet-ddp-") as tmp:
        store = f"file://{Path(tmp) / 'store'}"
        # Each process gets its share of this one's threads (a workflow job's `threads`):
        # N processes of all of them each would oversubscribe the cores.
        threads = max(1, torch.get_num_threads() // spec.gpus)
        tty = (sys.stdout.isatty(), sys.stderr.isatty())
        args = (entry, spec, figures, store, tmp, os.getpid(), rank0_output, tty, threads)
        procs = mp.start_processes(
            _worker, args=args, nprocs=spec.gpus, join=False, start_method="spawn"
        )
        rank0_output.close()  # the workers hold it now: the pump ends when they have exited
        pump.start()
        try:
            codes, stopped = _wait_all(procs.processes)
        finally:
            pump.join(timeout=10)
        reports = {r: json.loads(f.read_text()) for r in codes if (f := _report(tmp, r)).is_file()}
    if any(codes.values()):
        _raise_failure(codes, stopped, reports)
    return spec.run_dir


def _wait_all(processes: list) -> tuple[dict[int, int], set[int]]:
    """Each process's exit code, and the ranks terminated here after another one failed."""
    running = {p.sentinel: (i, p) for i, p in enumerate(processes)}
    codes: dict[int, int] = {}
    stopped: set[int] = set()
    try:
        while running:
            for sentinel in wait(list(running)):
                i, p = running.pop(sentinel)
                p.join()
                codes[i] = p.exitcode
                if p.exitcode and not stopped:
                    for j, other in running.values():
                        if other.is_alive():  # one that died meanwhile died by itself
                            stopped.add(j)
                            other.terminate()
    finally:
        for _, p in running.values():
            p.terminate()
            p.join()
    return codes, stopped


def _raise_failure(codes: dict[int, int], stopped: set[int], reports: dict[int, dict]) -> None:
    """The error of a run whose processes did not all succeed: a user error a rank
    reported, a process killed from outside, a bug's traceback, or an exit code."""
    for rank in sorted(reports):
        if reports[rank]["kind"] == "user":
            raise CountnetError(reports[rank]["text"])
    # A process killed from outside (the out-of-memory killer) is the cause; the others
    # then fail in their next collective.
    for rank, code in sorted(codes.items()):
        if code < 0 and not (rank in stopped and code == -signal.SIGTERM):
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
            raise CountnetError(f"training process {rank} died ({how}): continue with --resume")
    if reports:
        raise RuntimeError(reports[min(reports)]["text"])  # a bug: its traceback
    rank = min(r for r, c in codes.items() if c and r not in stopped)
    raise CountnetError(f"training process {rank} failed (exit code {codes[rank]})")


def _report(folder: str, rank: int) -> Path:
    """Why worker ``rank`` stopped (JSON: kind "user" or "bug", text)."""
    return Path(folder) / f"rank{rank}.json"


def _worker(
    rank: int,
    entry: Entry,
    spec,
    figures: bool,
    store: str,
    tmp: str,
    parent: int,
    output,
    tty,
    threads: int,
) -> None:
    _die_with_parent(parent)
    if rank == 0:
        sys.stdout, sys.stderr = _Relay(output, 1, tty[0]), _Relay(output, 2, tty[1])
        say = _Relay(output, 3, False).say
    else:
        output.close()
        say = _silent

    def report(kind: str, text: str) -> None:
        write_text_atomic(_report(tmp, rank), json.dumps({"kind": kind, "text": text}))

    retain_freed_memory_for_training()  # a process of countnet's own, as `countnet train`
    try:
        torch.set_num_threads(threads)
        join(rank, spec.gpus, rank, spec.device, store)
        entry(spec, say=say, figures=figures)
    except KeyboardInterrupt:  # Ctrl-C reaches every process; the launching one says so
        sys.exit(130)
    except USER_ERRORS as e:  # one line, as `countnet` reports them in one process
        report("user", one_line(e))
        sys.exit(2)
    except Exception:
        report("bug", f"training process {rank} failed:\n{traceback.format_exc()}")
        sys.exit(1)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class _Relay(io.TextIOBase):
    """A worker's sys.stdout (1), sys.stderr (2) or say (3), sent to the launching process
    (``_pump``)."""

    def __init__(self, conn, stream: int, tty: bool):
        self.conn, self.stream, self.tty = conn, stream, tty

    def write(self, text: str) -> int:
        if text:
            self.conn.send((self.stream, text))
        return len(text)

    def say(self, msg: str) -> None:
        self.write(msg)

    def isatty(self) -> bool:
        return self.tty


def _pump(conn, say) -> None:
    """Give what rank 0 prints and says to this process's stdout, stderr and ``say``."""
    while True:
        try:
            stream, text = conn.recv()
        except (EOFError, OSError):
            return
        if stream == 3:
            say(text)
            continue
        target = sys.stdout if stream == 1 else sys.stderr
        target.write(text)
        target.flush()


def _silent(msg: str) -> None:
    pass


def _die_with_parent(parent: int) -> None:
    """A worker dies with the process that started it (SIGKILL included): an orphan would
    keep training, and hold the run's lock, after `countnet train` was killed."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
