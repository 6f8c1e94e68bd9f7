"""ip.* and ipv6.*: one occurrence per header instance (tunnel outer, main, quoted in an ICMP error).

The main header comes from the packet-table columns; the other instances are read from the frame bytes with the
same layout, so `ip.src#2` and `ip.ttl` in an ICMP error behave as in Wireshark.
"""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.layers import Instance, ip_instances
from diagnose.fields.registry import field, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence

IP_PROTOCOLS = {0: "IPv6 Hop-by-Hop Option", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP",
                41: "IPv6", 43: "IPv6 Routing", 44: "IPv6 Fragment", 47: "GRE", 50: "ESP", 51: "AH",
                58: "ICMPv6", 59: "IPv6 No Next Header", 60: "IPv6 Destination Options", 132: "SCTP"}


def _from_bytes(at: int, size: int, shift: int = 0, mask: int | None = None):
    def read(ctx: ChunkContext, inst: Instance):
        value, ok = ctx.read_be(inst.offset + at, size, inst.present, limit=inst.limit)
        value = value >> shift
        if mask is not None:
            value = value & mask
        return value, ok
    return read


def _header_length(ctx: ChunkContext, inst: Instance):
    value, ok = ctx.read_be(inst.offset, 1, inst.present, limit=inst.limit)
    return (value & 0x0F) * 4, ok


def _occurrences(ctx: ChunkContext, version: int, main, other) -> list[Occurrence]:
    out = []
    for inst in ip_instances(ctx, version):
        if inst.kind == "main" and main is not None:
            out.append(Occurrence(main(ctx.table), inst.present, inst.layer))
        else:
            value, ok = other(ctx, inst)
            out.append(Occurrence(value, ok, inst.layer))
    return out


def _make_v4(source):
    main, other = source
    return lambda ctx: _occurrences(ctx, 4, main, other)


def _make_v6(source):
    main, other = source
    return lambda ctx: _occurrences(ctx, 6, main, other)


def _col(name: str, transform=None):
    def read(table):
        value = table[name].astype(np.int64)
        return transform(value) if transform else value
    return read


def _quoted_or_bytes(q_column: str, at: int):
    """Quoted addresses are in q_* columns; an outer tunnel header is read from bytes."""
    def read(ctx: ChunkContext, inst: Instance):
        if inst.kind == "quoted":
            return (ctx.table[q_column].astype(np.int64) & 0xFFFFFFFF), inst.present
        return ctx.read_be(inst.offset + at, 4, inst.present, limit=inst.limit)
    return read


register_table("ip", [
    ("ip.hdr_len", T.UINT, "Header length (bytes)", (_col("ip_hl"), _header_length), {"bits": 8}),
    ("ip.dsfield", T.UINT, "Differentiated services field (DSCP and ECN)", (_col("ip_tos"), _from_bytes(1, 1)),
     {"bits": 8, "base": "hex"}),
    ("ip.dsfield.dscp", T.UINT, "Differentiated services codepoint", (_col("ip_tos", lambda v: v >> 2),
                                                                     _from_bytes(1, 1, 2)), {"bits": 6}),
    ("ip.dsfield.ecn", T.UINT, "Explicit congestion notification", (_col("ip_tos", lambda v: v & 3),
                                                                   _from_bytes(1, 1, 0, 3)), {"bits": 2}),
    ("ip.len", T.UINT, "Total length (bytes)", (_col("ip_len"), _from_bytes(2, 2)), {"bits": 16}),
    ("ip.id", T.UINT, "Identification", (_col("ip_id"), _from_bytes(4, 2)), {"bits": 16, "base": "hex"}),
    ("ip.flags", T.UINT, "Flags (reserved, don't fragment, more fragments)", (_col("ip_flags"),
                                                                              _from_bytes(6, 2, 13, 7)),
     {"bits": 3, "base": "hex"}),
    ("ip.flags.rb", T.BOOL, "Reserved bit", (_col("ip_flags", lambda v: (v >> 2) & 1), _from_bytes(6, 2, 15, 1)),
     {}),
    ("ip.flags.df", T.BOOL, "Don't fragment", (_col("ip_flags", lambda v: (v >> 1) & 1), _from_bytes(6, 2, 14, 1)),
     {}),
    ("ip.flags.mf", T.BOOL, "More fragments", (_col("ip_flags", lambda v: v & 1), _from_bytes(6, 2, 13, 1)), {}),
    ("ip.frag_offset", T.UINT, "Fragment offset (8-byte units)", (_col("frag_off"), _from_bytes(6, 2, 0, 0x1FFF)),
     {"bits": 13}),
    ("ip.ttl", T.UINT, "Time to live", (_col("ip_ttl"), _from_bytes(8, 1)), {"bits": 8}),
    ("ip.proto", T.UINT, "Protocol of the payload", (_col("ip_proto"), _from_bytes(9, 1)),
     {"bits": 8, "value_names": IP_PROTOCOLS}),
    ("ip.checksum", T.UINT, "Header checksum as in the packet", (_col("ip_csum"), _from_bytes(10, 2)),
     {"bits": 16, "base": "hex"}),
    ("ip.src", T.IPV4, "Source address", (_col("src_lo", lambda v: v & 0xFFFFFFFF), _quoted_or_bytes("q_src_lo", 12)),
     {}),
    ("ip.dst", T.IPV4, "Destination address", (_col("dst_lo", lambda v: v & 0xFFFFFFFF),
                                              _quoted_or_bytes("q_dst_lo", 16)), {}),
], _make_v4)

