"""Bidirectional conversations: a flow table in numpy arrays, updated chunk by chunk by one kernel.

Each packet gets `conv` (conversation index, all protocols), `stream` (Wireshark's tcp.stream / udp.stream index)
and `dir` (0 = sent by endpoint A, the sender of the conversation's first packet; 1 = by B). Client/server roles are
facts about the whole conversation (who sent the SYN, else who answered, else which port is a service port), kept
per conversation in `client` rather than per packet, because a late SYN can decide them after earlier packets were
already written out.

tcp.stream follows Wireshark: indices in order of first appearance, and a pure SYN whose sequence number differs
from the base sequence of the existing conversation in its direction starts a new conversation (port reuse).
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import inline, kernel
from diagnose.packet import ENC_GTP, ENC_TEREDO, ENC_VXLAN, ST_ICMP_ERROR, ST_IP_FRAGMENT, ST_REASSEMBLED
from diagnose.tablegrowth import grown, reserved, state_dtype

UDP_TUNNELS = ENC_VXLAN | ENC_GTP | ENC_TEREDO

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58

# per-conversation flag bits (index 0 = from A, 1 = from B via shift)
F_SYN = 1 << 0  # pure SYN
F_SYNACK = 1 << 1
F_FIN = 1 << 2
F_RST = 1 << 3
F_DATA = 1 << 4
F_ACK = 1 << 5  # any segment with the ACK flag

CONV_DTYPE = state_dtype(
    [
        ("proto", np.uint8),
        ("ipv", np.uint8),
        ("a_hi", np.uint64),
        ("a_lo", np.uint64),
        ("b_hi", np.uint64),
        ("b_lo", np.uint64),
        ("a_port", np.uint16),  # ports; for ICMP echo the identifier on both sides
        ("b_port", np.uint16),
        ("stream", np.int32),  # tcp.stream / udp.stream, -1 for other protocols
        ("first_frame", np.int64),
        ("last_frame", np.int64),
        ("first_ts", np.int64),
        ("last_ts", np.int64),
        ("pkts", np.int64, (2,)),  # per direction: [A->B, B->A]
        ("bytes", np.int64, (2,)),  # frame bytes on the wire
        ("payload", np.int64, (2,)),  # transport payload bytes (tcp.len / UDP payload)
        ("flags", np.uint8, (2,)),  # F_* seen per direction
        ("base_seq", np.uint32, (2,)),  # first sequence number per direction (port-reuse test)
        ("base_set", np.uint8, (2,)),
        ("client", np.int8),  # 0 = A, 1 = B, -1 not yet known
        ("reused", np.uint8),  # started by a SYN that reused the ports of an earlier conversation
    ]
)

# kernel status codes
DONE, GROW_CONVS, GROW_HASH = 0, 1, 2


@inline
def mix64(x):
    """A 64-bit finaliser (murmur3's): spreads key bits over the hash table's slot index."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    return x


@inline
def hash_key(ahi, alo, bhi, blo, misc):
    """Hash of a canonical conversation key (two addresses as hi/lo halves, ports/protocol packed in misc)."""
    return mix64(ahi * np.uint64(0x9E3779B97F4A7C15) ^ alo ^ mix64(bhi ^ blo * np.uint64(0xC2B2AE3D27D4EB4F)) ^ misc)


@kernel
def _key(src_hi, src_lo, dst_hi, dst_lo, sp, dp, proto, ipv):
    """Canonical key (smaller (address, port) endpoint first) and its hash."""
    src_first = (src_hi < dst_hi) or (src_hi == dst_hi and (src_lo < dst_lo or (src_lo == dst_lo and sp <= dp)))
    if src_first:
        ahi, alo, bhi, blo, pa, pb = src_hi, src_lo, dst_hi, dst_lo, sp, dp
    else:
        ahi, alo, bhi, blo, pa, pb = dst_hi, dst_lo, src_hi, src_lo, dp, sp
    misc = (pa << np.uint64(32)) | (pb << np.uint64(16)) | (np.uint64(proto) << np.uint64(8)) | np.uint64(ipv)
    return ahi, alo, bhi, blo, misc, hash_key(ahi, alo, bhi, blo, misc)


@kernel
def _conv_key(cv):
    return _key(cv.a_hi, cv.a_lo, cv.b_hi, cv.b_lo, np.uint64(cv.a_port), np.uint64(cv.b_port), cv.proto, cv.ipv)


@kernel
def _find(slots, convs, ahi, alo, bhi, blo, misc, h):
    """The slot holding this key, or the empty slot where it would go. Keys are not stored twice: a slot holds a
    conversation index and the key is recomputed from that conversation's row."""
    mask = slots.shape[0] - 1
    s = np.int64(h & np.uint64(mask))
    while slots[s] >= 0:
        cahi, calo, cbhi, cblo, cmisc, _h = _conv_key(convs[slots[s]])
        if calo == alo and cblo == blo and cmisc == misc and cahi == ahi and cbhi == bhi:
            return s
        s = (s + 1) & mask
    return s


@kernel
def _direction(cv, src_hi, src_lo, sport):
    if cv.a_hi == cv.b_hi and cv.a_lo == cv.b_lo and cv.a_port == cv.b_port:
        return 0  # talking to itself: one direction
    return 0 if (cv.a_hi == src_hi and cv.a_lo == src_lo and cv.a_port == sport) else 1


@kernel
def _new_conv(convs, c, proto, ipv, src_hi, src_lo, dst_hi, dst_lo, sp, dp, frame, ts, counters):
    cv = convs[c]
    cv.proto = proto
    cv.ipv = ipv
    cv.a_hi = src_hi
    cv.a_lo = src_lo
    cv.b_hi = dst_hi
    cv.b_lo = dst_lo
    cv.a_port = np.uint16(sp)
    cv.b_port = np.uint16(dp)
    cv.first_frame = frame
    cv.first_ts = ts
    cv.last_frame = frame
    cv.last_ts = ts
    cv.client = -1
    if proto == PROTO_TCP:
        cv.stream = counters[0]
        counters[0] += 1
    elif proto == PROTO_UDP:
        cv.stream = counters[1]
        counters[1] += 1
    else:
        cv.stream = -1


@kernel
def _be(buf, i, n):
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[i + k])
    return v


