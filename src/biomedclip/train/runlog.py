"""What a training run reports: progress lines on stderr, ``metrics.jsonl`` and TensorBoard.

:func:`log_progress_to_stderr` routes the INFO records of ``biomedclip.train`` (every training loop
logs under it, VQA included) to stderr as plain lines, so that stdout keeps only the CLI's summary.
:class:`Logger` writes one ``metrics.jsonl`` record per step and evaluation and the TensorBoard
scalars, on rank 0 only; the console lines themselves are worded by each loop.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROGRESS_LOGGER = "biomedclip.train"


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (not the stream of when it was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_progress_to_stderr() -> None:
    """Training progress (INFO records of ``biomedclip.train``) as plain lines on stderr."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False


class Logger:
    """``metrics.jsonl`` and TensorBoard (``train/*`` per step), and console lines, on rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, total: int):
        self.enabled = enabled
        self.total = total
        self.metrics_path = out_dir / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log.warning("tensorboard not installed: TensorBoard logging off")

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def step(self, record: dict[str, Any], line: str | None = None) -> None:
        """One step's record (``record["step"]`` set); ``line`` also goes to the console."""
        if not self.enabled:
            return
        self._append(record)
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])
        if line:
            log.info(line)

    def eval(
        self,
        step: int,
        metrics: dict[str, float],
        tb_name: Callable[[str], str],
        line: str | None = None,
    ) -> None:
        """An evaluation's metrics (TensorBoard tag ``tb_name(key)``); ``line`` to the console."""
        if not self.enabled:
            return
        self._append({"step": step, **metrics})
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(tb_name(k), v, step)
        if line:
            log.info(line)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
