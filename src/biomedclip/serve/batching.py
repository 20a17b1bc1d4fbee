"""Dynamic batching: rows from concurrent requests share one forward pass per modality.

A :class:`DynamicBatcher` owns a worker thread. Requests :meth:`~DynamicBatcher.submit` their rows
(token id lists or preprocessed pixel tensors) and await a future; the worker starts a pass when
``max_batch_size`` rows are waiting or the oldest row has waited ``max_wait_s``, then hands each
request its rows' embeddings. The queue is bounded in rows: a submit that would overflow it raises
:class:`QueueFull` (the service answers 503 + Retry-After) instead of letting latency grow without
bound. A request that times out is cancelled; rows of cancelled requests are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batch queue has no room for the request's rows."""

    def __init__(self, modality: str, retry_after: float):
        self.modality, self.retry_after = modality, retry_after
        super().__init__(f"the {modality} queue is full: retry in {retry_after:.0f} s")


class BatcherStopped(Exception):
    """The service is shutting down and accepts no new work."""


class RequestTimeout(Exception):
    """A request waited longer than its timeout."""


@dataclass
class _Job:
    rows: list[Any]
    future: Future = field(default_factory=Future)
    done: int = 0
    out: np.ndarray | None = None


class BatchStats:
    """Hooks the metrics module fills in (no-ops by default)."""

    def batch(self, modality: str, rows: int, seconds: float) -> None: ...

    def depth(self, modality: str, rows: int) -> None: ...


class DynamicBatcher:
    """Groups rows into passes of ``run_batch(rows) -> np.ndarray [n, D]`` on a worker thread.

    ``compute_lock`` (shared by every batcher of a service) serialises forward passes: on a CPU
    one pass already uses every core, and explanations need the model to themselves.
    """

    def __init__(
        self,
        modality: str,
        run_batch: Callable[[Sequence[Any]], np.ndarray],
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 512,
        compute_lock: threading.Lock | None = None,
        stats: BatchStats | None = None,
    ):
        self.modality = modality
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.compute_lock = compute_lock or threading.Lock()
        self.stats = stats or BatchStats()
        self._pending: deque[tuple[_Job, int, float]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.submitted = 0  # rows accepted since start
        self._last_pass_s = 0.05
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{modality}", daemon=True)
        self._thread.start()

    # ---- request side ------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._pending)

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained (at least 1)."""
        passes = self.depth / max(1, self.max_batch_size) + 1
        return max(1.0, round(passes * self._last_pass_s + 0.5))

    def submit(self, rows: Sequence[Any]) -> Future:
        """Queue ``rows``; the future resolves to their embeddings ``[len(rows), D]``."""
        job = _Job(list(rows))
        if not job.rows:
            job.future.set_result(np.zeros((0, 0), np.float32))
            return job.future
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                raise BatcherStopped(f"the {self.modality} batcher is shutting down")
            if len(self._pending) + len(job.rows) > self.max_queue:
                raise QueueFull(self.modality, self.retry_after())
            self._pending.extend((job, i, now) for i in range(len(job.rows)))
            self.submitted += len(job.rows)
            self.stats.depth(self.modality, len(self._pending))
            self._cond.notify()
        return job.future

    async def run(self, rows: Sequence[Any], timeout: float) -> np.ndarray:
        """Submit and await, giving up after ``timeout`` seconds (:class:`RequestTimeout`)."""
        fut = self.submit(rows)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except TimeoutError as e:
            fut.cancel()
            raise RequestTimeout(
                f"no {self.modality} result within {timeout:g} s (the service is busy)"
            ) from e

    # ---- worker side -------------------------------------------------------------------------
    def _take(self) -> list[tuple[_Job, int]] | None:
        """Wait for a full batch or the oldest row's deadline; None once stopped and drained."""
        with self._cond:
            while True:
                while self._pending and self._pending[0][0].future.cancelled():
                    self._pending.popleft()
                if not self._pending:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                wait = self._pending[0][2] + self.max_wait_s - time.monotonic()
                if len(self._pending) >= self.max_batch_size or wait <= 0 or self._stopping:
                    break
                self._cond.wait(wait)
            batch = []
            while self._pending and len(batch) < self.max_batch_size:
                job, i, _ = self._pending.popleft()
                if not job.future.cancelled():
                    batch.append((job, i))
            self.stats.depth(self.modality, len(self._pending))
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            start = time.perf_counter()
            try:
                with self.compute_lock:
                    out = np.asarray(self.run_batch([job.rows[i] for job, i in batch]))
            except BaseException as e:  # noqa: BLE001 - the jobs get the error, the worker lives
                log.exception("%s batch of %d rows failed", self.modality, len(batch))
                for job, _ in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            seconds = time.perf_counter() - start
            self._last_pass_s = 0.8 * self._last_pass_s + 0.2 * seconds
            self.stats.batch(self.modality, len(batch), seconds)
            for (job, i), row in zip(batch, out):
                if job.future.done():
                    continue
                if job.out is None:
                    job.out = np.empty((len(job.rows), out.shape[1]), dtype=np.float32)
                job.out[i] = row
                job.done += 1
                if job.done == len(job.rows) and job.future.set_running_or_notify_cancel():
                    job.future.set_result(job.out)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new rows, finish the queued ones, stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
