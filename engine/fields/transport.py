"""tcp.* and udp.*: the main transport header from the packet table, plus the one quoted in an ICMP error.

A field exists only when its bytes were captured (a snaplen cut after the ports leaves tcp.srcport but no
tcp.flags), as in Wireshark.
"""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.geometry import TCP_FLAGS_END, TCP_FLAGS_PRESENT
from diagnose.fields.layers import IPPROTO_TCP, IPPROTO_UDP, Instance, transport_end, transport_instances
from diagnose.fields.registry import FlagBits, field, lookup, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence
from diagnose.decode.transport import tcp_option_at
from diagnose.decode.wire import be16, be32
from diagnose.jit import kernel
from diagnose.packet import OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WS, ST_ICMP_ERROR

TCP_FLAG_BITS = {"fin": 0x001, "syn": 0x002, "reset": 0x004, "push": 0x008, "ack": 0x010, "urg": 0x020,
                 "ece": 0x040, "cwr": 0x080, "ns": 0x100}
TCP_FLAG_TITLES = {"fin": "FIN", "syn": "SYN", "reset": "RST (reset)", "push": "PSH (push)", "ack": "ACK",
                   "urg": "URG (urgent)", "ece": "ECN-Echo", "cwr": "Congestion window reduced", "ns": "Nonce"}


def _captured(inst: Instance, nbytes: int, ctx: ChunkContext) -> np.ndarray:
    end = inst.limit if inst.limit is not None else ctx.frame_end
    return inst.present & (inst.offset + nbytes <= end)


def _transport_field(proto: int, column: str | None, at: int, size: int, need: int, *, shift: int = 0,
                     mask: int | None = None, scale: int = 1, quoted_column: str | None = None,
                     main_only: bool = False):
    """A header field: from `column` for the main header, from the bytes (or a q_* column) for a quoted one."""
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        out = []
        for inst in transport_instances(ctx, proto):
            if inst.kind == "main":
                if column is None:
                    value, ok = ctx.read_be(inst.offset + at, size, inst.present, limit=inst.limit)
                else:
                    value, ok = ctx.table[column].astype(np.int64), _captured(inst, need, ctx)
            elif main_only:
                continue
            elif quoted_column is not None and inst.kind == "quoted":
                value, ok = ctx.table[quoted_column].astype(np.int64), _captured(inst, need, ctx)
            else:
                value, ok = ctx.read_be(inst.offset + at, size, inst.present, limit=inst.limit)
                value = value >> shift  # table columns already hold the shifted, masked, scaled value
                if mask is not None:
                    value = value & mask
                value = value * scale
            out.append(Occurrence(value, ok, inst.layer))
        return out
    return extract


def _make(source):
    return _transport_field(*source[0], **source[1])


register_table("tcp", [
    ("tcp.srcport", T.UINT, "Source port", ((IPPROTO_TCP, "sport", 0, 2, 4), {"quoted_column": "q_sport"}),
     {"bits": 16}),
    ("tcp.dstport", T.UINT, "Destination port", ((IPPROTO_TCP, "dport", 2, 2, 4), {"quoted_column": "q_dport"}),
     {"bits": 16}),
    ("tcp.seq_raw", T.UINT, "Sequence number (raw, as on the wire)", ((IPPROTO_TCP, "tcp_seq", 4, 4, 8),
                                                                       {"main_only": True}), {"bits": 32}),
    ("tcp.ack_raw", T.UINT, "Acknowledgment number (raw, as on the wire)", ((IPPROTO_TCP, "tcp_ack", 8, 4, 12), {}),
     {"bits": 32}),
    ("tcp.hdr_len", T.UINT, "Header length (bytes)", ((IPPROTO_TCP, "tcp_hlen", 12, 1, 20),
                                                     {"shift": 4, "mask": 0xF, "scale": 4}), {"bits": 8}),
    ("tcp.flags", T.UINT, "Flags (12 bits: reserved, NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN)",
     ((IPPROTO_TCP, "tcp_flags", 12, 2, TCP_FLAGS_END), {"mask": 0xFFF}), {"bits": 12, "base": "hex"}),
    ("tcp.window_size_value", T.UINT, "Window field as on the wire (not scaled)",
     ((IPPROTO_TCP, "tcp_win", 14, 2, 16), {}), {"bits": 16}),
    ("tcp.checksum", T.UINT, "Checksum as in the packet", ((IPPROTO_TCP, "tcp_csum", 16, 2, 18), {}),
     {"bits": 16, "base": "hex"}),
    ("tcp.urgent_pointer", T.UINT, "Urgent pointer", ((IPPROTO_TCP, "tcp_urp", 18, 2, 20), {}), {"bits": 16}),
], _make)


