"""Where each protocol layer is in every row of a chunk: presence masks and header offsets, vectorised.

Wireshark shows a protocol once per instance in a packet: the outer and inner IP header of a tunnel, the IP and TCP
headers quoted inside an ICMP error. The packet table keeps one decoded instance per layer (the innermost, the one
flows and analysis use) plus the quoted packet's addresses and ports; the other instances are read here from the
frame bytes. Each `Instance` is one position of a layer across the chunk, with its Wireshark layer number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.geometry import NO_TRANSPORT
from diagnose.fields.geometry import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP  # noqa: F401 (re-exported)
from diagnose.packet import ST_ICMP_ERROR, ST_IP_FRAGMENT, ST_REASSEMBLED

LINKTYPE_ETHERNET = 1
ETH_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)


@dataclass
class Instance:
    """One instance of a layer across the chunk."""

    kind: str  # "main" (decoded into table columns), "outer" (tunnel) or "quoted" (inside an ICMP error)
    offset: np.ndarray  # absolute offset of the header in the chunk buffer
    present: np.ndarray  # bool
    layer: int | np.ndarray  # 1-based layer number of this instance
    limit: np.ndarray | None = None  # where reads must stop (end of the quoted data / datagram)


def _abs(ctx: ChunkContext, relative: np.ndarray) -> np.ndarray:
    return ctx.frame_start + relative  # int32 offsets widen in the addition (no separate int64 copy)


# Each read of a packet-table column strides over whole 320-byte rows (~2-3 us for a chunk's 2,800 rows): the
# columns and masks several layers use are read once per chunk and kept on the context.

def _status(ctx: ChunkContext) -> np.ndarray:
    return ctx.cached("@status", lambda: np.ascontiguousarray(ctx.table["status"]))


def _status_seen(ctx: ChunkContext) -> int:
    """Every status bit set on some row of the chunk: a bit no row has (ICMP error, fragment, reassembled: rare)
    needs no per-row mask."""
    geometry = ctx.geometry()
    if geometry is not None:
        return geometry.status_seen
    return ctx.cached("@status_seen", lambda: int(np.bitwise_or.reduce(_status(ctx))) if ctx.n else 0)


def column(ctx: ChunkContext, name: str) -> np.ndarray:
    """A packet-table column as a contiguous array, read once per chunk (for columns several fields test)."""
    return ctx.cached(f"@col_{name}", lambda: np.ascontiguousarray(ctx.table[name]))


def transport_start(ctx: ChunkContext) -> np.ndarray:
    """Absolute offset of the main transport header (meaningless where l4_off < 0)."""
    geometry = ctx.geometry()
    if geometry is not None:
        return geometry.l4_abs
    return ctx.cached("@l4_abs", lambda: _abs(ctx, ctx.table["l4_off"]))


def _has_l4(ctx: ChunkContext) -> np.ndarray:
    return ctx.cached("@has_l4", lambda: ctx.table["l4_off"] >= 0)


def _icmp_error(ctx: ChunkContext) -> np.ndarray | None:
    """Rows that quote a packet in an ICMP error (with a transport header to quote from), None when there is none:
    most chunks have none, and then no quoted instance needs its columns read."""
    def compute():
        if not _status_seen(ctx) & ST_ICMP_ERROR:
            return None
        rows = ((_status(ctx) & ST_ICMP_ERROR) != 0) & _has_l4(ctx)
        return rows if rows.any() else None
    return ctx.cached("@icmp_error", compute)


def _outer_rows(ctx: ChunkContext) -> np.ndarray | None:
    """Rows with a tunnel's outer IP header, None when there is none."""
    geometry = ctx.geometry()
    if geometry is not None and not geometry.has_outer:
        return None

    def compute():
        rows = ctx.table["outer_l3_off"] >= 0
        return rows if rows.any() else None
    return ctx.cached("@outer", compute)


def is_ethernet(ctx: ChunkContext) -> np.ndarray:
    return ctx.cached("@eth", lambda: (ctx.table["linktype"] == LINKTYPE_ETHERNET) & (ctx.table["caplen"] >= 14))


def _version_at(ctx: ChunkContext, offset: np.ndarray, valid: np.ndarray) -> np.ndarray:
    value, ok = ctx.read_be(offset, 1, valid)
    return np.where(ok, value >> 4, 0)


def ip_instances(ctx: ChunkContext, version: int) -> list[Instance]:
    """Every IPv4 (version 4) or IPv6 (6) header instance: tunnel outer, main, ICMP-quoted."""
    return ctx.cached(f"@ip{version}", lambda: _ip_instances(ctx, version))


def _ip_instances(ctx: ChunkContext, version: int) -> list[Instance]:
    t = ctx.table
    out = []
    has_outer = _outer_rows(ctx)
    outer_same = None
    if has_outer is not None:
        outer_off = _abs(ctx, t["outer_l3_off"])
        outer_same = has_outer & (_version_at(ctx, outer_off, has_outer) == version)
        if outer_same.any():
            out.append(Instance("outer", outer_off, outer_same, 1))
    main = (t["ipv"] == version) & (t["l3_off"] >= 0)
    main_layer = 1 + outer_same.astype(np.int64) if outer_same is not None else np.ones(ctx.n, np.int64)
    main_offset = _abs(ctx, t["l3_off"])
    if version == 6:
        main_offset = _own_ipv6_headers(ctx, main, main_offset)
    out.append(Instance("main", main_offset, main, main_layer))
    icmp_error = _icmp_error(ctx)
    if icmp_error is not None:
        quoted = icmp_error & (t["q_ipv"] == version)
        if quoted.any():
            q_off = transport_start(ctx) + 8
            q_layer = main_layer + ((t["ipv"] == version) & main).astype(np.int64)
            out.append(Instance("quoted", q_off, quoted, q_layer, transport_end(ctx)))
    return out


