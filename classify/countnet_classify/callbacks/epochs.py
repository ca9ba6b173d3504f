"""What the run folder's callbacks share: the epoch number across fit phases."""

from __future__ import annotations

from fastai.callback.core import Callback


class EpochAware(Callback):
    """Knows the global epoch number across fit phases and ignores epochs that fastai's
    SkipToEpoch cancels on resume."""

    def __init__(self, offset: int):
        self.offset = offset

    def before_epoch(self):
        self._cancelled = False

    def after_cancel_epoch(self):
        self._cancelled = True

    @property
    def global_epoch(self) -> int:  # 1-based
        return self.offset + self.epoch + 1
