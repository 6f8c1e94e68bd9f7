"""Display-filter fields of the TCP analysis: tcp.seq/ack/nxtseq (relative), tcp.window_size (scaled), per-stream
times, tcp.completeness and tcp.analysis.*, registered in the field registry (diagnose.fields).

Their values come from the analysis rows of the chunk (TcpAnalyzer.update), which whoever builds the chunk's
ChunkContext attaches with `attach(ctx, rows)`. Asking for one of these fields on a context without them is a
programming error and says so, rather than matching nothing.

`FIELDS` is the same list as data: (name, type, description, column or flag mask, presence bit).
"""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.registry import FlagBits, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence
from diagnose.jit import kernel

from .analysis import (ANALYSIS_DTYPE, FLAG_FILTERS, P_ACK_RTT, P_ACKS_FRAME, P_ANALYSIS, P_BYTES_IN_FLIGHT, P_DUPACK,
                       P_HEADER, P_INITIAL_RTT, P_NXTSEQ, P_RTO, P_SCALE, P_SEQ, P_TCP, P_TIMES)

EXTRA_KEY = "tcp.analysis"  # ChunkContext.extra key of the chunk's ANALYSIS_DTYPE rows

_FLAG_TITLES = {
    "tcp.analysis.retransmission": "Suspected retransmission (also set on fast and spurious retransmissions)",
    "tcp.analysis.fast_retransmission": "Suspected fast retransmission (after 2 duplicate ACKs, within 20 ms)",
    "tcp.analysis.spurious_retransmission": "Retransmission of data the receiver had already acknowledged",
    "tcp.analysis.duplicate_ack": "Duplicate ACK: same ACK, window and sequence number, no data",
    "tcp.analysis.lost_segment": "Previous segment not captured (a gap in the sequence numbers)",
    "tcp.analysis.ack_lost_segment": "ACKed segment that was not captured",
    "tcp.analysis.out_of_order": "Out-of-order segment (within the initial RTT, or 3 ms, of the highest one)",
    "tcp.analysis.zero_window": "Zero receive window advertised",
    "tcp.analysis.zero_window_probe": "Zero-window probe (one byte at the next sequence number)",
    "tcp.analysis.zero_window_probe_ack": "ACK to a zero-window probe",
    "tcp.analysis.window_full": "Segment fills the receiver's advertised window",
    "tcp.analysis.window_update": "Window update: only the window changed",
    "tcp.analysis.keep_alive": "Keep-alive (0 or 1 byte one before the next sequence number)",
    "tcp.analysis.keep_alive_ack": "ACK to a keep-alive",
    "tcp.analysis.reused_ports": "SYN (or SYN-ACK) with a new ISN on the ports of an earlier connection",
}

# (name, type, description, source: column name or ("flags", mask), presence bit, registry options)
FIELDS: list[tuple] = [
    ("tcp.seq", T.UINT, "Sequence number (relative to the first one of the direction)", "seq", P_SEQ,
     {"bits": 32}),
    ("tcp.ack", T.UINT, "Acknowledgment number (relative to the peer's first sequence number)", "ack", P_HEADER,
     {"bits": 32}),
    ("tcp.nxtseq", T.UINT, "Next sequence number (relative): seq + len, +1 for SYN or FIN", "nxtseq", P_NXTSEQ,
     {"bits": 32}),
    ("tcp.window_size", T.UINT, "Window size, scaled by the window-scale shift when the handshake showed it",
     "window", P_HEADER, {"bits": 32}),
    ("tcp.window_size_scalefactor", T.INT, "Window scale multiplier (-1 unknown: no SYN seen; -2 not used)",
     "win_scale", P_SCALE, {"bits": 32}),
    ("tcp.time_delta", T.RELTIME, "Time since the previous packet of this TCP stream", "time_delta", P_TIMES, {}),
    ("tcp.time_relative", T.RELTIME, "Time since the first packet of this TCP stream", "time_relative", P_TIMES,
     {}),
    ("tcp.completeness", T.UINT, "Conversation completeness so far: 1 SYN, 2 SYN-ACK, 4 ACK, 8 data, 16 FIN, 32 RST",
     "completeness", P_TCP, {"bits": 8}),
    ("tcp.analysis", T.NONE, "SEQ/ACK analysis (present when Wireshark shows an analysis tree)", None, P_ANALYSIS,
     {}),
    ("tcp.analysis.flags", T.NONE, "TCP analysis flags: any of the tcp.analysis.* conditions", ("flags", 0x7FFF),
     P_ANALYSIS, {}),
    ("tcp.analysis.acks_frame", T.UINT, "Frame of the segment this ACK acknowledges exactly", "acks_frame",
     P_ACKS_FRAME, {"bits": 32}),
    ("tcp.analysis.ack_rtt", T.RELTIME, "Time from that segment to this ACK", "ack_rtt", P_ACK_RTT, {}),
    ("tcp.analysis.initial_rtt", T.RELTIME, "Handshake RTT: from the last SYN to the first pure ACK",
     "initial_rtt", P_INITIAL_RTT, {}),
    ("tcp.analysis.bytes_in_flight", T.UINT, "Bytes sent and not yet acknowledged (less SACKed), after this one",
     "bytes_in_flight", P_BYTES_IN_FLIGHT, {"bits": 32}),
    ("tcp.analysis.push_bytes_sent", T.UINT, "Bytes sent since the last PSH flag", "push_bytes_sent",
     P_BYTES_IN_FLIGHT, {"bits": 32}),
    ("tcp.analysis.duplicate_ack_num", T.UINT, "Number of this duplicate ACK in its run", "dupack_num", P_DUPACK,
     {"bits": 32}),
    ("tcp.analysis.duplicate_ack_frame", T.UINT, "Frame of the original ACK this one duplicates", "dupack_frame",
     P_DUPACK, {"bits": 32}),
    ("tcp.analysis.rto", T.RELTIME, "Retransmission timeout: time since the oldest unacknowledged segment",
     "rto", P_RTO, {}),
    ("tcp.analysis.rto_frame", T.UINT, "Frame the RTO is measured from", "rto_frame", P_RTO, {"bits": 32}),
] + [(name, T.NONE, _FLAG_TITLES[name], ("flags", mask), P_ANALYSIS, {}) for name, mask in FLAG_FILTERS.items()]


