"""The batch worker cannot die: cancellation races, failing rows, liveness (no model needed)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future

import numpy as np
import pytest

from biomedclip.serve import batching
from biomedclip.serve.batching import BatcherStopped, DynamicBatcher


def embed(rows):
    if any(r == "bad" for r in rows):
        raise ValueError("this row breaks the model")
    return np.array([[float(len(r)), 1.0] for r in rows], np.float32)


class RacyFuture(Future):
    """Cancelled by its request (a timeout) right after the worker checked ``done()``."""

    race = False

    def done(self):
        was = super().done()
        if not was and self.race:
            self.cancel()
        return was


def test_cancel_between_done_and_set_exception_keeps_the_worker_alive():
    def failing(rows):
        RacyFuture.race = True
        raise ValueError("boom")

    b = DynamicBatcher("text", failing, max_batch_size=4, max_wait_s=0.3)
    try:
        b.submit(["x"])
        job = b._pending[0][0]
        job.future = RacyFuture()  # swapped before the worker takes the row (it waits 0.3 s)
        time.sleep(0.6)
        assert job.future.cancelled()
        assert b._thread.is_alive() and b.alive
        RacyFuture.race = False
        b.run_batch = embed
        assert b.submit(["abc"]).result(5).tolist() == [[3.0, 1.0]]
    finally:
        b.stop()


def test_a_failing_row_fails_only_its_own_request():
    from biomedclip.serve.batching import RowFailed

    b = DynamicBatcher("text", embed, max_batch_size=8, max_wait_s=0.2)
    try:
        good1, bad, good2 = b.submit(["ab"]), b.submit(["ok", "bad"]), b.submit(["abcd"])
        assert good1.result(5).tolist() == [[2.0, 1.0]]
        assert good2.result(5).tolist() == [[4.0, 1.0]]
        with pytest.raises(RowFailed, match="breaks the model"):
            bad.result(5)
        assert b.alive
    finally:
        b.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_worker_is_reported_and_refuses_work():
    b = DynamicBatcher("text", embed, max_batch_size=2, max_wait_s=0.0)
    assert b.alive

    def broken():
        raise RuntimeError("batcher bug")

    b._take = broken
    with b._cond:
        b._cond.notify_all()
    b.submit(["a"])  # the worker wakes, finishes this row, then crashes in the next _take
    deadline = time.monotonic() + 5
    while b.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not b.alive and isinstance(b.crashed, RuntimeError)
    with pytest.raises(BatcherStopped):
        b.submit(["b"])


def test_cancelled_waiters_cancel_their_rows():
    b = DynamicBatcher("text", embed, max_batch_size=2, max_wait_s=0.0)
    try:
        with b.compute_lock:

            async def go():
                task = asyncio.ensure_future(b.run(["a", "b", "c"], timeout=30))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            asyncio.run(go())
        time.sleep(0.1)
        assert b.depth == 0  # the queued row of the cancelled request was dropped
        assert b.alive
    finally:
        b.stop()


def test_settle_never_raises_on_a_cancelled_future():
    f = Future()
    f.cancel()
    batching._settle(f, error=ValueError("late"))
    batching._settle(f, result=1)
    assert f.cancelled()