def tcp_flag_word(ctx: ChunkContext) -> np.ndarray | None:
    """The flags of the main TCP header with TCP_FLAGS_PRESENT where they exist (the chunk geometry's word), when
    that header is the only TCP header of the chunk's rows (no tunnel, no TCP header quoted in an ICMP error); None
    otherwise: then tcp.flags.* have further occurrences and filters extract them."""
    def compute():
        geometry = ctx.geometry()
        if geometry is None:
            return None
        if (geometry.has_outer or geometry.status_seen & ST_ICMP_ERROR) and \
                len(transport_instances(ctx, IPPROTO_TCP)) != 1:
            return None
        return geometry.tcp_flags
    return ctx.cached("@tcp_flag_word", compute)


def _flag_bit(name: str, bit: int):
    @field(f"tcp.flags.{name}", T.BOOL, f"{TCP_FLAG_TITLES[name]} flag", protocol="tcp",
           flag=FlagBits(tcp_flag_word, TCP_FLAGS_PRESENT, bit))
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        return [Occurrence((o.values & bit) != 0, o.present, o.layer) for o in lookup("tcp.flags").extract(ctx)]
    return extract


for _name, _bit in TCP_FLAG_BITS.items():
    _flag_bit(_name, _bit)


@field("tcp.flags.res", T.UINT, "Reserved flag bits", bits=3)
def _flags_res(ctx):
    return [Occurrence((o.values >> 9) & 7, o.present, o.layer) for o in lookup("tcp.flags").extract(ctx)]


@field("tcp.port", T.UINT, "Source or destination port", bits=16)
def _tcp_port(ctx):
    return lookup("tcp.srcport").extract(ctx) + lookup("tcp.dstport").extract(ctx)


def _main_tcp(ctx: ChunkContext) -> Instance:
    return transport_instances(ctx, IPPROTO_TCP)[0]


def _header_complete(ctx: ChunkContext) -> np.ndarray:
    inst = _main_tcp(ctx)
    return _captured(inst, 20, ctx)


@field("tcp.len", T.UINT, "Segment payload length (by IP length, not limited by the snapshot length)", bits=32)
def _tcp_len(ctx):
    t = ctx.table
    hlen = t["tcp_hlen"].astype(np.int64)
    ok = _header_complete(ctx) & (hlen >= 20) & (hlen <= t["l4_len"])
    return [Occurrence(t["payload_len"].astype(np.int64), ok)]


@field("tcp.stream", T.UINT, "TCP conversation index, in order of first appearance (as Wireshark numbers them)",
       bits=32)
def _tcp_stream(ctx):
    stream = ctx.table["stream"].astype(np.int64)
    present = np.zeros(ctx.n, bool)
    for inst in transport_instances(ctx, IPPROTO_TCP):
        # Wireshark gives a stream only to a header it read in full (a quoted one needs its ports)
        present |= _captured(inst, 20, ctx) if inst.kind == "main" else inst.present
    return [Occurrence(stream, present & (stream >= 0))]


@kernel
def _walk_options(buf, start, header_end, end, present, bits, mss, shift, tsval, tsecr):
    """TCP options of headers read from the bytes (the one quoted in an ICMP error)."""
    for i in range(start.shape[0]):
        if not present[i]:
            continue
        q = start[i] + 20
        while True:
            kind, olen = tcp_option_at(buf, q, header_end[i], end[i])
            if kind < 0:
                break
            if kind == 2 and olen == 4:
                bits[i] |= OPT_MSS
                mss[i] = be16(buf, q + 2)
            elif kind == 3 and olen == 3:
                bits[i] |= OPT_WS
                shift[i] = buf[q + 2]
            elif kind == 4 and olen == 2:
                bits[i] |= OPT_SACK_PERM
            elif kind == 8 and olen == 10:
                bits[i] |= OPT_TS
                tsval[i] = be32(buf, q + 2)
                tsecr[i] = be32(buf, q + 6)
            q += olen


def _quoted_options(ctx: ChunkContext, inst: Instance) -> dict[str, np.ndarray]:
    def compute():
        first, ok = ctx.read_be(inst.offset + 12, 1, inst.present)
        header_end = inst.offset + (first >> 4) * 4
        out = {name: np.zeros(ctx.n, np.int64) for name in ("tcp_opts", "opt_mss", "opt_ws", "opt_ts_val",
                                                              "opt_ts_ecr")}
        _walk_options(ctx.buf, inst.offset, header_end, ctx.frame_end, ok & (first >> 4 > 5), out["tcp_opts"],
                      out["opt_mss"], out["opt_ws"], out["opt_ts_val"], out["opt_ts_ecr"])
        return out
    return ctx.cached("@quoted_tcp_options", compute)