def attach(ctx: ChunkContext, rows: np.ndarray) -> None:
    """Give a chunk context its TCP analysis rows (TcpAnalyzer.update's result for the same chunk)."""
    if rows.shape[0] != ctx.n:
        raise ValueError(f"{rows.shape[0]} analysis rows for a chunk of {ctx.n} packets")
    ctx.extra[EXTRA_KEY] = rows


def _rows(ctx: ChunkContext) -> np.ndarray:
    rows = ctx.extra.get(EXTRA_KEY)
    if rows is None:
        raise RuntimeError("TCP analysis fields need the chunk's TcpAnalyzer rows: call diagnose.tcp.fields.attach"
                           "(ctx, analyzer.update(table, buf)) when building the ChunkContext")
    return rows


@kernel
def _present_and_flags(rows, present, word):
    for i in range(rows.shape[0]):
        r = rows[i]
        present[i] = r.present
        word[i] = r.flags if (r.present & P_ANALYSIS) != 0 else 0


def _columns(ctx: ChunkContext) -> tuple[np.ndarray, np.ndarray]:
    """The presence bits of every row, and analysis_flag_word, read in one pass over the rows: the TCP analysis
    has just written them on the other thread (the first read of each row waits for its cache line)."""
    def compute():
        rows = _rows(ctx)
        if rows.dtype == ANALYSIS_DTYPE and rows.flags.c_contiguous and len(rows):
            present, word = np.empty(len(rows), np.uint16), np.empty(len(rows), np.uint32)
            _present_and_flags(rows, present, word)
            return present, word
        present = np.ascontiguousarray(rows["present"])
        return present, np.where((present & P_ANALYSIS) != 0, rows["flags"], 0)
    return ctx.cached("@tcpa_columns", compute)


def _presence(ctx: ChunkContext, bit: int) -> np.ndarray:
    """Rows whose analysis has presence bit `bit`: shared by the fields with that bit (tcp.analysis and its 15 flags
    all read P_ANALYSIS), once per chunk."""
    return ctx.cached(f"@tcpa_p{bit}", lambda: (_columns(ctx)[0] & bit) != 0)


def _flags(ctx: ChunkContext) -> np.ndarray:
    return ctx.cached("@tcpa_flags", lambda: np.ascontiguousarray(_rows(ctx)["flags"]))


def analysis_flag_word(ctx: ChunkContext) -> np.ndarray:
    """The analysis flags of the rows whose analysis is shown (P_ANALYSIS), 0 elsewhere: the word of the
    tcp.analysis.* flag fields (FlagBits), which filters test several at once."""
    return _columns(ctx)[1]


def _no_bytes(ctx: ChunkContext) -> ByteRanges:
    """The value of a marker field (empty bytes on every row), one per chunk for all of them."""
    def compute():
        zeros = np.zeros(ctx.n, np.int64)
        return ByteRanges(ctx.buf, zeros, zeros)
    return ctx.cached("@tcpa_none", compute)


def _extractor(source):
    column, presence = source

    def extract(ctx: ChunkContext) -> list[Occurrence]:
        present = _presence(ctx, presence)
        if column is None:
            values = _no_bytes(ctx)
        elif isinstance(column, tuple):
            if presence == P_ANALYSIS:  # the word holds the flags of exactly the rows with P_ANALYSIS
                present = (analysis_flag_word(ctx) & column[1]) != 0
            else:
                present = present & ((_flags(ctx) & column[1]) != 0)
            values = _no_bytes(ctx)
        elif column == "win_scale":
            shift = _rows(ctx)["win_scale"].astype(np.int64)
            values = np.where(shift < 0, shift, np.left_shift(1, np.maximum(shift, 0)))
        else:
            values = _rows(ctx)[column].astype(np.int64)
        return [Occurrence(values, present)]
    return extract


def _options(source, presence, options: dict) -> dict:
    """A flag field shown with the analysis (tcp.analysis.retransmission, ...) is bits of analysis_flag_word."""
    if isinstance(source, tuple) and presence == P_ANALYSIS:
        return {**options, "flag": FlagBits(analysis_flag_word, source[1])}
    return options


register_table("tcp", [(name, ftype, description, (source, presence), _options(source, presence, options))
                       for name, ftype, description, source, presence, options in FIELDS], _extractor)
