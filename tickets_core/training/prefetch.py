"""Collation off the critical path: a background thread ``depth`` batches ahead, and pinned host memory.

Part of the GPU fast path (:mod:`tickets_core.training.fastpath` decides when
``fine_tune`` uses it): the producer thread is the only user of the
generators the batches are drawn from, so the sequence is the same as
iterating inline.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead of the consumer.

    The producer is the only user of whatever generators ``items`` draws
    from, so the sequence is the same as iterating inline.  Errors in the
    producer are raised in the consumer; :meth:`close` stops the thread
    (call it when leaving the loop early).
    """

    def __init__(self, items: Iterable, depth: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), daemon=True,
                                        name="tickets-core-prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer
            self._put(_Failure(e))

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        item = self._q.get()
        if item is _END:
            self._q.put(_END)  # stay exhausted
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


def pin(batch: dict) -> dict:
    """Page-locked copies of a batch's tensors (so that host-to-GPU copies can be asynchronous)."""
    return {k: v.pin_memory() for k, v in batch.items()}