@kernel
def _outer_udp(buf, r):
    """(ok, ipv, src_hi, src_lo, dst_hi, dst_lo, sport, dport) of the outer IP/UDP header of a UDP tunnel."""
    z = np.uint64(0)
    if r.outer_l3_off < 0 or (r.encap & UDP_TUNNELS) == 0:
        return False, 0, z, z, z, z, z, z
    p = r.data + r.outer_l3_off
    # a reassembled outer datagram lies in the region appended after the frames
    end = buf.shape[0] if (r.status & ST_REASSEMBLED) != 0 else r.data + r.caplen
    if p >= end:
        return False, 0, z, z, z, z, z, z
    version = buf[p] >> 4
    if version == 4 and p + 20 <= end:
        ihl = np.int64(buf[p] & 15) * 4
        u = p + ihl
        if buf[p + 9] != PROTO_UDP or u + 4 > end:
            return False, 0, z, z, z, z, z, z
        return True, 4, z, _be(buf, p + 12, 4), z, _be(buf, p + 16, 4), _be(buf, u, 2), _be(buf, u + 2, 2)
    if version == 6 and p + 44 <= end and buf[p + 6] == PROTO_UDP:
        u = p + 40
        return (True, 6, _be(buf, p + 8, 8), _be(buf, p + 16, 8), _be(buf, p + 24, 8), _be(buf, p + 32, 8),
                _be(buf, u, 2), _be(buf, u + 2, 2))
    return False, 0, z, z, z, z, z, z


