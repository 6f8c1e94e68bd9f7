"""Tunnels decoded through to the inner packet: GRE (incl. ERSPAN), VXLAN, Teredo and GTP-U. IP-in-IP needs no
header of its own (the walker goes straight to the inner IP header)."""

from __future__ import annotations

from ..jit import inline
from ..packet import ENC_GRE, ENC_GTP, ENC_TEREDO, ENC_VXLAN, ST_TRUNCATED
from . import layers as L
from .wire import be16

GRE_F_CHECKSUM = 0x8000
GRE_F_ROUTING = 0x4000
GRE_F_KEY = 0x2000
GRE_F_SEQUENCE = 0x1000
GRE_PROTO_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
GRE_PROTO_ERSPAN2 = 0x88BE  # 8-byte ERSPAN type II header, then Ethernet
GRE_PROTO_ERSPAN3 = 0x22EB  # 12-byte ERSPAN type III header (+8 with the platform subheader), then Ethernet

UDP_PORT_VXLAN = 4789
UDP_PORT_TEREDO = 3544
UDP_PORT_GTP_U = 2152
GTP_MSG_TPDU = 0xFF  # G-PDU: a user packet follows
GTP_F_OPTIONAL = 0x07  # E, S or PN: sequence number, N-PDU number and next extension type are present


@inline
def decode_gre(buf, p, end, r):
    if p + 4 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    flags = be16(buf, p)
    proto = be16(buf, p + 2)
    if flags & 0x7 != 0 or flags & GRE_F_ROUTING:
        return L.DONE, p, 0, 0  # enhanced GRE (PPTP) or source routing: not decoded further
    hlen = 4
    if flags & GRE_F_CHECKSUM:
        hlen += 4
    if flags & GRE_F_KEY:
        hlen += 4
    if flags & GRE_F_SEQUENCE:
        hlen += 4
    q = p + hlen
    if q > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    r.encap |= ENC_GRE
    if proto == GRE_PROTO_TEB:
        return L.ETHERNET, q, 0, 0
    if proto == GRE_PROTO_ERSPAN2:
        return L.ETHERNET, q + 8, 0, 0
    if proto == GRE_PROTO_ERSPAN3:
        if q + 12 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p, 0, 0
        return L.ETHERNET, q + (20 if buf[q + 11] & 1 else 12), 0, 0
    return L.ETHERTYPE, q, proto, 0


@inline
def _gtp_u(buf, p, end, r):
    """GTPv1-U: 8-byte header, optional 4 bytes and extension headers, then an IP packet (G-PDU only)."""
    if p + 8 > end:
        return L.DONE, p, 0, 0
    flags = buf[p]
    if flags >> 5 != 1 or buf[p + 1] != GTP_MSG_TPDU:
        return L.DONE, p, 0, 0
    q = p + 8
    if flags & GTP_F_OPTIONAL:
        if q + 4 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p, 0, 0
        ext = buf[q + 3]
        q += 4
        while ext != 0:  # each extension: length in 4-byte units, ..., next extension type in its last byte
            if q + 1 > end or buf[q] == 0:
                return L.DONE, p, 0, 0
            q += 4 * buf[q]
            if q > end:
                r.status |= ST_TRUNCATED
                return L.DONE, p, 0, 0
            ext = buf[q - 1]
    if q >= end:
        return L.DONE, p, 0, 0
    r.encap |= ENC_GTP
    return L.IP_BY_VERSION, q, 0, 0


@inline
def decode_udp_tunnel(buf, p, end, sport, dport, r):
    """The UDP payload at p, when it is a tunnel: VXLAN (to port 4789) or Teredo (port 3544 and an IPv6 packet)."""
    if dport == UDP_PORT_VXLAN:
        if p + 8 > end:
            return L.DONE, p, 0, 0
        r.encap |= ENC_VXLAN
        return L.ETHERNET, p + 8, 0, 0
    if sport == UDP_PORT_GTP_U or dport == UDP_PORT_GTP_U:
        return _gtp_u(buf, p, end, r)
    if sport == UDP_PORT_TEREDO or dport == UDP_PORT_TEREDO:
        q = p
        # optional authentication (type 1) then origin indication (type 0) headers precede the IPv6 packet
        if q + 2 <= end and buf[q] == 0 and buf[q + 1] == 1:
            if q + 4 > end:
                return L.DONE, p, 0, 0
            q += 4 + buf[q + 2] + buf[q + 3] + 9  # id, auth value, nonce (8), confirmation (1)
        if q + 2 <= end and buf[q] == 0 and buf[q + 1] == 0:
            q += 8
        if q + 40 <= end and buf[q] >> 4 == 6:
            r.encap |= ENC_TEREDO
            return L.IPV6, q, 0, 0
    return L.DONE, p, 0, 0
