"""ARP: opcode and, for IPv4 over any hardware type, the sender and target protocol addresses."""

from __future__ import annotations

from ..jit import inline
from ..packet import ST_NOT_IP, ST_TRUNCATED
from .ethernet import ETH_IPV4
from .wire import be16, be32


@inline
def decode_arp(buf, base, p, end, r):
    if r.ipv == 0:
        r.status |= ST_NOT_IP
        r.l3_off = p - base
    if p + 8 > end:
        r.status |= ST_TRUNCATED
        return
    r.arp_op = be16(buf, p + 6)
    hlen = buf[p + 4]
    plen = buf[p + 5]
    if be16(buf, p + 2) != ETH_IPV4 or plen != 4:
        return
    if p + 8 + 2 * hlen + 8 > end:
        r.status |= ST_TRUNCATED
        return
    r.arp_spa = be32(buf, p + 8 + hlen)
    r.arp_tpa = be32(buf, p + 8 + 2 * hlen + 4)
