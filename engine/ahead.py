"""Run a producer one item ahead of its consumer, on a worker thread.

The first stages of a pass (walking records, decoding) are kernels that drop the GIL, so they can prepare the next
chunk on the second core while this thread analyses the current one. The producer reuses its buffers: it may make
item k+1 while the consumer still holds item k, but starts item k+2 only once the consumer asked for item k+1
(and so is done with item k). A producer that reuses N buffers therefore needs N+1 of them here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def run_ahead(produce: Callable[[], Iterator[T]], name: str = "diagnose-ahead") -> Iterator[T]:
    """The items of produce() in order, each made on a worker thread one step ahead; errors are raised here, at
    the item where they happened. Leaving the loop early stops the worker before this generator closes."""
    handed: queue.SimpleQueue = queue.SimpleQueue()
    may_start = threading.Semaphore(1)  # the worker may make one item the consumer has not yet asked for
    stop = threading.Event()

    def work() -> None:
        items = produce()
        try:
            while True:
                may_start.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    handed.put(_END)
                    return
                handed.put(item)
        except BaseException as error:  # noqa: BLE001 - raised in the consumer
            handed.put(_Failed(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = handed.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            may_start.release()  # the consumer is done with the item before this one
            yield item
    finally:
        stop.set()
        may_start.release()
        worker.join()
