"""Reading the next batches on a thread while the current one is scored.

Embedding collections are read without DataLoader workers (pickling 16 k-row blocks between
processes costs more than it saves), which left reading and scoring taking turns on one core.
Memory-map page faults, parquet decoding and torch's kernels all release the GIL, so one
thread that reads ahead lets them overlap; order is kept, so resume and the kill-point tests
see exactly the batches they would see without it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()
POLL_S = 0.1


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, produced up to ``depth`` ahead on a daemon thread. An exception of
    the producer is raised here; stopping early (an error while scoring) stops the thread."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            put(err)

    thread = threading.Thread(target=produce, name="q16-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5 * POLL_S)