def _option(bit: int, column: str | None):
    def extract(ctx: ChunkContext) -> list[Occurrence]:
        t = ctx.table
        out = []
        for inst in transport_instances(ctx, IPPROTO_TCP):
            if inst.kind == "main":
                columns = t
                present = _header_complete(ctx) & ((t["tcp_opts"] & bit) != 0)
            else:
                columns = _quoted_options(ctx, inst)
                present = inst.present & ((columns["tcp_opts"] & bit) != 0)
            if column is None:
                out.append(Occurrence(ByteRanges(ctx.buf, inst.offset, np.zeros(ctx.n, np.int64)), present,
                                      inst.layer))
            else:
                out.append(Occurrence(columns[column].astype(np.int64), present, inst.layer))
        return out
    return extract


register_table("tcp", [
    ("tcp.options.mss_val", T.UINT, "Maximum segment size option", (OPT_MSS, "opt_mss"), {"bits": 16}),
    ("tcp.options.wscale.shift", T.UINT, "Window scale option: shift count", (OPT_WS, "opt_ws"), {"bits": 8}),
    ("tcp.options.timestamp.tsval", T.UINT, "Timestamp option: value", (OPT_TS, "opt_ts_val"), {"bits": 32}),
    ("tcp.options.timestamp.tsecr", T.UINT, "Timestamp option: echo reply", (OPT_TS, "opt_ts_ecr"), {"bits": 32}),
    ("tcp.options.sack_perm", T.NONE, "SACK permitted option", (OPT_SACK_PERM, None)),
], lambda source: _option(*source))


@field("tcp", T.NONE, "Transmission Control Protocol header")
def _tcp(ctx: ChunkContext) -> list[Occurrence]:
    t = ctx.table
    out = []
    for inst in transport_instances(ctx, IPPROTO_TCP):
        end = inst.limit if inst.limit is not None else ctx.frame_end
        room = np.maximum(end - inst.offset, 0)
        if inst.kind == "main":
            hlen = np.where(t["tcp_hlen"] >= 20, t["tcp_hlen"], 20).astype(np.int64)
        else:
            first, ok = ctx.read_be(inst.offset + 12, 1, inst.present)
            hlen = np.where(ok, np.maximum((first >> 4) * 4, 20), 20)
        out.append(Occurrence(ByteRanges(ctx.buf, inst.offset, np.minimum(hlen, room), room), inst.present,
                              inst.layer))
    return out


# ---- UDP ---------------------------------------------------------------------------------------------------------

register_table("udp", [
    ("udp.srcport", T.UINT, "Source port", ((IPPROTO_UDP, "sport", 0, 2, 4), {"quoted_column": "q_sport"}),
     {"bits": 16}),
    ("udp.dstport", T.UINT, "Destination port", ((IPPROTO_UDP, "dport", 2, 2, 4), {"quoted_column": "q_dport"}),
     {"bits": 16}),
    ("udp.length", T.UINT, "Length field (header and payload, bytes)", ((IPPROTO_UDP, "udp_len", 4, 2, 6), {}),
     {"bits": 16}),
    ("udp.checksum", T.UINT, "Checksum as in the packet", ((IPPROTO_UDP, "udp_csum", 6, 2, 8), {}),
     {"bits": 16, "base": "hex"}),
], _make)


@field("udp.port", T.UINT, "Source or destination port", bits=16)
def _udp_port(ctx):
    return lookup("udp.srcport").extract(ctx) + lookup("udp.dstport").extract(ctx)


@field("udp.stream", T.UINT, "UDP conversation index, in order of first appearance", bits=32)
def _udp_stream(ctx):
    stream = ctx.table["stream"].astype(np.int64)
    present = np.zeros(ctx.n, bool)
    for inst in transport_instances(ctx, IPPROTO_UDP):
        present |= inst.present
    return [Occurrence(stream, present & (stream >= 0))]


@field("udp", T.NONE, "User Datagram Protocol header")
def _udp(ctx: ChunkContext) -> list[Occurrence]:
    out = []
    for inst in transport_instances(ctx, IPPROTO_UDP):
        end = inst.limit if inst.limit is not None else ctx.frame_end
        room = np.maximum(end - inst.offset, 0)
        out.append(Occurrence(ByteRanges(ctx.buf, inst.offset, np.minimum(8, room), room), inst.present, inst.layer))
    return out


__all__ = ["TCP_FLAG_BITS", "transport_end"]