def _own_ipv6_headers(ctx: ChunkContext, main: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A reassembled IPv6 row points l3_off at the rebuilt datagram, but its ipv6.* fields are those of the frame's
    own header (as Wireshark shows them): find that header in the frame by its addresses (rare rows, plain loop)."""
    t = ctx.table
    rows = np.nonzero(main & ((t["status"] & ST_REASSEMBLED) != 0))[0]
    if not rows.size:
        return offset
    offset = offset.copy()
    buf = ctx.buf
    for i in rows:
        start, end = int(ctx.frame_start[i]), int(ctx.frame_end[i])
        addresses = b"".join(int(t[name][i]).to_bytes(8, "big") for name in ("src_hi", "src_lo", "dst_hi", "dst_lo"))
        frame = buf[start:end].tobytes()
        at = frame.find(addresses)
        while at >= 8 and frame[at - 8] >> 4 != 6:
            at = frame.find(addresses, at + 1)
        if at >= 8:
            offset[i] = start + at - 8
    return offset


def transport_end(ctx: ChunkContext) -> np.ndarray:
    """Where the main transport segment's bytes end: its length by IP, within the captured (or reassembled) data."""
    geometry = ctx.geometry()
    if geometry is not None:
        return geometry.l4_end

    def compute():
        end = transport_start(ctx) + np.maximum(ctx.table["l4_len"], 0)
        if _status_seen(ctx) & ST_REASSEMBLED:
            cap = np.where((_status(ctx) & ST_REASSEMBLED) != 0, ctx.buf.shape[0], ctx.frame_end)
        else:
            cap = ctx.frame_end
        return np.minimum(end, cap)
    return ctx.cached("@l4_end", compute)


def _decoded_l4(ctx: ChunkContext) -> np.ndarray:
    """Rows whose main transport header was decoded (IP, a transport offset, not a non-first fragment)."""
    def compute():
        geometry = ctx.geometry()
        if geometry is not None:
            return geometry.l4_proto != NO_TRANSPORT
        decoded = (column(ctx, "ipv") != 0) & _has_l4(ctx)
        if _status_seen(ctx) & ST_IP_FRAGMENT:
            decoded &= (_status(ctx) & ST_IP_FRAGMENT) == 0
        return decoded
    return ctx.cached("@l4_decoded", compute)


def main_transport(ctx: ChunkContext, proto: int) -> np.ndarray:
    """Rows whose main transport layer is `proto` (decoded: not a non-first fragment)."""
    def compute():
        geometry = ctx.geometry()
        if geometry is not None:
            return geometry.l4_proto == proto
        return (column(ctx, "ip_proto") == proto) & _decoded_l4(ctx)
    return ctx.cached(f"@l4_{proto}", compute)


def transport_instances(ctx: ChunkContext, proto: int) -> list[Instance]:
    """The main TCP/UDP header and the one quoted in an ICMP error."""
    return ctx.cached(f"@l4i_{proto}", lambda: _transport_instances(ctx, proto))


def _transport_instances(ctx: ChunkContext, proto: int) -> list[Instance]:
    t = ctx.table
    out = []
    main_layer: int | np.ndarray = 1
    outer = _outer_transport(ctx, proto)
    if outer is not None:
        out.append(outer)
        main_layer = 1 + outer.present.astype(np.int64)
    out.append(Instance("main", transport_start(ctx), main_transport(ctx, proto), main_layer, transport_end(ctx)))
    icmp_error = _icmp_error(ctx)
    quoted = icmp_error & (t["q_proto"] == proto) if icmp_error is not None else None
    if quoted is not None and quoted.any():
        q_ip = transport_start(ctx) + 8
        v4 = t["q_ipv"] == 4
        first, ok = ctx.read_be(q_ip, 1, quoted & v4)
        ihl = np.where(ok, (first & 0x0F) * 4, 0)
        frag, fok = ctx.read_be(q_ip + 6, 2, quoted & v4)
        header_len = np.where(v4, ihl, 40)
        offset = q_ip + header_len
        present = quoted & np.where(v4, ok & fok & ((frag & 0x1FFF) == 0), True) & (offset + 4 <= ctx.frame_end)
        layer = main_layer + main_transport(ctx, proto).astype(np.int64)
        out.append(Instance("quoted", offset, present, layer, ctx.frame_end))
    return out


def _outer_transport(ctx: ChunkContext, proto: int) -> Instance | None:
    """The transport header right after a tunnel's outer IP header (the UDP of VXLAN, Teredo, GTP-U), if any."""
    t = ctx.table
    has_outer = _outer_rows(ctx)
    if has_outer is None:
        return None
    start = _abs(ctx, t["outer_l3_off"])
    version = _version_at(ctx, start, has_outer)
    first, ok4 = ctx.read_be(start, 1, has_outer & (version == 4))
    proto4, _ = ctx.read_be(start + 9, 1, ok4)
    frag, fok = ctx.read_be(start + 6, 2, ok4)
    v4 = ok4 & fok & (proto4 == proto) & ((frag & 0x1FFF) == 0)
    nxt6, ok6 = ctx.read_be(start + 6, 1, has_outer & (version == 6))
    v6 = ok6 & (nxt6 == proto)
    offset = np.where(v4, start + (first & 0x0F) * 4, start + 40)
    present = (v4 | v6) & (offset + 4 <= ctx.frame_end) & (offset != transport_start(ctx))
    if not present.any():
        return None
    return Instance("outer", offset, present, 1, ctx.frame_end)
