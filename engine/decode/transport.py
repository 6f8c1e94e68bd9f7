"""TCP (with options) and UDP headers.

Lengths follow Wireshark: the segment length comes from the IP length (tcp.len = ip.len - ip.hdr_len -
tcp.hdr_len), so a snaplen cut does not shorten it. A bad option is flagged (OPT_MALFORMED) and ends the option
walk; it does not stop the decode.
"""

from __future__ import annotations

import numpy as np

from ..jit import inline
from ..packet import (MAX_SACK_BLOCKS, OPT_MALFORMED, OPT_MSS, OPT_SACK, OPT_SACK_PERM, OPT_TS, OPT_WS,
                      ST_MALFORMED, ST_TRUNCATED)
from .wire import be16, be32

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WS = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TS = 8


# tcp_option_at's verdicts when no option is there to read
OPTS_END, OPTS_TRUNCATED, OPTS_MALFORMED = -1, -2, -3


@inline
def tcp_option_at(buf, q, oend, end):
    """The option at q of a TCP header whose options end at oend, with bytes captured up to end: (kind, length),
    or kind OPTS_END (end of the list), OPTS_TRUNCATED (the capture stops inside it) or OPTS_MALFORMED (its length
    cannot be right). The one option walk: the decoder and the readers of quoted headers all step with it."""
    if q >= oend:
        return OPTS_END, 0
    if q >= end:
        return OPTS_TRUNCATED, 0
    kind = np.int64(buf[q])
    if kind == TCPOPT_EOL:
        return OPTS_END, 0
    if kind == TCPOPT_NOP:
        return kind, 1
    if q + 2 > oend:
        return OPTS_MALFORMED, 0
    if q + 2 > end:
        return OPTS_TRUNCATED, 0
    olen = np.int64(buf[q + 1])
    if olen < 2 or q + olen > oend:
        return OPTS_MALFORMED, 0
    if q + olen > end:
        return OPTS_TRUNCATED, 0
    return kind, olen


@inline
def _tcp_options(buf, q, oend, end, r):
    """Options between q and oend (end of the TCP header); reads stop at end (captured bytes)."""
    opts = 0
    while True:
        kind, olen = tcp_option_at(buf, q, oend, end)
        if kind == OPTS_TRUNCATED:
            r.status |= ST_TRUNCATED
            break
        if kind == OPTS_MALFORMED:
            opts |= OPT_MALFORMED
            break
        if kind == OPTS_END:
            break
        if kind == TCPOPT_MSS:
            if olen == 4:
                opts |= OPT_MSS
                r.opt_mss = be16(buf, q + 2)
            else:
                opts |= OPT_MALFORMED
        elif kind == TCPOPT_WS:
            if olen == 3:
                opts |= OPT_WS
                r.opt_ws = buf[q + 2]
            else:
                opts |= OPT_MALFORMED
        elif kind == TCPOPT_SACK_PERM:
            if olen == 2:
                opts |= OPT_SACK_PERM
            else:
                opts |= OPT_MALFORMED
        elif kind == TCPOPT_SACK:
            if olen >= 10 and (olen - 2) % 8 == 0:
                opts |= OPT_SACK
                blocks = min((olen - 2) // 8, MAX_SACK_BLOCKS)
                for k in range(blocks):
                    r.sack_left[k] = be32(buf, q + 2 + 8 * k)
                    r.sack_right[k] = be32(buf, q + 6 + 8 * k)
                r.sack_count = blocks
            else:
                opts |= OPT_MALFORMED
        elif kind == TCPOPT_TS:
            if olen == 10:
                opts |= OPT_TS
                r.opt_ts_val = be32(buf, q + 2)
                r.opt_ts_ecr = be32(buf, q + 6)
            else:
                opts |= OPT_MALFORMED
        q += olen
    r.tcp_opts = opts


@inline
def decode_tcp(buf, base, p, end, limit, r):
    """TCP header at p; limit = end of the segment by IP length."""
    seg_len = limit - p
    r.l4_off = p - base
    r.l4_len = seg_len
    if p + 20 > end:
        # keep what the snaplen left: ports, then sequence and acknowledgement numbers
        if p + 4 <= end:
            r.sport = be16(buf, p)
            r.dport = be16(buf, p + 2)
        if p + 8 <= end:
            r.tcp_seq = be32(buf, p + 4)
        if p + 12 <= end:
            r.tcp_ack = be32(buf, p + 8)
        r.status |= ST_TRUNCATED
        return
    r.sport = be16(buf, p)
    r.dport = be16(buf, p + 2)
    r.tcp_seq = be32(buf, p + 4)
    r.tcp_ack = be32(buf, p + 8)
    off_flags = be16(buf, p + 12)
    hlen = (off_flags >> 12) * 4
    r.tcp_hlen = hlen
    r.tcp_flags = off_flags & 0x0FFF
    r.tcp_win = be16(buf, p + 14)
    r.tcp_csum = be16(buf, p + 16)
    r.tcp_urp = be16(buf, p + 18)
    if hlen < 20 or hlen > seg_len:
        r.status |= ST_MALFORMED  # bogus data offset: no options, no payload
        return
    _tcp_options(buf, p + 20, p + hlen, end, r)
    payload = seg_len - hlen
    r.payload_len = payload
    if payload > 0:
        r.payload_off = p + hlen - base


@inline
def decode_udp(buf, base, p, end, limit, r):
    """UDP header at p; the payload length is the UDP length, bounded by the IP length."""
    seg_len = limit - p
    r.l4_off = p - base
    r.l4_len = seg_len
    if p + 8 > end:
        if p + 4 <= end:
            r.sport = be16(buf, p)
            r.dport = be16(buf, p + 2)
        r.status |= ST_TRUNCATED
        return
    r.sport = be16(buf, p)
    r.dport = be16(buf, p + 2)
    ulen = be16(buf, p + 4)
    r.udp_len = ulen
    r.udp_csum = be16(buf, p + 6)
    if ulen < 8 or seg_len < 8:
        r.status |= ST_MALFORMED
        return
    if ulen > seg_len:
        r.status |= ST_MALFORMED  # UDP length claims more than the IP datagram holds
        ulen = seg_len
    r.payload_len = ulen - 8
    if ulen > 8:
        r.payload_off = p + 8 - base