@kernel
def _assign(buf, table, start, convs, n_convs, slots, counters):
    """Assign conversations to rows start.. of the packet table; returns (next row, n_convs, status).

    Returns early (GROW_CONVS / GROW_HASH) when an array is full; the caller grows it and calls again from that row.
    """
    n = table.shape[0]
    for i in range(start, n):
        r = table[i]
        if i > start or r.outer_stream < 0:  # a resumed row keeps the outer flow it already got
            r.outer_stream = -1
        r.conv = -1
        r.stream = -1
        r.dir = 0
        if r.outer_stream < 0:
            ok, oipv, oshi, oslo, odhi, odlo, osp, odp = _outer_udp(buf, r)
            if ok:
                # Wireshark numbers the tunnel's own UDP conversation too (before the inner one)
                ahi, alo, bhi, blo, misc, h = _key(oshi, oslo, odhi, odlo, osp, odp, PROTO_UDP, oipv)
                s = _find(slots, convs, ahi, alo, bhi, blo, misc, h)
                c = slots[s]
                if c < 0:
                    if n_convs >= convs.shape[0]:
                        return i, n_convs, GROW_CONVS
                    if (counters[2] + 1) * 2 > slots.shape[0]:
                        return i, n_convs, GROW_HASH
                    counters[2] += 1
                    c = n_convs
                    n_convs += 1
                    slots[s] = c
                    _new_conv(convs, c, PROTO_UDP, oipv, oshi, oslo, odhi, odlo, osp, odp, r.frame, r.ts, counters)
                cv = convs[c]
                d = _direction(cv, oshi, oslo, np.uint16(osp))
                cv.last_frame = r.frame
                cv.last_ts = r.ts
                cv.pkts[d] += 1
                cv.bytes[d] += r.wirelen
                r.outer_stream = cv.stream
        if r.ipv == 0 or (r.status & ST_IP_FRAGMENT) != 0:  # not IP, or a fragment (the reassembled row has L4)
            continue
        if (r.status & ST_ICMP_ERROR) != 0 and (r.q_proto == PROTO_TCP or r.q_proto == PROTO_UDP):
            # Wireshark gives an ICMP error the stream of the flow it quotes: an existing TCP conversation only,
            # but a UDP conversation is created if needed. The error is not counted in the flow's statistics.
            sp = np.uint64(r.q_sport)
            dp = np.uint64(r.q_dport)
            ahi, alo, bhi, blo, misc, h = _key(r.q_src_hi, r.q_src_lo, r.q_dst_hi, r.q_dst_lo, sp, dp, r.q_proto,
                                               r.q_ipv)
            s = _find(slots, convs, ahi, alo, bhi, blo, misc, h)
            c = slots[s]
            if c < 0 and r.q_proto == PROTO_UDP:
                if n_convs >= convs.shape[0]:
                    return i, n_convs, GROW_CONVS
                if (counters[2] + 1) * 2 > slots.shape[0]:
                    return i, n_convs, GROW_HASH
                counters[2] += 1
                c = n_convs
                n_convs += 1
                slots[s] = c
                _new_conv(convs, c, r.q_proto, r.q_ipv, r.q_src_hi, r.q_src_lo, r.q_dst_hi, r.q_dst_lo, sp, dp,
                          r.frame, r.ts, counters)
            if c >= 0:
                r.conv = c
                r.stream = convs[c].stream
                r.dir = _direction(convs[c], r.q_src_hi, r.q_src_lo, np.uint16(sp))
            continue
        proto = r.ip_proto
        is_tcp = proto == PROTO_TCP and r.l4_off >= 0
        is_udp = proto == PROTO_UDP and r.l4_off >= 0
        sp = np.uint64(0)
        dp = np.uint64(0)
        if is_tcp or is_udp:
            sp = np.uint64(r.sport)
            dp = np.uint64(r.dport)
        elif (proto == PROTO_ICMP or proto == PROTO_ICMPV6) and r.icmp_type >= 0:
            t = r.icmp_type
            if t == 0 or t == 8 or t == 128 or t == 129:  # echo request/reply share a flow by identifier
                sp = np.uint64(r.icmp_id)
                dp = sp
        ahi, alo, bhi, blo, misc, h = _key(r.src_hi, r.src_lo, r.dst_hi, r.dst_lo, sp, dp, proto, r.ipv)
        s = _find(slots, convs, ahi, alo, bhi, blo, misc, h)
        c = slots[s]
        flags = r.tcp_flags
        pure_syn = is_tcp and (flags & 0x12) == 0x02
        if c >= 0 and pure_syn:
            d = _direction(convs[c], r.src_hi, r.src_lo, r.sport)
            if convs[c].base_set[d] and convs[c].base_seq[d] != r.tcp_seq:
                c = -1  # Wireshark: a SYN with a new ISN on a known 4-tuple is a new conversation
        if c < 0:
            if n_convs >= convs.shape[0]:
                return i, n_convs, GROW_CONVS
            if slots[s] < 0 and (counters[2] + 1) * 2 > slots.shape[0]:
                return i, n_convs, GROW_HASH
            if slots[s] < 0:
                counters[2] += 1  # occupied slots
            else:
                convs[n_convs].reused = 1
            c = n_convs
            n_convs += 1
            slots[s] = c
            _new_conv(convs, c, proto, r.ipv, r.src_hi, r.src_lo, r.dst_hi, r.dst_lo, sp, dp, r.frame, r.ts,
                      counters)
        cv = convs[c]
        d = _direction(cv, r.src_hi, r.src_lo, np.uint16(sp))
        r.conv = c
        r.stream = cv.stream
        r.dir = d
        cv.last_frame = r.frame
        cv.last_ts = r.ts
        cv.pkts[d] += 1
        cv.bytes[d] += r.wirelen
        if r.payload_len > 0:
            cv.payload[d] += r.payload_len
            cv.flags[d] |= F_DATA
        if is_tcp:
            if not cv.base_set[d]:
                cv.base_set[d] = 1
                cv.base_seq[d] = r.tcp_seq if (flags & 0x02) else r.tcp_seq - np.uint32(1)
            if pure_syn:
                cv.flags[d] |= F_SYN
                if cv.client < 0:
                    cv.client = d
            elif (flags & 0x12) == 0x12:
                cv.flags[d] |= F_SYNACK
                if cv.client < 0:
                    cv.client = 1 - d
            if flags & 0x01:
                cv.flags[d] |= F_FIN
            if flags & 0x04:
                cv.flags[d] |= F_RST
            if flags & 0x10:
                cv.flags[d] |= F_ACK
    return n, n_convs, DONE


