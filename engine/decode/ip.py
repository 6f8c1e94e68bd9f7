"""IPv4 and IPv6 headers (IPv6 extension headers walked to the upper-layer protocol).

The datagram's logical end comes from its length field, shortened to the frame's length on the wire when the field
claims more (Wireshark does the same), never to the captured length: a snaplen cut keeps tcp.len as on the wire.
"""

from __future__ import annotations

import numpy as np

from ..jit import inline
from ..packet import ST_IP_FRAGMENT, ST_MALFORMED, ST_TRUNCATED
from . import layers as L
from .wire import be16, be32, be64

IPPROTO_HOPOPTS = 0
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_DSTOPTS = 60
IPPROTO_MOBILITY = 135
IPPROTO_HIP = 139
IPPROTO_SHIM6 = 140

MAX_EXTENSION_HEADERS = 16


@inline
def _datagram_end(p, total, wend, r):
    end = p + total
    if end > wend:
        r.status |= ST_MALFORMED  # length field claims more than the frame carried on the wire
        end = wend
    return end


@inline
def decode_ipv4(buf, base, p, end, wend, r):
    if p + 20 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    vihl = buf[p]
    ihl = np.int64(vihl & 0x0F) * 4
    if vihl >> 4 == 6:
        return L.IPV6, p, 0, 0  # announced as IPv4 but is IPv6: Wireshark decodes it as IPv6, so do we
    if vihl >> 4 != 4 or ihl < 20:
        r.status |= ST_MALFORMED
        return L.DONE, p, 0, 0
    r.ipv = 4
    r.l3_off = p - base
    r.ip_hl = ihl
    r.ip_tos = buf[p + 1]
    total = be16(buf, p + 2)
    if total == 0:
        total = wend - p  # 0 = length left to the NIC (TCP segmentation offload): use what the frame holds
    r.ip_len = total
    r.ip_id = be16(buf, p + 4)
    frag = be16(buf, p + 6)
    r.ip_flags = frag >> 13
    r.frag_off = frag & 0x1FFF
    r.ip_ttl = buf[p + 8]
    proto = np.int64(buf[p + 9])
    r.ip_proto = proto
    r.ip_csum = be16(buf, p + 10)
    r.src_hi = 0
    r.dst_hi = 0
    r.src_lo = np.uint64(be32(buf, p + 12))
    r.dst_lo = np.uint64(be32(buf, p + 16))
    if total < ihl:
        r.status |= ST_MALFORMED
        return L.DONE, p, 0, 0
    if p + ihl > end:
        r.status |= ST_TRUNCATED  # options cut off
        return L.DONE, p, 0, 0
    if frag & 0x3FFF:  # MF or a non-zero offset
        r.status |= ST_IP_FRAGMENT
        return L.DONE, p, 0, 0
    return L.UPPER, p + ihl, proto, _datagram_end(p, total, wend, r)


@inline
def decode_ipv6(buf, base, p, end, wend, r):
    if p + 40 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    if buf[p] >> 4 != 6:
        r.status |= ST_MALFORMED
        return L.DONE, p, 0, 0
    r.ipv = 6
    r.l3_off = p - base
    r.ip_tos = (be16(buf, p) >> 4) & 0xFF
    plen = be16(buf, p + 4)
    r.ip_len = plen + 40
    nh = np.int64(buf[p + 6])
    r.ip_ttl = buf[p + 7]
    r.src_hi = be64(buf, p + 8)
    r.src_lo = be64(buf, p + 16)
    r.dst_hi = be64(buf, p + 24)
    r.dst_lo = be64(buf, p + 32)
    limit = _datagram_end(p, plen + 40, wend, r)
    q = p + 40
    nxt = L.UPPER
    for _ in range(MAX_EXTENSION_HEADERS):
        if nh == IPPROTO_HOPOPTS or nh == IPPROTO_ROUTING or nh == IPPROTO_DSTOPTS or nh == IPPROTO_MOBILITY \
                or nh == IPPROTO_HIP or nh == IPPROTO_SHIM6:
            if q + 2 > end:
                r.status |= ST_TRUNCATED
                nxt = L.DONE
                break
            nh_next = np.int64(buf[q])
            q += (np.int64(buf[q + 1]) + 1) * 8
            nh = nh_next
        elif nh == IPPROTO_AH:
            if q + 2 > end:
                r.status |= ST_TRUNCATED
                nxt = L.DONE
                break
            nh_next = np.int64(buf[q])
            q += (np.int64(buf[q + 1]) + 2) * 4
            nh = nh_next
        elif nh == IPPROTO_FRAGMENT:
            if q + 8 > end:
                r.status |= ST_TRUNCATED
                nxt = L.DONE
                break
            nh = np.int64(buf[q])
            fo = be16(buf, q + 2)
            r.frag_off = fo >> 3
            r.ip_flags = fo & 1
            r.ip_id = be32(buf, q + 4)
            q += 8
            if fo & 0xFFF9:  # an offset or M: a real fragment (an atomic fragment is decoded as a whole)
                r.status |= ST_IP_FRAGMENT
                nxt = L.DONE
                break
        else:
            break
    r.ip_proto = nh
    r.ip_hl = min(q - p, 255)
    if nxt == L.DONE:
        return L.DONE, p, 0, 0
    if q > limit:
        r.status |= ST_MALFORMED  # extension headers run past the payload length
        return L.DONE, p, 0, 0
    return L.UPPER, q, nh, limit
