"""Shared helpers: run `countnet` as a user would, as a subprocess or in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

COUNTNET = shutil.which("countnet") or str(Path(sys.executable).with_name("countnet"))

# Under pytest-xdist's two workers (pyproject's addopts) each worker, and every process it
# starts, computes on one thread: two workers of two threads each on two cores spin-wait
# for each other (BENCHMARKS.md, "The test suite's threads under pytest-xdist"). Set
# before anything imports torch, which reads it once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The longest files first (an end-to-end workflow run takes minutes): the two workers then
# finish together instead of one running the last long file alone.
LONGEST_FIRST = ("test_interrupt.py", "test_workflow.py", "test_faults.py", "test_distributed.py",
                 "test_resume.py", "test_slurm.py", "test_report_page.py", "test_interop.py",
                 "test_readme.py", "test_bench.py", "test_sweep.py")  # fmt: skip


def pytest_collection_modifyitems(items) -> None:
    first = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))


@pytest.fixture(autouse=True)
def _offline_torch_home(tmp_path_factory, monkeypatch):
    """Tests never touch the user's torch hub cache, countnet's cache or the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))
    # A cache of its own per test: what one test decodes never satisfies another's check.
    monkeypatch.setenv("COUNTNET_CACHE_DIR", str(tmp_path_factory.mktemp("countnet-cache")))
    monkeypatch.setenv("COUNTNET_OFFLINE", "1")
    monkeypatch.delenv("COUNTNET_DEBUG", raising=False)


def run_countnet(
    *args: str,
    cwd: Path | None = None,
    check: bool = False,
    timeout: float = 600,
    env: dict | None = None,
):
    """The real console script in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **(env or {})}
    proc = subprocess.run(
        [COUNTNET, *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"countnet {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def wait_until(ready, proc: subprocess.Popen, seconds: float, what: str, detail=str) -> None:
    """Poll ``ready()`` until it holds, as a test waits for a process it started to reach a
    point worth interrupting; if ``proc`` ends or time runs out, kill it and fail, saying
    ``detail()`` (e.g. the process's stderr)."""
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"{what} never started {detail()}")
        time.sleep(0.005)


def staged_pngs(parent: Path, name: str):
    """A ``ready`` for :func:`wait_until`: gen's staged folder for ``--out parent/name``
    already holds PNGs."""

    def ready() -> bool:
        partials = [p for p in parent.iterdir() if p.name.startswith(f".{name}.partial-")]
        return bool(partials) and any(partials[0].rglob("*.png"))

    return ready


def process_alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """``countnet`` in this process (heavy imports paid once), through the same main()."""
    from countnet.cli import main

    def run(*args) -> Result:
        monkeypatch.setattr(sys, "argv", ["countnet", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def assert_one_line_error(proc, *fragments: str, alone: bool = True) -> None:
    """Bad input: non-zero exit, one 'error: ...' line on stderr, no traceback. ``alone``:
    nothing else on stderr (else progress lines printed before the error may precede it)."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if not alone:
        lines = [ln for ln in lines if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def written(folder: Path) -> list[str]:
    """What a command left in ``folder``: every name but the run/dataset lock files, which
    countnet keeps on purpose (deleting a lock file races with its next taker)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".lock")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """3 classes x 12 images (9 train / 3 valid each), 32 px: countnet gen's layout."""
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import generate

    spec = DatasetSpec(counts=(1, 3), per_class=12, size=32, radius=(3, 5), valid_pct=0.25)
    return generate(spec, tmp_path_factory.mktemp("data") / "tiny", workers=1)


def save_resnet_weights(path: Path, arch: str = "resnet18") -> dict:
    """What a user would download: a torchvision ImageNet-shaped state dict (random here)."""
    import torch
    import torchvision

    torch.manual_seed(1)
    sd = getattr(torchvision.models, arch)(weights=None).state_dict()
    torch.save(sd, path)
    return sd
