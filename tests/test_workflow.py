"""The Snakefile on a tiny config, through Snakemake's CLI, in a scratch folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_tiny_workflow_generates_then_does_nothing(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "datasets:\n"
        "  tiny-a: {range: 1-2, per_class: 6, size: 32, radius: 3}\n"
        "  tiny-b: {range: 3-4, per_class: 6, size: 32, radius: 2-3, no_overlap: true}\n"
    )
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode == 0, proc.stderr
    for name in ("tiny-a", "tiny-b"):
        assert len(list((tmp_path / "datasets" / name).rglob("*.png"))) == 12
        assert (tmp_path / "logs" / "gen" / f"{name}.log").read_text().startswith("generated 12")
    again = snakemake(tmp_path, cfg, "-n", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_is_rejected_before_any_job(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("datasets:\n  broken: {range: 50-45, size: 32}\n")
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode != 0
    assert "broken" in proc.stderr and "reversed" in proc.stderr
    assert not (tmp_path / "datasets").exists()
    cfg.write_text("datasets:\n  typo: {range: 1-2, sise: 32}\n")
    proc = snakemake(tmp_path, cfg, "all")
    assert proc.returncode != 0 and "sise" in proc.stderr
