"""Checksum verification, run lazily (a rule or a field asks for it), never inside decode_chunk.

Result per row: CK_IP_BAD (IPv4 header checksum wrong, outer or inner header), CK_L4_BAD (TCP, UDP, ICMP or
ICMPv6 checksum wrong), CK_L4_UNVERIFIED (the transport checksum cannot be checked: bytes cut by the snaplen, or an
IP fragment). A UDP/IPv4 checksum of 0 means 'not computed' and is neither bad nor unverified.
"""

from __future__ import annotations

import numpy as np

from ..jit import kernel
from ..jit import inline
from ..packet import ST_IP_FRAGMENT, ST_REASSEMBLED

CK_IP_BAD = 1
CK_L4_BAD = 2
CK_L4_UNVERIFIED = 4

_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_ICMPV6 = 58


@inline
def _sum16(buf, p, n):
    """Sum of n bytes at p as big-endian 16-bit words (odd tail padded with a zero byte), not yet folded."""
    acc = np.int64(0)
    k = 0
    while k + 1 < n:
        acc += (np.int64(buf[p + k]) << 8) | np.int64(buf[p + k + 1])
        k += 2
    if k < n:
        acc += np.int64(buf[p + k]) << 8
    return acc


@inline
def _fold(acc):
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


@inline
def _addr_sum(hi, lo):
    acc = np.int64(0)
    for v in (hi, lo):
        for s in (48, 32, 16, 0):
            acc += np.int64((v >> np.uint64(s)) & np.uint64(0xFFFF))
    return acc


@inline
def _ipv4_header_bad(buf, p, end):
    if p + 20 > end:
        return False
    ihl = np.int64(buf[p] & 0x0F) * 4
    if ihl < 20 or p + ihl > end:
        return False
    return _fold(_sum16(buf, p, ihl)) != 0xFFFF


@kernel
def verify_rows(buf, table, out):
    n = buf.shape[0]
    for i in range(table.shape[0]):
        r = table[i]
        base = np.int64(r.data)
        if base < 0 or base > n:
            out[i] = 0
            continue
        # a reassembled datagram lies in the appended part of the buffer, past the frame's captured bytes
        end = n if r.status & ST_REASSEMBLED else min(base + np.int64(r.caplen), n)
        bits = 0
        if r.ipv == 4 and r.l3_off >= 0 and _ipv4_header_bad(buf, base + r.l3_off, end):
            bits |= CK_IP_BAD
        if r.outer_l3_off >= 0:
            q = base + r.outer_l3_off
            if q < end and buf[q] >> 4 == 4 and _ipv4_header_bad(buf, q, min(base + np.int64(r.caplen), n)):
                bits |= CK_IP_BAD
        proto = np.int64(r.ip_proto)
        checked = proto == _PROTO_TCP or proto == _PROTO_UDP or proto == _PROTO_ICMPV6 \
            or (proto == _PROTO_ICMP and r.ipv == 4)
        if checked and r.ipv != 0:
            if r.status & ST_IP_FRAGMENT or r.l4_off < 0:
                bits |= CK_L4_UNVERIFIED
            else:
                p = base + r.l4_off
                length = np.int64(r.l4_len)
                if length < 0 or p + length > end or (proto == _PROTO_UDP and length < 8) or length < 4:
                    bits |= CK_L4_UNVERIFIED
                elif not (proto == _PROTO_UDP and r.ipv == 4 and r.udp_csum == 0):
                    acc = _sum16(buf, p, length)
                    if proto != _PROTO_ICMP:  # pseudo-header: addresses, protocol, transport length
                        acc += _addr_sum(r.src_hi, r.src_lo) + _addr_sum(r.dst_hi, r.dst_lo) + proto
                        acc += (length >> 16) + (length & 0xFFFF)
                    if _fold(acc) != 0xFFFF:
                        bits |= CK_L4_BAD
        out[i] = bits
