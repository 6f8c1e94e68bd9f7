"""Ethernet II and what can sit between it and the network layer: 802.1Q/802.1ad/0x9100 tags, MPLS label stacks,
PPPoE sessions and 802.2 LLC/SNAP."""

from __future__ import annotations

from ..jit import inline
from ..packet import ENC_FABRICPATH, ENC_MPLS, ENC_PPPOE, ENC_QINQ, ENC_VLAN, ST_NOT_IP, ST_TRUNCATED
from . import layers as L
from .wire import be16, be32, be48

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_MPLS = 0x8847
ETH_MPLS_MULTICAST = 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_FABRICPATH = 0x8903  # Cisco FabricPath: 2-byte FTag/TTL, then a whole Ethernet frame
ETH_MAX_LENGTH = 1500  # a type field up to this value is an 802.3 length: an LLC header follows

FCS_LEN = 4

PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057


@inline
def decode_ethernet(buf, p, end, r):
    """Ethernet header at p. Link columns keep the outermost header (the capture's own link)."""
    if p + 14 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    if r.eth_dst == 0 and r.eth_src == 0:
        r.eth_dst = be48(buf, p)
        r.eth_src = be48(buf, p + 6)
    return L.ETHERTYPE, p + 14, be16(buf, p + 12), 0


@inline
def _mpls_stack(buf, p, end, r):
    """Walk labels to bottom-of-stack; the payload's first nibble says IPv4 or IPv6 (no protocol field in MPLS)."""
    r.encap |= ENC_MPLS
    while True:
        if p + 4 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p
        entry = be32(buf, p)
        if r.mpls_label < 0:
            r.mpls_label = entry >> 12
        p += 4
        if entry & 0x100:  # bottom of stack
            break
    if p >= end:
        r.status |= ST_TRUNCATED
        return L.DONE, p
    return L.IP_BY_VERSION, p


@inline
def decode_ethertype(buf, p, end, etype, r):
    """Peel tags until a network protocol is reached; `etype` is the type field that announced the bytes at p."""
    while True:
        if etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD:
            if p + 4 > end:
                r.status |= ST_TRUNCATED
                return L.DONE, p, 0, 0
            if r.vlan_count == 0:
                r.vlan_id = be16(buf, p) & 0xFFF
            else:
                r.encap |= ENC_QINQ  # stacked tags
            if r.vlan_count < 255:
                r.vlan_count += 1
            r.encap |= ENC_VLAN
            if etype != ETH_VLAN:
                r.encap |= ENC_QINQ
            etype = be16(buf, p + 2)
            p += 4
        elif etype == ETH_MPLS or etype == ETH_MPLS_MULTICAST:
            nxt, p = _mpls_stack(buf, p, end, r)
            return nxt, p, 0, 0
        elif etype == ETH_PPPOE_SESSION:
            # 6-byte PPPoE header, then the 2-byte PPP protocol (no address/control bytes in PPPoE)
            if p + 8 > end:
                r.status |= ST_TRUNCATED
                return L.DONE, p, 0, 0
            r.encap |= ENC_PPPOE
            ppp = be16(buf, p + 6)
            p += 8
            if ppp == PPP_IPV4:
                etype = ETH_IPV4
            elif ppp == PPP_IPV6:
                etype = ETH_IPV6
            else:
                r.status |= ST_NOT_IP
                return L.DONE, p, 0, 0
        elif etype == ETH_FABRICPATH:
            r.encap |= ENC_FABRICPATH
            r.eth_src = 0  # the outer "addresses" are switch ids: the inner frame's MACs are the hosts' (as tshark)
            r.eth_dst = 0
            return L.ETHERNET, p + 2, FCS_LEN, 0  # the inner frame keeps its FCS (tshark decodes it so)
        elif etype <= ETH_MAX_LENGTH:
            # 802.2 LLC: only SNAP (AA AA 03 + OUI + EtherType) carries IP
            if p + 3 > end:
                r.status |= ST_TRUNCATED
                return L.DONE, p, 0, 0
            if buf[p] != 0xAA or buf[p + 1] != 0xAA or buf[p + 2] != 0x03:
                r.status |= ST_NOT_IP
                return L.DONE, p, 0, 0
            if p + 8 > end:
                r.status |= ST_TRUNCATED
                return L.DONE, p, 0, 0
            etype = be16(buf, p + 6)
            p += 8
        else:
            break
    r.eth_type = etype
    if etype == ETH_IPV4:
        return L.IPV4, p, 0, 0
    if etype == ETH_IPV6:
        return L.IPV6, p, 0, 0
    if etype == ETH_ARP:
        return L.ARP, p, 0, 0
    r.status |= ST_NOT_IP
    return L.DONE, p, 0, 0
