"""metrics.csv, metrics.md and losses.csv, rewritten after every epoch, one clean line per
epoch for logs, and fastai's terminal table numbered as the files are."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from countnet.atomic import write_text_atomic
from countnet.tables import read_csv, write_csv
from countnet_classify.callbacks.epochs import EpochAware
from countnet_classify.run_folder import metrics_markdown

METRICS_FIELDS = ("epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time")
# --task regression: error_rate and accuracy of the rounded count, then MAE and RMSE
REGRESSION_FIELDS = (*METRICS_FIELDS[:-1], "mae", "rmse", "time")


class MetricsTable(EpochAware):
    """metrics.csv (``fields``: epoch, train_loss, valid_loss, error_rate, accuracy, time;
    regression adds mae and rmse) and losses.csv (every training batch's loss), rewritten
    atomically after each epoch."""

    order = 65  # after fastai's Recorder (50) has logged the epoch

    def __init__(self, run_dir: Path, offset: int, total: int, echo: bool, fields=METRICS_FIELDS):
        super().__init__(offset)
        self.run_dir, self.total, self.echo = Path(run_dir), total, echo
        self.fields = tuple(fields)
        self.rows = read_csv(self.run_dir / "metrics.csv")
        self.losses = read_csv(self.run_dir / "losses.csv")

    def before_fit(self):
        # fastai's table (the terminal's logger) numbers a phase's epochs from 0 and shows
        # the epochs a resume skips as empty rows: number them as the files do, skip those.
        self._logger = self.learn.logger
        self.learn.logger = self._log

    def _log(self, log):
        if not self._cancelled:
            self._logger([self.global_epoch, *list(log)[1:]])

    def after_fit(self):
        if self.learn.logger == self._log:  # fastai's ProgressCallback may restore it first
            self.learn.logger = self._logger

    def before_epoch(self):
        super().before_epoch()
        self._t0 = time.perf_counter()
        self._batch_losses: list[torch.Tensor] = []

    def after_batch(self):
        # Kept on the device: a float() here would sync host and GPU on every batch.
        if self.training:
            self._batch_losses.append(self.learn.loss.detach())

    def after_epoch(self):
        if self._cancelled:
            return
        log = dict(zip(self.recorder.metric_names, self.recorder.log, strict=False))
        n = self.global_epoch
        row = {
            "epoch": n,
            **{f: f"{float(log[f]):.6f}" for f in self.fields if f not in ("epoch", "time")},
            "time": f"{time.perf_counter() - self._t0:.2f}",
        }
        self.rows = [r for r in self.rows if int(r["epoch"]) < n] + [row]
        batch_losses = (
            torch.stack(self._batch_losses).float().cpu().tolist() if self._batch_losses else []
        )
        start = len([r for r in self.losses if int(r["epoch"]) < n])
        self.losses = [r for r in self.losses if int(r["epoch"]) < n] + [
            {"iter": start + i, "epoch": n, "loss": f"{v:.6f}"} for i, v in enumerate(batch_losses)
        ]
        write_csv(self.run_dir / "losses.csv", ("iter", "epoch", "loss"), self.losses)
        write_csv(self.run_dir / "metrics.csv", self.fields, self.rows)
        write_text_atomic(self.run_dir / "metrics.md", metrics_markdown(self.rows, self.fields))
        if self.echo:
            shown = [f for f in self.fields if f not in ("epoch", "accuracy", "time")]
            print(
                f"epoch {n}/{self.total}  "
                + "  ".join(f"{f} {row[f]}" for f in shown)
                + f"  time {row['time']}s",
                flush=True,
            )
