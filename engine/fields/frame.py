"""frame.*: what the capture file says about each packet (number, times, lengths, interface)."""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.registry import field, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence


def _everywhere(ctx: ChunkContext) -> np.ndarray:
    return np.ones(ctx.n, bool)


def _column(expression):
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        return [Occurrence(expression(ctx), _everywhere(ctx))]
    return extract


register_table("frame", [
    ("frame.number", T.UINT, "Frame number (1-based, in capture order)", lambda c: c.table["frame"].astype(np.int64),
     {"bits": 32}),
    ("frame.len", T.UINT, "Frame length on the wire (bytes)", lambda c: c.table["wirelen"].astype(np.int64),
     {"bits": 32}),
    ("frame.cap_len", T.UINT, "Captured length (bytes); less than frame.len when the snapshot length cut it",
     lambda c: c.table["caplen"].astype(np.int64), {"bits": 32}),
    ("frame.time", T.TIME, "Arrival time", lambda c: c.table["ts"].astype(np.int64)),
    ("frame.time_epoch", T.TIME, "Arrival time as seconds since the Unix epoch",
     lambda c: c.table["ts"].astype(np.int64)),
    ("frame.time_relative", T.RELTIME, "Time since the first frame of the capture",
     lambda c: c.table["ts"].astype(np.int64) - c.first_ts),
], _column)


@field("frame.interface_id", T.UINT, "Capture interface index (pcapng files only, in interface order)", bits=32)
def _interface(ctx: ChunkContext) -> list[Occurrence]:
    present = np.full(ctx.n, ctx.capture_format == "pcapng")
    return [Occurrence(ctx.table["iface"].astype(np.int64), present)]


@field("frame.time_delta", T.RELTIME, "Time since the previous captured frame")
def _time_delta(ctx: ChunkContext) -> list[Occurrence]:
    ts = ctx.table["ts"].astype(np.int64)
    previous = np.empty_like(ts)
    previous[1:] = ts[:-1]
    previous[0] = ts[0] if ctx.prev_ts is None else ctx.prev_ts
    return [Occurrence(ts - previous, _everywhere(ctx))]


@field("frame", T.NONE, "The whole frame (every packet has it); its value is the captured bytes")
def _frame(ctx: ChunkContext) -> list[Occurrence]:
    start = ctx.frame_start
    return [Occurrence(ByteRanges(ctx.buf, start, ctx.frame_end - start), _everywhere(ctx))]
