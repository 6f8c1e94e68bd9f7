"""arp.*: opcode and the IPv4 sender/target addresses of ARP packets."""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.registry import field, register_table
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence

ETH_ARP = 0x0806
ARP_OPCODES = {1: "request", 2: "reply", 3: "reverse request", 4: "reverse reply"}


def _header(ctx: ChunkContext):
    """(absolute offset, present) of the ARP header."""
    def compute():
        t = ctx.table
        start = ctx.frame_start + t["l3_off"].astype(np.int64)
        present = (t["eth_type"] == ETH_ARP) & (t["l3_off"] >= 0) & (t["ipv"] == 0) & (start + 8 <= ctx.frame_end)
        return start, present
    return ctx.cached("@arp", compute)


def _ipv4_addresses(ctx: ChunkContext) -> np.ndarray:
    """Rows whose ARP carries IPv4 addresses (hardware size known, protocol 0x0800, 4-byte addresses)."""
    start, present = _header(ctx)
    ptype, ok = ctx.read_be(start + 2, 2, present)
    psize, ok2 = ctx.read_be(start + 5, 1, present)
    hsize, _ = ctx.read_be(start + 4, 1, present)
    return ok & ok2 & (ptype == 0x0800) & (psize == 4) & (start + 8 + 2 * hsize + 8 <= ctx.frame_end)


def _make(source):
    kind = source

    def extract(ctx: ChunkContext) -> list[Occurrence]:
        t = ctx.table
        start, present = _header(ctx)
        if kind == "opcode":
            return [Occurrence(t["arp_op"].astype(np.int64), present)]
        column = "arp_spa" if kind == "spa" else "arp_tpa"
        return [Occurrence(t[column].astype(np.int64), _ipv4_addresses(ctx))]
    return extract


register_table("arp", [
    ("arp.opcode", T.UINT, "Opcode (1 request, 2 reply)", "opcode", {"bits": 16, "value_names": ARP_OPCODES}),
    ("arp.src.proto_ipv4", T.IPV4, "Sender IPv4 address", "spa"),
    ("arp.dst.proto_ipv4", T.IPV4, "Target IPv4 address", "tpa"),
], _make)


@field("arp", T.NONE, "Address Resolution Protocol")
def _arp(ctx: ChunkContext) -> list[Occurrence]:
    start, present = _header(ctx)
    hsize, _ = ctx.read_be(start + 4, 1, present)
    psize, _ = ctx.read_be(start + 5, 1, present)
    length = np.minimum(8 + 2 * (hsize + psize), np.maximum(ctx.frame_end - start, 0))
    return [Occurrence(ByteRanges(ctx.buf, start, length), present)]
