"""The installed project exposes its three packages and nothing else: the repository's
folders (datasets/, config/, tests/, bench/, runs/, workflow/) must not shadow other
modules, as a repository root on sys.path made them (`import datasets` found the generated
datasets folder instead of Hugging Face's package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("countnet", "countnet_gen", "countnet_classify")
FOLDERS = ("datasets", "config", "tests", "bench", "runs", "workflow")

# Where each name would be imported from, without importing it: a spec's origin or its
# namespace search path (None: not importable).
CHILD = """
import importlib.util, json, sys
where = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    where[name] = None if spec is None else [
        spec.origin or "", *(spec.submodule_search_locations or [])]
print(json.dumps(where))
"""


def test_only_the_three_packages_are_importable_from_outside_the_repo(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *PACKAGES, *FOLDERS],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    where = json.loads(proc.stdout)
    for name in PACKAGES:
        assert where[name], f"{name} is not importable"
        assert Path(where[name][0]).is_relative_to(REPO), where[name]
    for name in FOLDERS:
        # another installed module of that name is fine; the repository's folder is not
        inside = [p for p in where[name] or [] if p and Path(p).is_relative_to(REPO)]
        assert not inside, f"`import {name}` finds the repository's {inside}"
    code = "import countnet.cli, countnet_gen.writer, countnet_classify.labels"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=120)
