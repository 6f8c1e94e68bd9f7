"""ICMP and ICMPv6: type, code, echo identifier/sequence, and the packet quoted by an error message.

Error types (v4: 3 unreachable, 4 source quench, 5 redirect, 11 time exceeded, 12 parameter problem; v6: 1 to 4)
quote the start of the offending datagram; its addresses, protocol, ports and TCP sequence number go to the q_*
columns, which let the flow table blame the connection the error is about.
"""

from __future__ import annotations

import numpy as np

from ..jit import inline
from ..packet import ST_ICMP_ERROR, ST_TRUNCATED
from .ip import IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING
from .wire import be16, be32, be64

IPPROTO_TCP = 6
IPPROTO_UDP = 17


@inline
def _is_echo_like(v6, itype):
    """Messages with identifier and sequence number fields."""
    if v6:
        return itype == 128 or itype == 129
    return itype == 0 or itype == 8 or itype == 13 or itype == 14 or itype == 15 or itype == 16 \
        or itype == 17 or itype == 18


@inline
def _is_error(v6, itype):
    if v6:
        return 1 <= itype <= 4
    return itype == 3 or itype == 4 or itype == 5 or itype == 11 or itype == 12


@inline
def _decode_quoted(buf, q, end, r):
    """The quoted datagram at q (reads bounded by end); True when its IP header was decoded."""
    if q >= end:
        return False
    version = buf[q] >> 4
    if version == 4:
        ihl = np.int64(buf[q] & 0x0F) * 4
        if q + 20 > end or ihl < 20:
            return False
        r.q_ipv = 4
        proto = np.int64(buf[q + 9])
        r.q_proto = proto
        r.q_src_hi = 0
        r.q_dst_hi = 0
        r.q_src_lo = np.uint64(be32(buf, q + 12))
        r.q_dst_lo = np.uint64(be32(buf, q + 16))
        if be16(buf, q + 6) & 0x1FFF:  # not the first fragment: no transport header quoted
            return True
        t = q + ihl
    elif version == 6:
        if q + 40 > end:
            return False
        r.q_ipv = 6
        r.q_src_hi = be64(buf, q + 8)
        r.q_src_lo = be64(buf, q + 16)
        r.q_dst_hi = be64(buf, q + 24)
        r.q_dst_lo = be64(buf, q + 32)
        nh = np.int64(buf[q + 6])
        t = q + 40
        for _ in range(8):
            if nh == IPPROTO_HOPOPTS or nh == IPPROTO_ROUTING or nh == IPPROTO_DSTOPTS:
                if t + 2 > end:
                    r.q_proto = nh
                    return True
                nh_next = np.int64(buf[t])
                t += (np.int64(buf[t + 1]) + 1) * 8
                nh = nh_next
            elif nh == IPPROTO_AH:
                if t + 2 > end:
                    r.q_proto = nh
                    return True
                nh_next = np.int64(buf[t])
                t += (np.int64(buf[t + 1]) + 2) * 4
                nh = nh_next
            elif nh == IPPROTO_FRAGMENT:
                if t + 8 > end:
                    r.q_proto = nh
                    return True
                nh_next = np.int64(buf[t])
                later_fragment = be16(buf, t + 2) & 0xFFF8
                t += 8
                nh = nh_next
                if later_fragment:
                    r.q_proto = nh
                    return True
            else:
                break
        r.q_proto = nh
        proto = nh
    else:
        return False
    if (proto == IPPROTO_TCP or proto == IPPROTO_UDP) and t + 4 <= end:
        r.q_sport = be16(buf, t)
        r.q_dport = be16(buf, t + 2)
        if proto == IPPROTO_TCP and t + 8 <= end:
            r.q_tcp_seq = be32(buf, t + 4)
    return True


@inline
def decode_icmp(buf, base, p, end, limit, v6, r):
    seg_len = limit - p
    r.l4_off = p - base
    r.l4_len = seg_len
    if p + 4 > end:
        r.status |= ST_TRUNCATED
        return
    itype = np.int64(buf[p])
    r.icmp_type = itype
    r.icmp_code = buf[p + 1]
    if p + 8 > end:
        r.status |= ST_TRUNCATED
        return
    if _is_echo_like(v6, itype):
        r.icmp_id = be16(buf, p + 4)
        r.icmp_seq = be16(buf, p + 6)
    if seg_len > 8:
        r.payload_off = p + 8 - base
        r.payload_len = seg_len - 8
    if _is_error(v6, itype):
        if _decode_quoted(buf, p + 8, min(end, limit), r):
            r.status |= ST_ICMP_ERROR