@kernel
def _rehash(slots, convs, new_slots):
    mask = new_slots.shape[0] - 1
    for s in range(slots.shape[0]):
        if slots[s] < 0:
            continue
        _a, _b, _c, _d, _m, h = _conv_key(convs[slots[s]])
        t = np.int64(h & np.uint64(mask))
        while new_slots[t] >= 0:
            t = (t + 1) & mask
        new_slots[t] = slots[s]


class FlowTable:
    """All conversations of a capture, updated one packet-table chunk at a time."""

    def __init__(self, initial: int | None = None):
        # the conversations' rows are reserved up front (diagnose.tablegrowth): no growth below ~230k conversations
        self._convs = reserved(CONV_DTYPE) if initial is None else np.zeros(initial, CONV_DTYPE)
        self.count = 0
        self._counters = np.zeros(3, np.int64)  # next tcp.stream, next udp.stream, occupied hash slots
        self._slots = np.full((initial or 1024) * 4, -1, np.int32)  # open addressing: conversation index per slot

    def update(self, table: np.ndarray, buf: np.ndarray) -> None:
        """Fill conv/stream/dir/outer_stream of every row and account the rows to their conversations.

        `buf` holds the frames: the outer header of a UDP tunnel is read from it."""
        start = 0
        while True:
            start, self.count, status = _assign(buf, table, start, self._convs, self.count, self._slots,
                                                self._counters)
            if status == DONE:
                return
            if status == GROW_CONVS:
                self._convs = grown(self._convs, 2 * len(self._convs))
            else:
                new_slots = np.full(len(self._slots) * 2, -1, np.int32)
                _rehash(self._slots, self._convs, new_slots)
                self._slots = new_slots

    @property
    def conversations(self) -> np.ndarray:
        """CONV_DTYPE rows of every conversation so far (a view: copy it to keep it)."""
        return self._convs[: self.count]

    @property
    def tcp_streams(self) -> int:
        return int(self._counters[0])

    @property
    def udp_streams(self) -> int:
        return int(self._counters[1])
