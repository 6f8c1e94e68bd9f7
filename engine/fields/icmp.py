"""icmp.* and icmpv6.*: type, code and echo identifier/sequence of the main ICMP header."""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.layers import (IPPROTO_ICMP, IPPROTO_ICMPV6, column, main_transport, transport_end,
                                    transport_start)
from diagnose.fields.registry import field, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence

ICMP_TYPES = {0: "Echo (ping) reply", 3: "Destination unreachable", 4: "Source quench", 5: "Redirect",
              8: "Echo (ping) request", 9: "Router advertisement", 10: "Router solicitation", 11: "Time-to-live exceeded",
              12: "Parameter problem", 13: "Timestamp request", 14: "Timestamp reply"}
ICMPV6_TYPES = {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded", 4: "Parameter Problem",
                128: "Echo (ping) request", 129: "Echo (ping) reply", 133: "Router Solicitation",
                134: "Router Advertisement", 135: "Neighbor Solicitation", 136: "Neighbor Advertisement",
                137: "Redirect"}
ECHO_TYPES = {4: (0, 8, 13, 14, 15, 16, 17, 18), 6: (128, 129)}


def _present(ctx: ChunkContext, version: int) -> np.ndarray | None:
    """Rows whose main transport header is ICMP (version 4) or ICMPv6 (6); None when no row of the chunk has one
    (most chunks: then the fields have no occurrence, and neither the ipv nor an icmp_* column is read)."""
    def compute():
        main = main_transport(ctx, IPPROTO_ICMP if version == 4 else IPPROTO_ICMPV6)
        if not main.any():
            return None
        present = main & (column(ctx, "ipv") == version) & (_icmp_type(ctx) >= 0)
        return present if present.any() else None
    return ctx.cached(f"@icmp{version}", compute)


def _icmp_type(ctx: ChunkContext) -> np.ndarray:
    """The icmp_type column as int64, read once for icmp.* and icmpv6.* (each read strides over whole rows)."""
    return ctx.cached("@icmp_type64", lambda: ctx.table["icmp_type"].astype(np.int64))


def _column(version: int, column_name: str, echo_only: bool):
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        present = _present(ctx, version)
        if present is None:
            return []
        if echo_only:
            start = transport_start(ctx)
            present = present & np.isin(_icmp_type(ctx), ECHO_TYPES[version]) & (start + 8 <= ctx.frame_end)
        values = _icmp_type(ctx) if column_name == "icmp_type" else ctx.table[column_name].astype(np.int64)
        return [Occurrence(values, present)]
    return extract


def _protocol(version: int):
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        present = _present(ctx, version)
        if present is None:
            return []
        start = transport_start(ctx)
        length = np.maximum(transport_end(ctx) - start, 0)
        return [Occurrence(ByteRanges(ctx.buf, start, length), present)]
    return extract


register_table("icmp", [
    ("icmp.type", T.UINT, "ICMP message type", (4, "icmp_type", False), {"bits": 8, "value_names": ICMP_TYPES}),
    ("icmp.code", T.UINT, "ICMP message code", (4, "icmp_code", False), {"bits": 8}),
    ("icmp.ident", T.UINT, "Echo identifier", (4, "icmp_id", True), {"bits": 16}),
    ("icmp.seq", T.UINT, "Echo sequence number", (4, "icmp_seq", True), {"bits": 16}),
], lambda source: _column(*source))

register_table("icmpv6", [
    ("icmpv6.type", T.UINT, "ICMPv6 message type", (6, "icmp_type", False), {"bits": 8, "value_names": ICMPV6_TYPES}),
    ("icmpv6.code", T.UINT, "ICMPv6 message code", (6, "icmp_code", False), {"bits": 8}),
    ("icmpv6.echo.identifier", T.UINT, "Echo identifier", (6, "icmp_id", True), {"bits": 16}),
    ("icmpv6.echo.sequence_number", T.UINT, "Echo sequence number", (6, "icmp_seq", True), {"bits": 16}),
], lambda source: _column(*source))

field("icmp", T.NONE, "Internet Control Message Protocol")(_protocol(4))
field("icmpv6", T.NONE, "Internet Control Message Protocol for IPv6")(_protocol(6))