# ip.proto of the main header: after tunnels the table holds the innermost header's protocol, which is what the
# main instance describes; the header's own byte gives the same value.


@field("ip.addr", T.IPV4, "Source or destination address")
def _ip_addr(ctx: ChunkContext) -> list[Occurrence]:
    from diagnose.fields.registry import lookup
    return lookup("ip.src").extract(ctx) + lookup("ip.dst").extract(ctx)


@field("ip", T.NONE, "Internet Protocol version 4 header")
def _ip(ctx: ChunkContext) -> list[Occurrence]:
    out = []
    for inst in ip_instances(ctx, 4):
        if inst.kind == "main":
            length = ctx.table["ip_hl"].astype(np.int64)
            search = np.maximum(ctx.table["ip_len"].astype(np.int64), length)
        else:
            first, _ = ctx.read_be(inst.offset, 1, inst.present, limit=inst.limit)
            length = (first & 0x0F) * 4
            total, _ = ctx.read_be(inst.offset + 2, 2, inst.present, limit=inst.limit)
            search = np.maximum(total, length)
        out.append(Occurrence(_header_bytes(ctx, inst, length, search), inst.present, inst.layer))
    return out


def _header_bytes(ctx: ChunkContext, inst: Instance, length: np.ndarray, search: np.ndarray) -> ByteRanges:
    end = ctx.frame_end if inst.limit is None else np.maximum(inst.limit, ctx.frame_end)
    room = np.maximum(end - inst.offset, 0)
    return ByteRanges(ctx.buf, inst.offset, np.minimum(length, room), np.minimum(search, room))


@field("ip.version", T.UINT, "IP version (4, or 6 for an IPv6 header, as Wireshark shows it)", bits=4)
def _ip_version(ctx: ChunkContext) -> list[Occurrence]:
    return [Occurrence(np.full(ctx.n, version, np.int64), inst.present, inst.layer)
            for version in (4, 6) for inst in ip_instances(ctx, version)]


# ---- IPv6 --------------------------------------------------------------------------------------------------------


def _v6_address(hi_col: str, lo_col: str, q_hi: str, q_lo: str, at: int):
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        out = []
        t = ctx.table
        for inst in ip_instances(ctx, 6):
            value = np.empty((ctx.n, 2), np.uint64)
            present = inst.present
            if inst.kind == "main":
                value[:, 0], value[:, 1] = t[hi_col], t[lo_col]
            elif inst.kind == "quoted":
                value[:, 0], value[:, 1] = t[q_hi], t[q_lo]
            else:
                value[:, 0], ok_hi = ctx.read_u64(inst.offset + at, present)
                value[:, 1], ok = ctx.read_u64(inst.offset + at + 8, present)
                present = ok_hi & ok
            out.append(Occurrence(value, present, inst.layer))
        return out
    return extract


def _v6_nxt_main(ctx: ChunkContext, inst: Instance):
    return ctx.read_be(inst.offset + 6, 1, inst.present)


register_table("ipv6", [
    ("ipv6.version", T.UINT, "IP version (6)", (lambda t: np.full(t.shape[0], 6, np.int64), _from_bytes(0, 1, 4)),
     {"bits": 4}),
    ("ipv6.tclass", T.UINT, "Traffic class", (_col("ip_tos"), _from_bytes(0, 2, 4, 0xFF)),
     {"bits": 8, "base": "hex"}),
    ("ipv6.flow", T.UINT, "Flow label", (None, _from_bytes(0, 4, 0, 0xFFFFF)), {"bits": 20, "base": "hex"}),
    ("ipv6.plen", T.UINT, "Payload length (bytes)", (_col("ip_len", lambda v: v - 40), _from_bytes(4, 2)),
     {"bits": 16}),
    ("ipv6.nxt", T.UINT, "Next header (of the fixed header; extension headers may follow)",
     (None, _from_bytes(6, 1)), {"bits": 8, "value_names": IP_PROTOCOLS}),
    ("ipv6.hlim", T.UINT, "Hop limit", (_col("ip_ttl"), _from_bytes(7, 1)), {"bits": 8}),
], _make_v6)


@field("ipv6.src", T.IPV6, "Source address")
def _v6_src(ctx):
    return _v6_address("src_hi", "src_lo", "q_src_hi", "q_src_lo", 8)(ctx)


@field("ipv6.dst", T.IPV6, "Destination address")
def _v6_dst(ctx):
    return _v6_address("dst_hi", "dst_lo", "q_dst_hi", "q_dst_lo", 24)(ctx)


@field("ipv6.addr", T.IPV6, "Source or destination address")
def _v6_addr(ctx):
    return _v6_src(ctx) + _v6_dst(ctx)


@field("ipv6", T.NONE, "Internet Protocol version 6 header")
def _ipv6(ctx: ChunkContext) -> list[Occurrence]:
    out = []
    for inst in ip_instances(ctx, 6):
        plen, _ = ctx.read_be(inst.offset + 4, 2, inst.present, limit=inst.limit)
        length = np.full(ctx.n, 40, np.int64)
        out.append(Occurrence(_header_bytes(ctx, inst, length, plen + 40), inst.present, inst.layer))
    return out
