"""Keep Python's cyclic garbage collector off the report's objects once they are made.

A diagnosis of a busy capture makes ~10^5-10^6 long-lived objects (flow records, findings, the report model) and
few cycles. diagnose_capture pauses the collector while they are made; measured on the 1M-packet benchmark, the
first young-generation collection after that pause then traversed all of them (~0.1 s), and a full collection in the
middle of writing the JSON report traversed every object of the run (~0.3 s). Nothing the report needs is garbage.

* `settle()` hands every young object to the oldest generation (gc.freeze + gc.unfreeze: two list splices), so no
  young collection traverses them again; cyclic garbage among them waits for the next full collection, as for any
  long-lived object.
* `collector_paused()` keeps the collector off while a report is written, then settles what was made meanwhile.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


def settle() -> None:
    """Move the young objects to the oldest generation (unless a caller froze objects on purpose: those stay)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


@contextmanager
def collector_paused():
    """Disable the cyclic collector inside the block (no-op when it already is disabled)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        settle()
        gc.enable()
