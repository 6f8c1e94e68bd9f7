"""`diagnose list` and `diagnose count`: select packets (BPF and/or display filter), print them tcpdump-style,
count them, or write them to a file."""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from diagnose.errors import UsageError
from diagnose.pipeline import FilterContexts, analyses_for, open_pass


class Selection:
    """The filters of a command, compiled before any packet is read (a wrong filter is an error at once)."""

    def __init__(self, capture_filter: str | None, display_filter: str | None):
        from diagnose.filters import BpfFilter, compile_display_filter

        self.bpf = BpfFilter(capture_filter) if capture_filter else None
        self.display = compile_display_filter(display_filter) if display_filter else None
        self.needs = analyses_for(self.display.fields) if self.display is not None else set()

    def mask(self, ctx) -> np.ndarray | None:
        """Rows to keep, or None for all of them."""
        if self.bpf is None and self.display is None:
            return None
        mask = np.ones(ctx.n, np.bool_)
        if self.bpf is not None:
            mask &= self.bpf.evaluate(ctx)
        if self.display is not None:
            mask &= self.display.evaluate(ctx)
        return mask


    def bind(self, info) -> None:
        """Settle what depends on the capture: the byte order BSD-loopback headers are read in, and the link types
        (a filter libpcap refuses for one of them fails before any packet is used)."""
        if self.bpf is not None:
            self.bpf.big_endian = info.big_endian
            self.bpf.prepare({i.linktype for i in info.interfaces})


def selected(path: str, selection: Selection, keylogs=()):
    """(pass, iterator of (chunk, selected rows)) over the capture.

    Without a display filter nothing is decoded: BPF, the listing and -w read only the frame bytes."""
    run = open_pass(path)

    def rows():
        if selection.display is None:
            from diagnose.fields import ChunkContext

            for chunk in run.capture.chunks():
                if selection.bpf is not None and chunk.first_frame == 1:
                    selection.bind(run.capture.info)
                mask = selection.mask(ChunkContext(chunk.buf, chunk.table))
                yield chunk, (chunk.table if mask is None else chunk.table[mask])
            return
        bound = False
        for chunk, ctx in FilterContexts(run, selection.needs, keylogs=keylogs):
            if not bound:
                selection.bind(run.capture.info)
                bound = True
            mask = selection.mask(ctx)
            yield chunk, (chunk.table if mask is None else chunk.table[mask])

    return run, rows()


def run_list(path: str, *, count: int | None = None, time_format: str = "local", hex_ascii: bool = False,
             write: str | None = None, overwrite: bool = False, capture_filter: str | None = None,
             display_filter: str | None = None, keylogs=(), out=None) -> list[str]:
    """Print (and/or write) the selected packets; returns the capture's warnings."""
    from diagnose.capture.writer import CaptureWriter
    from diagnose.listing import TIME_FORMATS

    if time_format not in TIME_FORMATS:
        raise UsageError(f"unknown time format {time_format!r} (choose from {', '.join(TIME_FORMATS)})")
    if count is not None and count < 0:
        raise UsageError("-c needs a count of 0 or more")
    out = out or sys.stdout
    selection = Selection(capture_filter, display_filter)
    if not write:
        from diagnose.listing import ListingState, format_packets

        state = ListingState()
    run, chunks = selected(path, selection, keylogs)
    remaining = count
    with run.capture, (CaptureWriter(write, path, overwrite=overwrite) if write else contextlib.nullcontext()) as w:
        for chunk, rows in chunks:
            if remaining is not None:
                rows = rows[:remaining]
                remaining -= len(rows)
            if w is not None:
                w.write(chunk.buf, rows, run.capture.info)
            else:
                for line in format_packets(chunk.buf, rows, time_format=time_format, hex_ascii=hex_ascii,
                                           state=state):
                    out.write(line)
                    out.write("\n")
            if remaining == 0:
                break
    return run.capture.info.warnings


def run_count(path: str, *, capture_filter: str | None = None, display_filter: str | None = None,
              keylogs=()) -> tuple[int, list[str]]:
    """(number of selected packets, warnings)."""
    selection = Selection(capture_filter, display_filter)
    run, chunks = selected(path, selection, keylogs)
    total = 0
    with run.capture:
        for _chunk, rows in chunks:
            total += len(rows)
    return total, run.capture.info.warnings
