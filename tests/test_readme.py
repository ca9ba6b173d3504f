"""README's quickstart, run as a reader runs it (issue 27, item 4): every ``$ `` line of
its ``console`` block, in order, verbatim, by bash (so its globs expand as in a terminal)
in a fresh empty folder, with the environment activated as README says (the project's
`countnet` first on PATH). Nothing is swapped in: no prepared datasets, no extra options,
no other paths. The rest of README and docs/ is checked by tests/test_docs.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import COUNTNET
from tests.test_docs import README, examples


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """The quickstart run once in an empty folder: (the folder, each line's process)."""
    cwd = tmp_path_factory.mktemp("fresh")
    env = {
        **os.environ,
        "PATH": f"{Path(COUNTNET).parent}{os.pathsep}{os.environ['PATH']}",
        "TORCH_HOME": str(cwd / ".torch"),  # nothing cached: the lines must not need it
        "COUNTNET_CACHE_DIR": str(cwd / ".cache"),
        "COUNTNET_OFFLINE": "1",
    }
    done = []
    for line in examples(README):
        proc = subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )
        done.append(proc)
        if proc.returncode != 0:
            break
    return cwd, done


def test_quickstart_runs_as_written(quickstart):
    cwd, done = quickstart
    lines = examples(README)
    assert [ln.split()[:2] for ln in lines] == [
        ["countnet", "gen"],
        ["countnet", "train"],
        ["countnet", "predict"],
        ["countnet", "report"],
    ]
    for line, proc in zip(lines, done, strict=False):
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
    assert len(done) == len(lines)


def test_quickstart_writes_what_readme_says(quickstart):
    cwd, done = quickstart
    data = cwd / "datasets" / "count-1-3_r3_s32_n40"
    assert (data / "dataset.json").is_file()
    assert "count-1-3_r3_s32_n40" in " ".join(done[0].stderr.split())  # gen prints where
    run = cwd / "runs" / "quick"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["status"] == "complete" and config["run"]["epochs"] == 2
    assert (run / "model.safetensors").is_file() and (run / "model.json").is_file()
    predicted = [ln.split("\t") for ln in done[2].stdout.splitlines()]
    assert len(predicted) == len(list((data / "valid" / "2").glob("*.png"))) > 0
    assert {p[1] for p in predicted} <= {"1", "2", "3"}
    assert "quick" in (cwd / "runs" / "report.md").read_text()
    assert (cwd / "runs" / "report.html").is_file()
