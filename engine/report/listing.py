"""`diagnose list`: select packets (BPF and/or display filter), print them tcpdump-style, optionally write them."""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from diagnose.errors import UsageError
from diagnose.pipeline import open_pass



def run_list(path: str, *, count: int | None = None, time_format: str = "local", hex_ascii: bool = False,
             write: str | None = None, overwrite: bool = False, capture_filter: str | None = None,
             display_filter: str | None = None, out=None) -> list[str]:
    """Print (and/or write) the selected packets; returns the capture's warnings."""
    from diagnose.capture.writer import CaptureWriter
    from diagnose.listing import TIME_FORMATS

    if time_format not in TIME_FORMATS:
        raise UsageError(f"unknown time format {time_format!r} (choose from {', '.join(TIME_FORMATS)})")
    if count is not None and count < 0:
        raise UsageError("-c needs a count of 0 or more")
    out = out or sys.stdout
    select = _selector(capture_filter, display_filter)  # compiled before any packet is read
    if not write:
        from diagnose.listing import ListingState, format_packets

        state = ListingState()
    run = open_pass(path)
    remaining = count
    with run.capture, (CaptureWriter(write, path, overwrite=overwrite) if write else contextlib.nullcontext()) as w:
        for chunk in run.chunks():
            rows = chunk.table
            if select is not None:
                rows = rows[select(chunk)]
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


def _selector(capture_filter: str | None, display_filter: str | None):
    """A function chunk -> boolean row mask for the filters given (None when there are none)."""
    if not capture_filter and not display_filter:
        return None
    from diagnose.filters import compile_bpf, compile_display_filter

    bpf = compile_bpf(capture_filter) if capture_filter else None
    dfilter = compile_display_filter(display_filter) if display_filter else None

    def select(chunk) -> np.ndarray:
        mask = np.ones(len(chunk.table), np.bool_)
        if bpf is not None:
            mask &= bpf.evaluate_chunk(chunk)
        if dfilter is not None:
            mask &= dfilter.evaluate_chunk(chunk)
        return mask

    return select
