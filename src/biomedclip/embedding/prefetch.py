"""Decoding ahead of the model in a background thread (machines without cores for worker
processes): Pillow's decoders and resizes and torch's tensor ops release the GIL, so the next
batch is decoded while the model runs on the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(iterable: Iterable[T], depth: int = 2, name: str = "biomedclip-decode") -> Iterator[T]:
    """Yield the items of ``iterable``, produced up to ``depth`` items ahead in a daemon thread.

    An exception raised while producing is re-raised here, in the consumer, after the items
    produced before it. Closing the generator early stops the thread at its next item.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(obj) -> bool:
        while not stop.is_set():
            try:
                slots.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Raised(e))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            obj = slots.get()
            if obj is _DONE:
                return
            if isinstance(obj, _Raised):
                raise obj.error
            yield obj
    finally:
        stop.set()
        thread.join(timeout=5)
