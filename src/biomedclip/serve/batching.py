"""Dynamic batching: rows from concurrent requests share one forward pass per modality.

A :class:`DynamicBatcher` owns a worker thread. Requests :meth:`~DynamicBatcher.submit` their rows
(token id lists or preprocessed pixel tensors) and await a future; the worker starts a pass when
``max_batch_size`` rows are waiting or the oldest row has waited ``max_wait_s``, then hands each
request its rows' embeddings. The queue is bounded in rows: a submit that would overflow it raises
:class:`QueueFull` (the service answers 429 + Retry-After) instead of letting latency grow without
bound. A request that times out (or is cancelled) cancels its future; rows of cancelled requests
are skipped, and a future cancelled while its rows are computed is simply not answered.

The worker cannot die of a request: every hand-over to a future tolerates a concurrent
cancellation, and a pass that raises is re-run row by row, so only the rows that fail on their own
fail (:class:`RowFailed`); the others get their embeddings. :attr:`DynamicBatcher.alive` (the
thread runs and its loop turned recently) is part of ``/health/ready``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
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


class RowFailed(Exception):
    """A row failed on its own in the forward pass (the backend's error is the cause)."""


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve ``future`` unless it was cancelled meanwhile (never raises InvalidStateError)."""
    try:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between done() and set_*: the request is gone
        pass


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
        self.crashed: BaseException | None = None
        self.submitted = 0  # rows accepted since start
        self._last_pass_s = 0.05
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{modality}", daemon=True)
        self._thread.start()

    # ---- request side ------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (it only ends on :meth:`stop` or a bug)."""
        return self._thread.is_alive() and self.crashed is None

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
            if self._stopping or not self.alive:
                raise BatcherStopped(f"the {self.modality} batcher is not running")
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
        except BaseException:  # cancelled by the request deadline or a disconnect
            fut.cancel()
            raise

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
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                if batch:
                    self._pass(batch)
        except BaseException as e:  # a bug in the batcher itself: fail loudly, report not alive
            self.crashed = e
            log.exception("the %s batcher crashed", self.modality)
            with self._cond:
                for job, _, _ in self._pending:
                    _settle(job.future, error=BatcherStopped(f"the {self.modality} batcher died"))
                self._pending.clear()
            raise

    def _compute(self, rows: list[Any]) -> np.ndarray:
        with self.compute_lock:
            out = np.asarray(self.run_batch(rows))
        if out.ndim != 2 or len(out) != len(rows):
            raise RuntimeError(f"run_batch returned {out.shape} for {len(rows)} rows")
        return out

    def _pass(self, batch: list[tuple[_Job, int]]) -> None:
        start = time.perf_counter()
        try:
            out: list[np.ndarray | BaseException] = list(
                self._compute([job.rows[i] for job, i in batch])
            )
        except Exception as e:  # noqa: BLE001 - find the guilty rows: re-run one by one
            log.warning("%s batch of %d rows failed (%s)", self.modality, len(batch), e)
            out = []
            for job, i in batch:
                if job.future.done():
                    out.append(e)
                    continue
                try:
                    out.append(self._compute([job.rows[i]])[0])
                except Exception as row_error:  # noqa: BLE001 - this row's request fails
                    log.exception("%s row failed on its own", self.modality)
                    out.append(row_error)
        seconds = time.perf_counter() - start
        self._last_pass_s = 0.8 * self._last_pass_s + 0.2 * seconds
        self.stats.batch(self.modality, len(batch), seconds)
        for (job, i), row in zip(batch, out):
            if job.future.done():
                continue
            if isinstance(row, BaseException):
                failed = RowFailed(f"{self.modality} row failed: {type(row).__name__}: {row}")
                failed.__cause__ = row
                _settle(job.future, error=failed)
                continue
            if job.out is None:
                job.out = np.empty((len(job.rows), row.shape[-1]), dtype=np.float32)
            job.out[i] = row
            job.done += 1
            if job.done == len(job.rows):
                _settle(job.future, job.out)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new rows, finish the queued ones, stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
