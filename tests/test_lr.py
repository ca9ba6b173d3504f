"""The learning rate: ``--lr VALUE`` runs no LR finder (fastai's fit_one_cycle(lr) runs
none); ``--lr auto`` or a rule runs it, says so once as it starts and once as it ends
(logs) or shows a bar named "LR finder" (terminal), and lr_find.png marks the suggestion
used. The terminal's epoch table counts from 1, as the files do."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
from types import SimpleNamespace

import yaml

from tests.conftest import COUNTNET, run_countnet

SMALL = ["--no-pretrained", "--arch", "resnet18", "--size", "32", "--bs", "8", "--workers", "0"]


def test_a_given_lr_runs_no_finder(tiny, tmp_path):
    proc = run_countnet(
        "train", tiny, *SMALL, "--epochs", "1", "--lr", "0.01", "--quiet",
        "--runs-dir", tmp_path, "--name", "fixed",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "fixed"
    assert (run / "metrics.csv").is_file() and not (run / "lr_find.png").exists()
    lr = yaml.safe_load((run / "config.yaml").read_text())["lr"]
    assert lr == {"used": 0.01, "source": "--lr (no LR finder)", "suggestions": {}}
    assert "LR finder" not in proc.stderr.replace("(no LR finder)", "")
    assert "learning rate: 0.01 (--lr (no LR finder))" in proc.stderr


def test_lr_auto_runs_the_finder_says_so_and_marks_the_suggestion_used(
    cli, tiny, tmp_path, monkeypatch
):
    from countnet_classify import plots

    legends = []
    save = plots.save_current

    def save_current(path):
        legend = plots.plt.gca().get_legend()
        legends.append([t.get_text() for t in legend.get_texts()] if legend else [])
        save(path)

    monkeypatch.setattr(plots, "save_current", save_current)
    r = cli(
        "train", tiny, *SMALL, "--epochs", "1", "--lr", "auto", "--lr-find-iters", "30",
        "--quiet", "--runs-dir", tmp_path, "--name", "auto",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "auto"
    assert (run / "lr_find.png").is_file()
    lr = yaml.safe_load((run / "config.yaml").read_text())["lr"]
    assert lr["source"].startswith(f"LR finder, {lr['rule']} suggestion")
    # lr_find.png was the first figure saved: every suggestion, and the one used apart
    assert legends[0][:-1] == list(lr["suggestions"])
    assert legends[0][-1] == f"used: {lr['rule']} {lr['used']:.2e}"
    # logs: one line as the finder starts, one as it ends, then the rate it chose
    lines = r.stderr.splitlines()
    finder = [ln for ln in lines if ln.startswith("LR finder")]
    assert len(finder) == 2, r.stderr
    assert finder[0] == "LR finder: up to 30 steps"
    assert re.fullmatch(r"LR finder: done, \d+ steps in [\d.]+ s", finder[1])
    assert lines.index(finder[1]) < next(
        i for i, ln in enumerate(lines) if ln.startswith("learning rate:")
    )
    assert "Epoch" not in r.stderr + r.stdout


def _on_a_terminal(*args, timeout: float = 600) -> str:
    """``countnet ARGS`` with stdout and stderr on a pseudo-terminal: what a user sees."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([COUNTNET, *map(str, args)], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))


def test_on_a_terminal_the_finder_has_its_own_bar_and_epochs_count_from_1(tiny, tmp_path):
    out = _on_a_terminal(
        "train", tiny, *SMALL, "--epochs", "2", "--lr", "auto", "--lr-find-iters", "30",
        "--runs-dir", tmp_path, "--name", "tty",
    )  # fmt: skip
    finder = out[: out.index("learning rate:")]
    # its own bar, not fastai's "Epoch 2/8" (the sweep's epochs), ending its line
    assert "LR finder" in finder and "Epoch" not in finder, finder
    assert "\n" in finder[finder.rindex("LR finder") :], finder
    # fastai's table: its epoch column as metrics.csv's, 1 and 2 (it used to say 0 and 1)
    row = r"(?<![\d.])(\d+) +\d+\.\d{6} +\d+\.\d{6} +\d+\.\d{6} +\d+\.\d{6} +\d\d:\d\d"
    assert re.findall(row, out) == ["1", "2"], out


def test_the_epoch_table_numbers_as_the_files_and_skips_resumed_epochs(tmp_path):
    """After --resume fastai cancels the epochs already done and logged each as an empty
    row (``0 00:00``); the table numbers epochs across phases from 1."""
    from countnet_classify.callbacks.metrics import MetricsTable

    shown = []
    table = MetricsTable(tmp_path, offset=2, total=4, echo=False)
    table.learn = SimpleNamespace(logger=shown.append, epoch=0)
    table.before_fit()
    table.before_epoch()
    table.after_cancel_epoch()  # skipped on resume
    table.learn.logger([0, "00:00"])
    table.learn.epoch = 1
    table.before_epoch()
    table.learn.logger([1, 0.5, 0.4, 0.25, "00:01"])
    table.after_fit()
    assert shown == [[4, 0.5, 0.4, 0.25, "00:01"]]
    assert table.learn.logger == shown.append
