"""eth.* and vlan.*: the Ethernet header and its 802.1Q / 802.1ad tags (read from the frame bytes)."""

from __future__ import annotations

import numpy as np

from diagnose.fields.context import ChunkContext
from diagnose.fields.layers import is_ethernet
from diagnose.fields.registry import field
from diagnose.fields.values import ByteRanges, FieldType as T, Occurrence

ETHERTYPES = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8100: "802.1Q Virtual LAN", 0x88A8: "802.1ad",
              0x8847: "MPLS label switched packet", 0x8864: "PPPoE Session", 0x8863: "PPPoE Discovery",
              0x8035: "RARP", 0x88CC: "802.1 Link Layer Discovery Protocol (LLDP)"}
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)


def _eth_src(ctx: ChunkContext) -> Occurrence:
    return Occurrence(ctx.table["eth_src"].astype(np.int64), is_ethernet(ctx))


def _eth_dst(ctx: ChunkContext) -> Occurrence:
    return Occurrence(ctx.table["eth_dst"].astype(np.int64), is_ethernet(ctx))


@field("eth", T.NONE, "Ethernet II header")
def _eth(ctx: ChunkContext) -> list[Occurrence]:
    start = ctx.frame_start
    return [Occurrence(ByteRanges(ctx.buf, start, np.full(ctx.n, 14, np.int64), ctx.frame_end - start),
                       is_ethernet(ctx))]


@field("eth.src", T.ETHER, "Source MAC address")
def _src(ctx):
    return [_eth_src(ctx)]


@field("eth.dst", T.ETHER, "Destination MAC address")
def _dst(ctx):
    return [_eth_dst(ctx)]


@field("eth.addr", T.ETHER, "Source or destination MAC address")
def _addr(ctx):
    return [_eth_dst(ctx), _eth_src(ctx)]


@field("eth.type", T.UINT, "EtherType of the Ethernet header (0x8100 when a VLAN tag follows); absent in IEEE 802.3 "
       "frames, where the field is a length", bits=16, base="hex", value_names=ETHERTYPES)
def _type(ctx):
    value, ok = ctx.read_be(ctx.frame_start + 12, 2, is_ethernet(ctx))
    return [Occurrence(value, ok & (value >= 0x600))]


def _tags(ctx: ChunkContext) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(offset of the tag's TCI, present, TPID that introduced it) for each stacked tag position, outermost first."""
    def compute():
        tags = []
        eth = is_ethernet(ctx)
        tpid, ok = ctx.read_be(ctx.frame_start + 12, 2, eth)
        offset = ctx.frame_start + 14
        inside = ok & np.isin(tpid, VLAN_TYPES)
        while inside.any():
            tci_ok = inside & (offset + 4 <= ctx.frame_end)
            tags.append((offset.copy(), tci_ok, tpid.copy()))
            tpid, ok = ctx.read_be(offset + 2, 2, tci_ok)
            inside = ok & np.isin(tpid, VLAN_TYPES)
            offset = offset + 4
        return tags
    return ctx.cached("@vlan_tags", compute)


def _tag_positions(ctx: ChunkContext, ad: bool):
    """Tags of one kind with their layer numbers: 802.1Q (TPID 0x8100/0x9100) as vlan.*, 802.1ad (0x88a8) as
    ieee8021ad.*, as Wireshark names them."""
    count = np.zeros(ctx.n, np.int64)
    for offset, present, tpid in _tags(ctx):
        mine = present & ((tpid == 0x88A8) if ad else (tpid != 0x88A8))
        count = count + mine
        yield offset, mine, count.copy()


def _tag_field(ctx: ChunkContext, at: int, shift: int, mask: int, ad: bool = False) -> list[Occurrence]:
    out = []
    for offset, present, layer in _tag_positions(ctx, ad):
        value, ok = ctx.read_be(offset + at, 2, present)
        out.append(Occurrence((value >> shift) & mask, ok, layer))
    return out


@field("ieee8021ad.id", T.UINT, "802.1ad (QinQ service tag) VLAN identifier", bits=12)
def _ad_id(ctx):
    return _tag_field(ctx, 0, 0, 0x0FFF, ad=True)


@field("vlan", T.NONE, "802.1Q Virtual LAN tag (one layer per stacked tag; 802.1ad tags are ieee8021ad)")
def _vlan(ctx):
    return [Occurrence(ByteRanges(ctx.buf, offset, np.full(ctx.n, 4, np.int64)), present, layer)
            for offset, present, layer in _tag_positions(ctx, False)]


@field("vlan.id", T.UINT, "VLAN identifier", bits=12)
def _vlan_id(ctx):
    return _tag_field(ctx, 0, 0, 0x0FFF)


@field("vlan.priority", T.UINT, "Priority code point (PCP)", bits=3)
def _vlan_priority(ctx):
    return _tag_field(ctx, 0, 13, 0x7)


@field("vlan.dei", T.BOOL, "Drop eligible indicator")
def _vlan_dei(ctx):
    return [Occurrence(o.values.astype(bool), o.present, o.layer) for o in _tag_field(ctx, 0, 12, 0x1)]


@field("vlan.etype", T.UINT, "EtherType after the tag", bits=16, base="hex", value_names=ETHERTYPES)
def _vlan_etype(ctx):
    return _tag_field(ctx, 2, 0, 0xFFFF)
