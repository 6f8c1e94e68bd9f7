"""Zeek's connection state (`conn_state`) and `history`, computed by a numba kernel chunk by chunk.

The semantics follow Zeek's TCP/UDP/ICMP session analysis (zeek/zeek 9.x, base/protocols/conn): each side of a
connection is an endpoint with a state (inactive, SYN sent, SYN-ACK sent, partial, established, closed, reset);
every packet moves the state machine and may add a history letter (upper case = originator, lower case =
responder); `conn_state` is derived from the two endpoint states when the connection is logged. Roles are decided
like Zeek: the first packet's sender is the originator, unless the first packet is not a pure SYN and comes from a
likely server port (then the roles flip and the history starts with '^'), or a connection that began with a
SYN-ACK sees productive traffic.

Two keyings share the same per-connection state machine:
* `ConnStates`: one state per conversation of the flow table (Wireshark's tcp.stream / udp.stream). This is what
  `flow.state` / `flow.history` report: one verdict per conversation, however long it was idle.
* `ZeekConnections`: Zeek's own notion of a connection: keyed by Zeek's 5-tuple (ICMP "ports" are type and
  counterpart type), ended by Zeek's timers (inactivity: TCP 1 min before and 5 min after the handshake, UDP/ICMP
  1 min; 5 s after an unanswered SYN; 5 s after a complete close or reset) and by port reuse (a new SYN on a closed
  connection). It reproduces conn.log row for row; tests compare it with Zeek's own baselines.
Differences to Zeek that remain are listed in docs/zeek-differences.md.

State is O(connections): a fixed-size record per connection (TCP connections add one record for the endpoint
sequence state and at most OOO_BLOCKS out-of-order data blocks per direction for content-gap accounting).
"""

from __future__ import annotations

import numpy as np

from diagnose.conn.ports import likely_server_ports
from diagnose.flows import hash_key, mix64
from diagnose.jit import inline, kernel
from diagnose.packet import (ENC_GTP, ENC_TEREDO, ENC_VXLAN, PACKET_DTYPE, ST_ICMP_ERROR, ST_IP_FRAGMENT,
                             ST_MALFORMED, ST_REASSEMBLED)
from diagnose.tablegrowth import grown, reserved, state_dtype

_UDP_TUNNELS = ENC_TEREDO | ENC_VXLAN | ENC_GTP

# ---- endpoint states (Zeek's numbering, used by conn_state) ------------------------------------------------------
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = 0, 1, 2, 3, 4, 5, 6
STATE_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")

# ---- connection kinds ---------------------------------------------------------------------------------------------
K_TCP, K_UDP, K_ICMP, K_OTHER = 1, 2, 3, 4
KIND_NAMES = {K_TCP: "tcp", K_UDP: "udp", K_ICMP: "icmp", K_OTHER: "unknown_transport"}

# ---- history masks (once-per-direction letters; responder masks are shifted by 16) ------------------------------
H_SYN, H_FIN, H_RST, H_FIN_RST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
# logarithmic letters: index into the per-endpoint counters
L_GAP, L_CHECKSUM, L_RETRANSMIT, L_ZERO_WINDOW = 0, 1, 2, 3
_LOG_LETTERS = np.array([ord("G"), ord("C"), ord("T"), ord("W")], np.uint8)

# ---- Zeek's timing constants (init-bare.zeek defaults), in ns -----------------------------------------------------
SEC = 1_000_000_000
TCP_INACTIVITY = 300 * SEC  # tcp_inactivity_timeout, once the handshake is over
UDP_INACTIVITY = 60 * SEC  # udp_inactivity_timeout (also TCP during the handshake)
ICMP_INACTIVITY = 60 * SEC
OTHER_INACTIVITY = 60 * SEC
ATTEMPT_DELAY = 5 * SEC  # tcp_attempt_delay: an unanswered SYN is given up after this
CLOSE_DELAY = 5 * SEC  # tcp_close_delay: a closed connection lingers this long
SESSION_TIMER = 6 * SEC  # tcp_session_timer
SYN_TIMEOUT = 5 * SEC  # tcp_SYN_timeout (first expire check)
CONNECTION_LINGER = 5 * SEC  # tcp_connection_linger
MAX_INITIAL_WINDOW = 16384  # tcp_max_initial_window
MAX_ABOVE_HOLE = 16384  # tcp_max_above_hole_without_any_acks
EXCESSIVE_DATA = 10 * 1024 * 1024  # tcp_excessive_data_without_further_acks
TOO_LARGE_SEQ_DELTA = 1048576
MAX_TUNNEL_CHANGES = 5  # Tunnel::max_changes_per_connection
DNS_SESSION_TIMEOUT = 10 * SEC  # dns_session_timeout (UDP DNS connections: checked every 10 s, 1 s of slack)

HISTORY_MAX = 32  # letters kept per connection; more sets `hist_more`
OOO_BLOCKS = 4  # out-of-order data blocks kept per direction for gap accounting
M32 = 0xFFFFFFFF

_CONN_FIELDS = [
        ("kind", np.uint8),
        ("proto", np.uint8),  # IP protocol number
        ("ipv", np.uint8),
        ("orig", np.uint8),  # endpoint index of Zeek's originator
        ("h_hi", np.uint64, (2,)),  # endpoint addresses; endpoint 0 sent the first packet
        ("h_lo", np.uint64, (2,)),
        ("port", np.uint16, (2,)),  # ports (ICMP: type of the first packet, counterpart type or code)
        ("conv", np.int32),  # conversation of the first packet
        ("tcp", np.int32),  # index of the TCP endpoint record, -1 for other kinds
        ("first_frame", np.int64),
        ("last_frame", np.int64),
        ("start", np.int64),  # Zeek's start_time and LastTime (ns)
        ("last", np.int64),
        ("pkts", np.uint32, (2,)),  # per endpoint, packets that passed Zeek's checks (< 2**32 in any capture)
        ("ip_bytes", np.int64, (2,)),  # IP total length
        ("size", np.int64, (2,)),  # UDP/ICMP payload bytes, -1 while the endpoint is inactive
        ("missed", np.int64),  # bytes in content gaps (missed_bytes)
        ("hist", np.uint8, (HISTORY_MAX,)),
        ("hist_len", np.uint8),
        ("hist_more", np.uint8),
        ("hist_seen", np.uint32),
        ("encap_id", np.uint64),  # identity of the tunnel the packets came through (0 = none)
        ("tunnel_changes", np.uint8),
        ("dns_timer", np.uint8),  # Zeek's DNS analyzer expires the UDP connection after dns_session_timeout
        ("udp_chk", np.int32, (2,)),  # UDP bad checksums so far (a letter at 1, 10, 100, ...)
        ("removed", np.uint8),
]
CONN_DTYPE = state_dtype(_CONN_FIELDS)
# ConnStates' row per conversation (~74k on the 1M-packet benchmark) leaves out what the flow table already holds
# (the endpoints: endpoint 0 is the flow table's A, see _conv_rows; the first and last frames) and what only Zeek's
# own connection keying and timers read (tunnel identity, removal, the DNS session timer; the IP version and protocol
# are the flow table's too): 80 bytes less per conversation during the pass.
_ZEEK_KEYING_ONLY = ("h_hi", "h_lo", "conv", "first_frame", "last_frame", "encap_id", "tunnel_changes", "removed",
                     "dns_timer", "proto", "ipv")
CONV_CONN_DTYPE = state_dtype([f for f in _CONN_FIELDS if f[0] not in _ZEEK_KEYING_ONLY])

TCP_DTYPE = state_dtype(
    [
        ("state", np.uint8, (2,)),
        ("prev_state", np.uint8, (2,)),
        ("did_close", np.uint8, (2,)),
        ("did_eof", np.uint8, (2,)),
        ("skip", np.uint8, (2,)),  # reassembly gave up (Zeek's skip_deliveries)
        ("nblk", np.int32, (2,)),  # out-of-order blocks held (at most OOO_BLOCKS)
        ("is_partial", np.uint8),
        ("first_seen", np.uint8),  # 1 = originator's first packet seen, 2 = responder's
        ("is_active", np.uint8),
        ("close_deferred", np.uint8),
        ("deferred_gen", np.uint8),
        ("long_inact", np.uint8),  # the handshake is over: Zeek's TCP inactivity timeout applies (before: UDP's)
        ("start_seq", np.int64, (2,)),  # 32-bit values held in int64
        ("last_seq", np.int64, (2,)),
        ("seq_wraps", np.int64, (2,)),
        ("ack_seq", np.int64, (2,)),
        ("ack_wraps", np.int64, (2,)),
        ("last_syn", np.int64, (2,)),  # relative sequence of the last SYN/FIN/RST letter
        ("last_fin", np.int64, (2,)),
        ("last_rst", np.int64, (2,)),
        ("fin_cnt", np.int32, (2,)),
        ("fin_seq", np.int64, (2,)),
        ("cnt", np.int32, (2, 4)),  # logarithmic letters: events so far (int32: a row per TCP flow)
        ("reassem", np.int64, (2,)),  # relative sequence delivered in order so far
        ("trim", np.int64, (2,)),  # relative sequence acknowledged (trimmed) so far
        ("max_upper", np.int64, (2,)),  # highest relative sequence of data received
        ("blk_lo", np.int64, (2, OOO_BLOCKS)),  # out-of-order blocks above `reassem`
        ("blk_hi", np.int64, (2, OOO_BLOCKS)),
        ("attempt_at", np.int64),  # Zeek's analyzer timers (ns, 0 = none)
        ("delete_at", np.int64),
        ("expire_a", np.int64),
        ("expire_b", np.int64),
    ]
)

# kernel status
DONE, GROW_CONNS, GROW_TCP, GROW_HASH = 0, 1, 2, 3


# ---- small helpers ---------------------------------------------------------------------------------------------------
@inline
def _seq_delta(a, b):
    d = (a - b) & M32
    if d >= 0x80000000:
        d -= 0x100000000
    return d


@inline
def _power_of_ten(n):
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


@inline
def _handshake(state):
    return state == INACTIVE or state == SYN_SENT or state == SYN_ACK_SENT


@inline
def _add_hist(c, ch):
    if c.hist_len < HISTORY_MAX:
        c.hist[c.hist_len] = ch
        c.hist_len += 1
    else:
        c.hist_more = 1


@inline
def _conn_check_hist(c, mask, ch):
    """Zeek's Connection::CheckHistory: add the letter once; True if it was already there."""
    if (c.hist_seen & mask) == 0:
        c.hist_seen |= mask
        _add_hist(c, ch)
        return False
    return True


@inline
def _flip(c, t):
    """Swap originator and responder (Zeek's FlipRoles): letters so far keep their old case, '^' marks the swap."""
    c.orig = 1 - c.orig
    if c.tcp >= 0:
        fs = t.first_seen
        t.first_seen = (2 if fs & 1 else 0) | (1 if fs & 2 else 0)
        t.is_partial = 0
    _add_hist(c, ord("^"))


@inline
def _ep_add_hist(c, e, ch):
    if e != c.orig:
        ch += 32
    _add_hist(c, ch)


@kernel
def _ep_check_hist(c, t, e, mask, ch):
    """Zeek's TCP_Endpoint::CheckHistory, including the flip of a connection that began with a SYN-ACK."""
    if (ch == ord("A") or ch == ord("D")) and c.hist_len == 1 and c.hist[0] == ord("H"):
        _flip(c, t)
        c.hist[0] = ord("^")
        c.hist[1] = ord("h")
        c.hist_len = 2
        t.first_seen |= 1
    if e != c.orig:
        mask = mask << 16
        ch += 32
    return _conn_check_hist(c, mask, ch)


@kernel
def _log_letter(c, t, e, which):
    """Zeek's ScaledHistoryEntry: the letter at the 1st, 10th, 100th ... event."""
    t.cnt[e, which] += 1
    if _power_of_ten(t.cnt[e, which]):
        _ep_add_hist(c, e, _LOG_LETTERS[which])


@kernel
def _set_state(c, t, e, new):
    old = t.state[e]
    if new != old:
        if not _handshake(new) and _handshake(old) and _handshake(t.state[1 - e]):
            t.long_inact = 1  # the handshake is over: Zeek switches to the TCP inactivity timeout
        t.prev_state[e] = old
        t.state[e] = new


@kernel
def _relative(cur, last, wraps, start):
    """Zeek's get_relative_seq: (relative sequence, underflow)."""
    delta = _seq_delta(cur, last)
    if delta < 0:
        if wraps > 0 and cur > last:
            wraps -= 1
    elif delta > 0:
        if cur < last:
            wraps += 1
    if wraps == 0:
        d = _seq_delta(cur, start)
        return d, d < 0
    return (wraps << 32) + cur - start, False


# ---- content gaps (a minimal version of Zeek's TCP reassembler bookkeeping) --------------------------------------
@inline
def _clean(t, e):
    return t.state[e] == ESTABLISHED or (t.state[e] == CLOSED and t.prev_state[e] == ESTABLISHED)


@kernel
def _gap(c, t, x, length):
    if _clean(t, x) and _clean(t, 1 - x):
        _log_letter(c, t, x, L_GAP)
        c.missed += length


@kernel
def _deliver_pending(t, x):
    """Deliver out-of-order blocks that now continue the in-order data."""
    moved = True
    while moved:
        moved = False
        k = 0
        while k < t.nblk[x]:
            if t.blk_lo[x, k] <= t.reassem[x]:
                if t.blk_hi[x, k] > t.reassem[x]:
                    t.reassem[x] = t.blk_hi[x, k]
                last = t.nblk[x] - 1
                t.blk_lo[x, k] = t.blk_lo[x, last]
                t.blk_hi[x, k] = t.blk_hi[x, last]
                t.nblk[x] -= 1
                moved = True
            else:
                k += 1


@kernel
def _add_block(t, x, lo, hi):
    for k in range(t.nblk[x]):  # merge with an overlapping or touching block
        if lo <= t.blk_hi[x, k] and hi >= t.blk_lo[x, k]:
            t.blk_lo[x, k] = min(lo, t.blk_lo[x, k])
            t.blk_hi[x, k] = max(hi, t.blk_hi[x, k])
            return
    if t.nblk[x] < OOO_BLOCKS:
        t.blk_lo[x, t.nblk[x]] = lo
        t.blk_hi[x, t.nblk[x]] = hi
        t.nblk[x] += 1
        return
    best = 0  # full: widen the block nearest to the new one (its hole is then no longer seen)
    for k in range(1, OOO_BLOCKS):
        if abs(t.blk_lo[x, k] - lo) < abs(t.blk_lo[x, best] - lo):
            best = k
    t.blk_lo[x, best] = min(lo, t.blk_lo[x, best])
    t.blk_hi[x, best] = max(hi, t.blk_hi[x, best])


@kernel
def _size(t, e):
    """Zeek's TCP_Endpoint::Size: payload bytes from sequence numbers."""
    if t.prev_state[e] == SYN_SENT and t.state[e] == RESET and t.state[1 - e] == INACTIVE and not _no_data_acked(t, e):
        return 0
    last64 = (t.seq_wraps[e] << 32) + t.last_seq[e]
    ack64 = (t.ack_wraps[e] << 32) + t.ack_seq[e]
    size = (last64 if last64 > ack64 else ack64) - t.start_seq[e]
    if size != 0:
        size -= 1
    if t.fin_cnt[e] > 0 and size != 0:
        size -= 1
    return size


@inline
def _no_data_acked(t, e):
    ack = (t.ack_wraps[e] << 32) + t.ack_seq[e]
    return ack == t.start_seq[e] or ack == t.start_seq[e] + 1


@inline
def _has_blocks(t, x):
    return t.nblk[x] > 0 or t.max_upper[x] > t.trim[x]


@kernel
def _data_sent(t, x, seq, length):
    if t.skip[x]:
        return
    ack = (t.ack_wraps[x] << 32) + t.ack_seq[x] - t.start_seq[x]
    upper = seq + length
    if seq < ack:
        if upper <= ack:
            return
        seq = ack
    if upper <= t.trim[x]:
        return
    if seq < t.trim[x]:
        seq = t.trim[x]
    if upper > t.max_upper[x]:
        t.max_upper[x] = upper
    if seq <= t.reassem[x] < upper:
        t.reassem[x] = upper
        _deliver_pending(t, x)
        if _no_data_acked(t, x) and _size(t, x) > MAX_INITIAL_WINDOW:
            if t.reassem[x] > t.trim[x]:
                t.trim[x] = t.reassem[x]  # no ACKs seen: Zeek stops holding delivered data
    elif seq > t.reassem[x]:
        _add_block(t, x, seq, upper)
    undelivered = t.max_upper[x] - t.reassem[x] if _has_blocks(t, x) else 0
    if (_no_data_acked(t, x) and undelivered > MAX_ABOVE_HOLE) or t.max_upper[x] - t.trim[x] > EXCESSIVE_DATA:
        t.nblk[x] = 0
        t.max_upper[x] = t.trim[x]
        t.skip[x] = 1


@kernel
def _undelivered(c, t, x, up_to):
    if up_to <= 2 and t.is_partial:
        return False  # Zeek ignores the first ACK of a partial connection
    if not t.skip[x]:
        while True:  # holes below blocks that the ACK passes
            best = -1
            for k in range(t.nblk[x]):
                if t.blk_lo[x, k] < up_to and (best < 0 or t.blk_lo[x, k] < t.blk_lo[x, best]):
                    best = k
            if best < 0:
                break
            lo = t.blk_lo[x, best]
            if lo > t.reassem[x]:
                _gap(c, t, x, lo - t.reassem[x])
                t.reassem[x] = lo
            _deliver_pending(t, x)
        if up_to > t.reassem[x]:
            _gap(c, t, x, up_to - t.reassem[x])
    if up_to > t.reassem[x]:
        t.reassem[x] = up_to
    return True


@kernel
def _data_pending(t, x):
    if t.skip[x]:
        return False
    delivered = t.start_seq[x] + t.reassem[x]
    last = (t.seq_wraps[x] << 32) + t.last_seq[x]
    if last < delivered:
        return False
    if delivered != last - 1 and delivered != last:
        return True
    if t.state[x] != RESET and _has_blocks(t, 1 - x):
        return True
    return False


@kernel
def _connection_closed(c, t, e, gen_event):
    p = 1 - e
    if _data_pending(t, e):
        t.close_deferred = 1
        if not t.deferred_gen:
            t.deferred_gen = gen_event
        return
    t.close_deferred = 0
    if t.did_close[e]:
        return
    t.did_close[e] = 1
    if t.state[e] == RESET or t.did_close[p] or t.state[p] == INACTIVE:
        if t.prev_state[e] != INACTIVE or t.state[p] != INACTIVE:
            if t.deferred_gen:
                gen_event = True
                t.deferred_gen = 0
            if gen_event:
                t.is_active = 0
        t.attempt_at = 0  # CancelTimers
        t.expire_a = 0
        t.expire_b = 0
        t.delete_at = c.last + CLOSE_DELAY
    elif t.prev_state[e] != INACTIVE:
        t.expire_b = c.last + SESSION_TIMER


@kernel
def _check_eof(c, t, x):
    if not t.did_eof[x] and (t.fin_cnt[x] > 0 or t.state[x] == CLOSED or t.state[x] == RESET) \
            and not _data_pending(t, x):
        t.did_eof[x] = 1
        if t.close_deferred:
            _connection_closed(c, t, x, t.deferred_gen)
            t.close_deferred = 0


@kernel
def _ack_received(c, t, x, seq):
    if t.fin_cnt[x] > 0 and seq >= t.fin_seq[x]:
        seq = t.fin_seq[x] - 1
    if seq <= t.trim[x]:
        return
    if seq > t.reassem[x]:
        _undelivered(c, t, x, seq)
    k = 0
    while k < t.nblk[x]:  # drop blocks wholly acknowledged
        if t.blk_hi[x, k] <= seq:
            last = t.nblk[x] - 1
            t.blk_lo[x, k] = t.blk_lo[x, last]
            t.blk_hi[x, k] = t.blk_hi[x, last]
            t.nblk[x] -= 1
        else:
            k += 1
    t.trim[x] = seq
    _deliver_pending(t, x)
    _check_eof(c, t, x)


# ---- the TCP state machine ---------------------------------------------------------------------------------------
@kernel
def _update_history(c, t, e, flags, rel_seq, length):
    syn = (flags & 0x02) != 0
    fin = (flags & 0x01) != 0
    rst = (flags & 0x04) != 0
    bits = np.int64(syn) + np.int64(fin) + np.int64(rst)
    if bits > 1:
        if fin and rst:
            _ep_check_hist(c, t, e, H_FIN_RST, ord("I"))
        else:
            _ep_check_hist(c, t, e, H_MULTI, ord("Q"))
    elif bits == 1:
        if syn:
            code = ord("H") if flags & 0x10 else ord("S")
            if _ep_check_hist(c, t, e, H_SYN, code) and rel_seq != t.last_syn[e]:
                _ep_add_hist(c, e, code)
            t.last_syn[e] = rel_seq
        if fin:
            if _ep_check_hist(c, t, e, H_FIN, ord("F")) and rel_seq + length != t.last_fin[e]:
                _ep_add_hist(c, e, ord("F"))
            t.last_fin[e] = rel_seq + length
        if rst:
            if _ep_check_hist(c, t, e, H_RST, ord("R")) and rel_seq != t.last_rst[e]:
                _ep_add_hist(c, e, ord("R"))
            t.last_rst[e] = rel_seq
    else:
        if length:
            _ep_check_hist(c, t, e, H_DATA, ord("D"))
        elif flags & 0x10:
            _ep_check_hist(c, t, e, H_ACK, ord("A"))


@kernel
def _init_endpoint(t, e, flags, first, last_seq):
    st = t.state[e]
    syn = (flags & 0x02) != 0
    if st == INACTIVE:
        if syn:
            t.ack_seq[e] = first
            t.start_seq[e] = first
        else:
            t.ack_seq[e] = (first - 1) & M32
            t.start_seq[e] = (first - 1) & M32
            last_seq = first
        t.last_seq[e] = last_seq
    elif st == SYN_SENT or st == SYN_ACK_SENT:
        if syn and first != t.start_seq[e]:
            t.start_seq[e] = first
            t.ack_seq[e] = first
            t.last_seq[e] = last_seq
    elif st == ESTABLISHED or st == PARTIAL:
        if syn:
            t.start_seq[e] = first
            t.ack_seq[e] = first
            t.last_seq[e] = last_seq
    elif st == RESET:
        if syn and t.prev_state[e] == INACTIVE:
            t.start_seq[e] = first
            t.ack_seq[e] = first
            t.last_seq[e] = last_seq


@kernel
def _update_last_seq(c, t, e, last_seq, flags, length):
    delta = _seq_delta(last_seq, t.last_seq[e])
    if (flags & 0x06) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
        pass
    elif (flags & 0x01) and t.last_seq[e] == ((t.start_seq[e] + 1) & M32):
        if last_seq < t.last_seq[e]:
            t.seq_wraps[e] += 1
        t.last_seq[e] = last_seq
    elif t.state[e] == RESET:
        pass
    elif delta > 0:
        if last_seq < t.last_seq[e]:
            t.seq_wraps[e] += 1
        t.last_seq[e] = last_seq
    elif length > 0:
        _log_letter(c, t, e, L_RETRANSMIT)
    return delta


@kernel
def _state_machine(c, t, e, now, base_seq, length, is_orig, flags):
    """Zeek's UpdateStateMachine; returns (do_close, gen_event). `is_orig` is the role before any flip."""
    p = 1 - e
    syn = (flags & 0x02) != 0
    fin = (flags & 0x01) != 0
    rst = (flags & 0x04) != 0
    ack = (flags & 0x10) != 0
    do_close = False
    gen_event = False
    st = t.state[e]
    if st == INACTIVE:
        if syn:
            if is_orig:
                _set_state(c, t, e, SYN_ACK_SENT if ack else SYN_SENT)
                t.attempt_at = now + ATTEMPT_DELAY
            else:
                if not ack and t.state[p] == SYN_ACK_SENT and base_seq == t.start_seq[e]:
                    t.is_partial = 0  # a SYN/SYN-ACK reversal: flip and establish
                    _flip(c, t)
                    _set_state(c, t, p, ESTABLISHED)
                    t.first_seen |= 1
                if t.state[p] == SYN_SENT:
                    _set_state(c, t, p, ESTABLISHED)
                _set_state(c, t, e, ESTABLISHED)
        if fin:
            _set_state(c, t, e, CLOSED)
            do_close = True
            gen_event = True
        if rst:
            _set_state(c, t, e, RESET)
            is_reject = False
            if is_orig:
                if t.state[p] == ESTABLISHED:
                    is_reject = True
            elif t.state[p] == SYN_SENT or t.state[p] == SYN_ACK_SENT:
                is_reject = True
            do_close = True
            gen_event = not is_reject
        if t.state[e] == INACTIVE:
            if not is_orig and length == 0 and t.state[c.orig] == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif ack and t.state[p] == ESTABLISHED:
                _set_state(c, t, e, ESTABLISHED)
                t.is_partial = 0
                t.first_seen |= 1 if is_orig else 2
            else:
                _set_state(c, t, e, PARTIAL)
    elif st == SYN_SENT or st == SYN_ACK_SENT:
        if fin:
            _set_state(c, t, e, CLOSED)
            do_close = True
            gen_event = True
        if rst:
            _set_state(c, t, e, RESET)
            t.is_active = 0
            do_close = True
    elif st == ESTABLISHED or st == PARTIAL:
        if syn and st == PARTIAL and t.state[p] == INACTIVE and not ack:
            _set_state(c, t, e, SYN_SENT)
        if fin and not rst:
            _set_state(c, t, e, CLOSED)
            if t.state[p] == RESET and t.prev_state[p] == CLOSED:
                _set_state(c, t, p, CLOSED)  # FIN then RST from the peer: a normal close after all
            do_close = True
            gen_event = True
        if rst:
            prev_peer_ok = t.state[p] == RESET and t.prev_state[p] == ESTABLISHED
            _set_state(c, t, e, RESET)
            do_close = True
            if not prev_peer_ok:
                t.is_active = 0
    elif st == CLOSED:
        if rst and t.state[p] != CLOSED:
            _set_state(c, t, e, RESET)
            if not t.did_close[e]:
                do_close = True
    return do_close, gen_event


@kernel
def _tcp_packet(c, t, e, now, flags, seq, ack, win, length, whole_payload):
    """One TCP packet from endpoint e (Zeek's TCPSessionAdapter::Process)."""
    p = 1 - e
    syn = (flags & 0x02) != 0
    fin = (flags & 0x01) != 0
    rst = (flags & 0x04) != 0
    has_ack = (flags & 0x10) != 0
    is_orig = e == c.orig
    if is_orig:
        if not (t.first_seen & 1):
            t.is_partial = (not syn) or has_ack
    elif not (t.first_seen & 2) and not t.is_partial:
        t.is_partial = not syn
    seg_len = length + np.int64(syn) + np.int64(fin)
    if rst:
        seg_len -= length
    one_past = (seq + seg_len) & M32
    _init_endpoint(t, e, flags, seq, one_past)
    rel_seq, underflow = _relative(seq, t.last_seq[e], t.seq_wraps[e], t.start_seq[e])
    _update_history(c, t, e, flags, rel_seq, length)
    if win == 0 and not rst and t.state[p] != CLOSED and t.state[e] != RESET:
        _log_letter(c, t, e, L_ZERO_WINDOW)
    if not (t.did_close[0] and t.did_close[1]):
        c.last = now
    if fin:
        t.fin_cnt[e] += 1
        t.fin_seq[e] = rel_seq + seg_len
    rel_ack = np.int64(0)
    if has_ack:
        if t.state[p] == INACTIVE:
            rel_ack = 1
            a1 = (ack - 1) & M32
            t.start_seq[p] = a1
            t.ack_seq[p] = a1
            t.last_seq[p] = a1
        else:
            ra, under = _relative(ack, t.ack_seq[p], t.ack_wraps[p], t.start_seq[p])
            if not under:
                rel_ack = ra
                if not rst:
                    d = _seq_delta(ack, t.ack_seq[p])
                    if not (ack == 0 and d > TOO_LARGE_SEQ_DELTA) and d > 0:
                        if ack < t.ack_seq[p]:
                            t.ack_wraps[p] += 1
                        t.ack_seq[p] = ack
    _update_last_seq(c, t, e, one_past, flags, length)
    do_close, gen_event = _state_machine(c, t, e, now, seq, length, is_orig, flags)
    if has_ack:
        _ack_received(c, t, p, rel_ack)
    if length > 0 and not rst and not underflow and whole_payload:
        _data_sent(t, e, rel_seq + 1 if syn else rel_seq, length)
    _check_eof(c, t, e)
    if do_close:
        _connection_closed(c, t, e, gen_event)


# ---- Zeek's timers and port reuse, evaluated lazily when the next packet of a connection arrives -----------------
@inline
def _expire_removes(c, t, at):
    if c.last + CONNECTION_LINGER < at:
        if t.did_close[0] or t.did_close[1]:
            if (t.did_close[0] and t.did_close[1]) or t.state[0] == RESET or t.state[1] == RESET \
                    or t.state[0] == INACTIVE or t.state[1] == INACTIVE:
                return True
        if t.state[0] == INACTIVE and t.state[1] == INACTIVE:
            return True
    return False


@inline
def _inactivity(c, t):
    """Zeek's inactivity timeout of the connection now (ns)."""
    if c.kind == K_TCP:
        return TCP_INACTIVITY if c.tcp >= 0 and t.long_inact else UDP_INACTIVITY
    if c.kind == K_UDP:
        return UDP_INACTIVITY
    if c.kind == K_ICMP:
        return ICMP_INACTIVITY
    return OTHER_INACTIVITY


@kernel
def _timed_out(c, t, now):
    """Would Zeek have removed this connection before a packet at `now`? (its state is unchanged since its last
    packet, so each timer that fell due in between is judged on the current state)."""
    if now >= c.last + _inactivity(c, t):
        return True
    if c.dns_timer and now >= c.start + DNS_SESSION_TIMEOUT:
        at = c.start + (now - c.start) // DNS_SESSION_TIMEOUT * DNS_SESSION_TIMEOUT
        if at - c.last >= DNS_SESSION_TIMEOUT - SEC:
            return True
    if c.tcp < 0:
        return False
    if t.delete_at and now >= t.delete_at:
        return True
    if t.attempt_at and now >= t.attempt_at:
        o = c.orig
        if t.is_active and (t.state[o] == SYN_SENT or t.state[o] == SYN_ACK_SENT) and t.state[1 - o] == INACTIVE:
            return True
        t.attempt_at = 0
    for which in range(2):
        at = t.expire_a if which == 0 else t.expire_b
        if at == 0 or now < at:
            continue
        if not t.is_active:
            at = 0
        else:
            at += (now - at) // SESSION_TIMER * SESSION_TIMER  # the last check that fell due
            if _expire_removes(c, t, at):
                return True
            at += SESSION_TIMER
        if which == 0:
            t.expire_a = at
        else:
            t.expire_b = at
    return False


@kernel
def _is_reuse(c, t, flags, seq, hlen):
    """Zeek's IsReuse: a SYN that starts a new connection on the same 5-tuple."""
    if hlen < 20 or not (flags & 0x02):
        return False
    o = c.orig
    r = 1 - o
    conn_orig = o
    if flags & 0x10:
        if t.state[o] != INACTIVE:
            return False
        conn_orig = r
    if not (t.did_close[0] or t.did_close[1]):
        if seq == t.start_seq[conn_orig]:
            return False
        if not (flags & 0x10) and t.state[conn_orig] == SYN_ACK_SENT and t.state[r] == INACTIVE \
                and seq == t.start_seq[r]:
            return False
    return True


# ---- per-row dispatch -------------------------------------------------------------------------------------------------
@inline
def _icmp_counterpart(v6, typ, code):
    """Zeek's ICMP 'responder port': the reply type of a request/reply pair, else the code (one-way)."""
    if not v6:
        for a, b in ((8, 0), (13, 14), (15, 16), (10, 9), (17, 18)):
            if typ == a:
                return b, False
            if typ == b:
                return a, False
    else:
        for a, b in ((128, 129), (133, 134), (135, 136), (130, 131), (139, 140), (144, 145)):
            if typ == a:
                return b, False
            if typ == b:
                return a, False
    return code, True


@inline
def _row_kind(r):
    """(kind, source port, destination port, one_way) of a packet-table row, kind 0 when Zeek would not see it."""
    if r.ipv == 0 or (r.status & ST_IP_FRAGMENT) != 0:
        return 0, 0, 0, False
    proto = r.ip_proto
    if proto == 6:
        if r.l4_off < 0 or r.tcp_hlen < 20 or (r.status & ST_MALFORMED) != 0:
            return 0, 0, 0, False
        return K_TCP, np.int64(r.sport), np.int64(r.dport), False
    if proto == 17:
        if r.l4_off < 0:
            return 0, 0, 0, False
        return K_UDP, np.int64(r.sport), np.int64(r.dport), False
    if proto == 1 or proto == 58:
        if r.icmp_type < 0:
            return 0, 0, 0, False
        other, one_way = _icmp_counterpart(proto == 58, np.int64(r.icmp_type), np.int64(r.icmp_code))
        return K_ICMP, np.int64(r.icmp_type), other, one_way
    if proto == 59:
        return 0, 0, 0, False  # IPv6 "no next header" (a Teredo bubble): Zeek makes no connection of it
    return K_OTHER, 0, 0, False


@kernel
def _new_conn(cs, i, tx, n_tcp, r, kind, sp, dp, flip_ports):
    """Start connection i with the row that opens it; returns the TCP record count after it. (Rows are fresh, i.e.
    zero; the fields only CONN_DTYPE has are _zeek_one's.)"""
    c = cs[i]
    t = tx[0]  # (a TCP connection gets its own record below; others never touch it)
    c.kind = kind
    c.orig = 0
    c.port[0] = sp
    c.port[1] = dp
    c.start = r.ts
    c.last = r.ts
    c.pkts[0] = 0
    c.pkts[1] = 0
    c.ip_bytes[0] = 0
    c.ip_bytes[1] = 0
    c.size[0] = -1
    c.size[1] = -1
    c.missed = 0
    c.hist_len = 0
    c.hist_more = 0
    c.hist_seen = 0
    c.udp_chk[0] = 0
    c.udp_chk[1] = 0
    c.tcp = -1
    if kind == K_TCP:
        c.tcp = n_tcp
        t = tx[n_tcp]
        n_tcp += 1
        for e in range(2):
            t.state[e] = INACTIVE
            t.prev_state[e] = INACTIVE
            t.did_close[e] = 0
            t.did_eof[e] = 0
            t.skip[e] = 0
            t.nblk[e] = 0
            t.start_seq[e] = 0
            t.last_seq[e] = 0
            t.seq_wraps[e] = 0
            t.ack_seq[e] = 0
            t.ack_wraps[e] = 0
            t.last_syn[e] = 0
            t.last_fin[e] = 0
            t.last_rst[e] = 0
            t.fin_cnt[e] = 0
            t.fin_seq[e] = 0
            t.reassem[e] = 1
            t.trim[e] = 1
            t.max_upper[e] = 1
            for k in range(4):
                t.cnt[e, k] = 0
        t.is_partial = 0
        t.first_seen = 0
        t.is_active = 1
        t.close_deferred = 0
        t.deferred_gen = 0
        t.long_inact = 0
        t.attempt_at = 0
        t.delete_at = 0
        t.expire_a = r.ts + SYN_TIMEOUT
        t.expire_b = 0
        flags = r.tcp_flags
        flip = False
        if not (flags & 0x02) or (flags & 0x10):
            if flip_ports[0, sp]:
                if flip_ports[0, dp]:
                    flip = not (flags & 0x02) and sp < dp
                else:
                    flip = True
    elif kind == K_UDP:
        flip = flip_ports[1, sp] and not flip_ports[1, dp]
    else:
        flip = False
    if flip and not (r.ipv == 4 and (r.dst_lo & np.uint64(M32)) == np.uint64(M32)):  # never flip to a broadcast
        _flip(c, t)
    return n_tcp


@kernel
def _packet(c, t, e, r, kind, bad_checksum, whole_payload, udp_len):
    """Account one row to endpoint e of connection i."""
    if kind == K_TCP:
        if bad_checksum:
            _log_letter(c, t, e, L_CHECKSUM)
            return
        c.pkts[e] += 1
        c.ip_bytes[e] += r.ip_len
        _tcp_packet(c, t, e, r.ts, np.int64(r.tcp_flags), np.int64(r.tcp_seq), np.int64(r.tcp_ack),
                    np.int64(r.tcp_win), np.int64(r.payload_len), whole_payload)
    elif kind == K_UDP:
        c.pkts[e] += 1  # Zeek counts a UDP packet before checking its checksum
        c.ip_bytes[e] += r.ip_len
        if bad_checksum:
            c.udp_chk[e] += 1  # logarithmic letter, as for TCP
            if _power_of_ten(c.udp_chk[e]):
                _ep_add_hist(c, e, ord("C"))
            return
        c.last = r.ts
        if e == c.orig:
            _conn_check_hist(c, 0x10, ord("D"))
        else:
            _conn_check_hist(c, 0x10 << 16, ord("d"))
        ulen = udp_len - 8
        c.size[e] = ulen if c.size[e] < 0 else c.size[e] + ulen
    elif kind == K_ICMP:
        if bad_checksum:
            return
        c.pkts[e] += 1
        c.ip_bytes[e] += r.ip_len
        c.last = r.ts
        plen = np.int64(r.ip_len) - np.int64(r.ip_hl) - 8
        c.size[e] = plen if c.size[e] < 0 else c.size[e] + plen
    else:
        c.pkts[e] += 1
        c.ip_bytes[e] += r.ip_len
        c.last = r.ts


@inline
def _endpoint_of(c, r, sp):
    if c.h_hi[0] == c.h_hi[1] and c.h_lo[0] == c.h_lo[1] and c.port[0] == c.port[1]:
        return 0
    return 0 if (r.src_hi == c.h_hi[0] and r.src_lo == c.h_lo[0] and sp == c.port[0]) else 1


@kernel
def _swap_endpoints(c):
    """Renumber the endpoints of a connection that has seen no packet yet (its TCP record is still blank)."""
    c.port[0], c.port[1] = c.port[1], c.port[0]
    c.orig = 1 - c.orig


# ---- kernel over a chunk: per conversation ----------------------------------------------------------------------------
@kernel
def _conv_rows(table, start, bad, whole, udp_len, cs, tx, n_tcp, flip_ports):
    """Run the state machine of each row's conversation (rows start..). Returns (next row, n_tcp, status)."""
    for k in range(start, table.shape[0]):
        r = table[k]
        c = r.conv
        if c < 0 or (r.status & ST_ICMP_ERROR) != 0:
            continue  # an ICMP error quoting a flow is not a packet of it
        kind, sp, dp, one_way = _row_kind(r)
        if kind == 0:
            continue
        if cs[c].kind == 0:
            if kind == K_TCP and n_tcp >= tx.shape[0]:
                return k, n_tcp, GROW_TCP
            n_tcp = _new_conn(cs, c, tx, n_tcp, r, kind, sp, dp, flip_ports)
            # keep endpoint index == the flow table's direction: endpoint 0 is then the flow table's A (the row's
            # source when dir is 0, its destination when 1), which is why the row holds no addresses
            if r.dir == 1:
                _swap_endpoints(cs[c])
        if cs[c].kind != kind:
            continue
        e = r.dir
        _packet(cs[c], tx[max(cs[c].tcp, 0)], e, r, kind, bad[k], whole[k], udp_len[k])
    return table.shape[0], n_tcp, DONE


# ---- kernel over a chunk: Zeek's connections --------------------------------------------------------------------------
@kernel
def _zeek_one(r, bad, whole, udp_len, cs, n, tx, n_tcp, slots, keys, counters, ports, encap_id):
    """Assign one row to its Zeek connection and run the state machine; returns (n, n_tcp, connection or -1).
    Capacity is checked by the caller."""
    kind, sp, dp, one_way = _row_kind(r)
    if kind == 0:
        return n, n_tcp, -1
    # Zeek's key: the two (address, port) endpoints in canonical order, unless the ICMP type is one-way
    src_first = one_way or (r.src_hi < r.dst_hi) or (r.src_hi == r.dst_hi and (
        r.src_lo < r.dst_lo or (r.src_lo == r.dst_lo and sp <= dp)))
    if src_first:
        ahi, alo, bhi, blo, pa, pb = r.src_hi, r.src_lo, r.dst_hi, r.dst_lo, sp, dp
    else:
        ahi, alo, bhi, blo, pa, pb = r.dst_hi, r.dst_lo, r.src_hi, r.src_lo, dp, sp
    misc = (np.uint64(pa) << np.uint64(32)) | (np.uint64(pb) << np.uint64(16)) \
        | (np.uint64(r.ip_proto) << np.uint64(8)) | np.uint64(r.ipv) | (np.uint64(one_way) << np.uint64(7))
    mask = slots.shape[0] - 1
    s = np.int64(hash_key(ahi, alo, bhi, blo, misc) & np.uint64(mask))
    while slots[s] >= 0:
        if keys[s, 1] == alo and keys[s, 3] == blo and keys[s, 4] == misc and keys[s, 0] == ahi \
                and keys[s, 2] == bhi:
            break
        s = (s + 1) & mask
    c = slots[s]
    if c >= 0:
        t = tx[max(cs[c].tcp, 0)]
        if _timed_out(cs[c], t, r.ts) or (kind == K_TCP and _is_reuse(cs[c], t, np.int64(r.tcp_flags),
                                                                        np.int64(r.tcp_seq), r.tcp_hlen)):
            cs[c].removed = 1
            c = -1
        elif cs[c].encap_id != encap_id:  # Zeek's CheckEncapsulation: after 5 tunnel changes, letter X
            if cs[c].tunnel_changes >= MAX_TUNNEL_CHANGES:
                _conn_check_hist(cs[c], 0x400, ord("X"))
            else:
                cs[c].tunnel_changes += 1
            cs[c].encap_id = encap_id
    if c < 0:
        if slots[s] < 0:
            counters[0] += 1
            keys[s, 0], keys[s, 1], keys[s, 2], keys[s, 3], keys[s, 4] = ahi, alo, bhi, blo, misc
        c = n
        n += 1
        slots[s] = c
        n_tcp = _new_conn(cs, c, tx, n_tcp, r, kind, sp, dp, ports)
        cn = cs[c]
        cn.proto = r.ip_proto
        cn.ipv = r.ipv
        cn.dns_timer = kind == K_UDP and ports[2, cn.port[1 - cn.orig]]  # the responder's port, roles decided
        cn.h_hi[0] = r.src_hi
        cn.h_lo[0] = r.src_lo
        cn.h_hi[1] = r.dst_hi
        cn.h_lo[1] = r.dst_lo
        cn.conv = r.conv
        cn.first_frame = r.frame
        cn.encap_id = encap_id
        cn.tunnel_changes = 0
        cn.removed = 0
    cs[c].last_frame = r.frame
    e = _endpoint_of(cs[c], r, sp)
    _packet(cs[c], tx[max(cs[c].tcp, 0)], e, r, kind, bad, whole, udp_len)
    return n, n_tcp, c


@inline
def _be(buf, p, n):
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[p + k])
    return v


@kernel
def _outer(buf, r, s):
    """Parse the outermost IP header of a tunnelled row into scratch row s (and its UDP header for UDP tunnels:
    Zeek logs that outer flow as a connection of its own). Returns 0 (no tunnel), 1 (IP tunnel) or 2 (UDP)."""
    if r.outer_l3_off < 0:
        return 0
    p = r.data + r.outer_l3_off
    end = buf.shape[0] if (r.status & ST_REASSEMBLED) != 0 else r.data + r.caplen  # reassembled: after the frames
    if p + 1 > end:
        return 0
    v = buf[p] >> 4
    if v == 4:
        ihl = np.int64(buf[p] & 15) * 4
        if p + 20 > end:
            return 0
        proto = buf[p + 9]
        s.ipv = 4
        s.src_hi = 0
        s.src_lo = _be(buf, p + 12, 4)
        s.dst_hi = 0
        s.dst_lo = _be(buf, p + 16, 4)
        s.ip_len = np.int32(_be(buf, p + 2, 2))
        s.ip_hl = ihl
        u = p + ihl
    elif v == 6:
        if p + 40 > end:
            return 0
        proto = buf[p + 6]
        s.ipv = 6
        s.src_hi = _be(buf, p + 8, 8)
        s.src_lo = _be(buf, p + 16, 8)
        s.dst_hi = _be(buf, p + 24, 8)
        s.dst_lo = _be(buf, p + 32, 8)
        s.ip_len = np.int32(_be(buf, p + 4, 2) + np.uint64(40))
        s.ip_hl = 40
        u = p + 40
    else:
        return 0
    if proto != 17 or (r.encap & _UDP_TUNNELS) == 0 or u + 8 > end:
        return 1
    s.frame = r.frame
    s.ts = r.ts
    s.caplen = r.caplen
    s.data = r.data
    s.status = 0
    s.encap = 0
    s.outer_l3_off = -1
    s.ip_proto = 17
    s.l4_off = np.int32(u - r.data)
    s.sport = np.uint16(_be(buf, u, 2))
    s.dport = np.uint16(_be(buf, u + 2, 2))
    s.udp_len = np.uint16(_be(buf, u + 4, 2))
    s.payload_off = -1
    s.payload_len = 0
    s.conv = -1
    return 2


@kernel
def _zeek_rows(buf, table, start, bad, whole, udp_len, cs, n, tx, n_tcp, slots, keys, counters, ports, scratch):
    """Assign rows start.. to Zeek connections (outer tunnel flows first, as Zeek sees them) and run their state
    machines. Returns (row, n, n_tcp, status); on a GROW status the caller grows that array and calls again."""
    for k in range(start, table.shape[0]):
        if n + 2 > cs.shape[0]:
            return k, n, n_tcp, GROW_CONNS
        if n_tcp + 2 > tx.shape[0]:
            return k, n, n_tcp, GROW_TCP
        if (counters[0] + 2) * 2 > slots.shape[0]:
            return k, n, n_tcp, GROW_HASH
        r = table[k]
        encap_id = np.uint64(0)
        outer = _outer(buf, r, scratch[0])
        if outer == 2:  # a UDP tunnel is identified by its outer connection
            n, n_tcp, oc = _zeek_one(scratch[0], False, True, np.int64(scratch[0].udp_len), cs, n, tx, n_tcp,
                                     slots, keys, counters, ports, np.uint64(0))
            encap_id = np.uint64(oc + 1)
        elif outer == 1:  # an IP tunnel by its two addresses, either way round
            sc = scratch[0]
            encap_id = (mix64(sc.src_hi ^ mix64(sc.src_lo)) + mix64(sc.dst_hi ^ mix64(sc.dst_lo))) | np.uint64(1 << 63)
        n, n_tcp, c = _zeek_one(r, bad[k], whole[k], udp_len[k], cs, n, tx, n_tcp, slots, keys, counters, ports,
                                encap_id)
    return table.shape[0], n, n_tcp, DONE


@kernel
def _rehash(slots, keys, new_slots, new_keys):
    mask = new_slots.shape[0] - 1
    for s in range(slots.shape[0]):
        if slots[s] < 0:
            continue
        ahi, alo, bhi, blo, misc = keys[s, 0], keys[s, 1], keys[s, 2], keys[s, 3], keys[s, 4]
        t = np.int64(hash_key(ahi, alo, bhi, blo, misc) & np.uint64(mask))
        while new_slots[t] >= 0:
            t = (t + 1) & mask
        new_slots[t] = slots[s]
        new_keys[t] = keys[s]


@kernel
def _row_inputs(buf, table, whole, udp_len):
    """Per row: is the TCP payload fully captured (Zeek does not reassemble snaplen-cut payloads), and the UDP
    length field as Zeek reads it (from the header bytes, even where a trailer made the decoder call it short)."""
    for k in range(table.shape[0]):
        r = table[k]
        if r.payload_off < 0 or r.payload_len <= 0:
            whole[k] = True
        else:
            whole[k] = r.payload_off + r.payload_len <= r.caplen or (r.status & ST_REASSEMBLED) != 0
        udp_len[k] = r.udp_len
        if r.ip_proto == 17 and r.l4_off >= 0 and r.l4_off + 6 <= r.caplen:
            p = r.data + r.l4_off
            udp_len[k] = (np.int64(buf[p + 4]) << 8) | np.int64(buf[p + 5])


# ---- Python side ------------------------------------------------------------------------------------------------------
STATE_BLOCK = 16384  # conversations whose state texts are decided at a time
def _bad_rows(buf: np.ndarray, table: np.ndarray, verify: bool) -> np.ndarray:
    if not verify:
        return np.zeros(len(table), np.bool_)
    from diagnose.decode import CK_L4_BAD, verify_checksums

    return (verify_checksums(buf, table) & CK_L4_BAD) != 0


class _StateTable:
    def __init__(self, verify_checksums: bool, server_ports: np.ndarray | None, dtype: np.dtype):
        self.verify_checksums = verify_checksums
        self.server_ports = likely_server_ports() if server_ports is None else server_ports
        self.conns = reserved(dtype)  # rows reserved up front, mapped as written (diagnose.tablegrowth)
        self.tcp = reserved(TCP_DTYPE)
        self.n_tcp = 0

    def _row_inputs(self, buf: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        whole = np.empty(len(table), np.bool_)
        udp_len = np.empty(len(table), np.int64)
        _row_inputs(buf, table, whole, udp_len)
        return _bad_rows(buf, table, self.verify_checksums), whole, udp_len

    def _grow_tcp(self) -> None:
        self.tcp = grown(self.tcp, self.n_tcp + 1)

    def _tcp_row(self, i: int) -> np.void | None:
        return self.tcp[self.conns[i]["tcp"]] if self.conns[i]["tcp"] >= 0 else None


class ConnStates(_StateTable):
    """Zeek's conn_state and history for each conversation of the flow table (flow.state, flow.history)."""

    def __init__(self, verify_checksums: bool = False, server_ports: np.ndarray | None = None):
        super().__init__(verify_checksums, server_ports, CONV_CONN_DTYPE)

    def update(self, buf: np.ndarray, table: np.ndarray, n_convs: int) -> None:
        """Feed one chunk whose rows already carry `conv` (FlowTable.update ran); n_convs = FlowTable.count."""
        if n_convs > len(self.conns):
            self.conns = grown(self.conns, n_convs)
        bad, whole, udp_len = self._row_inputs(buf, table)
        start = 0
        while True:
            start, self.n_tcp, status = _conv_rows(table, start, bad, whole, udp_len, self.conns, self.tcp, self.n_tcp,
                                                   self.server_ports)
            if status == DONE:
                return
            self._grow_tcp()

    def record(self, conv: int) -> dict | None:
        """Zeek-named facts of one conversation, or None when Zeek would not track it (e.g. not IP). The addresses
        and frames are the flow table's (None here)."""
        if conv >= len(self.conns) or self.conns[conv]["kind"] == 0:
            return None
        return conn_record(self.conns[conv], self._tcp_row(conv), addresses=False, conv=conv)

    def state_text_columns(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """conn_state and history of conversations 0..n-1 as indices into one list of distinct strings (-1 where Zeek
        tracks nothing, or for an empty history). A table of many flows holds few distinct values: each is decided
        and decoded once, and nothing is built per flow (that would cost more than the whole packet pass)."""
        index: dict[str, int] = {}
        state_idx = np.full(n, -1, np.int64)  # conversations after the last chunk this table saw have no state
        hist_idx = np.full(n, -1, np.int64)
        for lo in range(0, min(n, len(self.conns)), STATE_BLOCK):  # a block at a time: little memory on top
            hi = min(lo + STATE_BLOCK, n, len(self.conns))
            state_idx[lo:hi], hist_idx[lo:hi] = self._state_texts(self.conns[lo:hi], index)
        return list(index), state_idx, hist_idx

    def _state_texts(self, conns: np.ndarray, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        m = len(conns)
        kind = conns["kind"].astype(np.int64)
        orig = conns["orig"].astype(np.int64)
        ostate = np.zeros(m, np.int64)
        rstate = np.zeros(m, np.int64)
        tcp_rows = np.nonzero(kind == K_TCP)[0]
        if len(tcp_rows):
            states = self.tcp["state"][conns["tcp"][tcp_rows]]  # the field alone: a TCP row is ~0.5 KB
            o = orig[tcp_rows]
            ostate[tcp_rows] = states[np.arange(len(tcp_rows)), o]
            rstate[tcp_rows] = states[np.arange(len(tcp_rows)), 1 - o]
        other = np.nonzero((kind == K_UDP) | (kind == K_ICMP))[0]
        ostate[other] = conns["size"][other, orig[other]] >= 0
        rstate[other] = conns["size"][other, 1 - orig[other]] >= 0
        empty = np.zeros(m, np.int64)  # both reset and nothing sent: the one case where conn_state looks at sizes
        for i in np.nonzero((kind == K_TCP) & (ostate == RESET) & (rstate == RESET))[0].tolist():
            t = self.tcp[conns["tcp"][i]]
            empty[i] = _py_size(t, int(orig[i])) == 0 and _py_size(t, 1 - int(orig[i])) == 0
        width = conns["hist"].shape[1]
        raw = np.ascontiguousarray(conns["hist"]).view(f"S{width}").ravel()  # NUL padding drops off
        hist_values, hist_inv = np.unique(raw, return_inverse=True)
        # one integer per (kind, states, empty, history): sorting plain integers is ~50x faster than rows
        packed = ((((kind << 3 | ostate) << 3 | rstate) << 1 | empty) << 32) | hist_inv.ravel()
        keys, key_inv = np.unique(packed, return_inverse=True)
        state_of_key = np.array([
            index.setdefault(conn_state(k >> 39, (k >> 36) & 7, (k >> 33) & 7, 1 - ((k >> 32) & 1),
                                        1 - ((k >> 32) & 1), hist_values[k & 0xFFFFFFFF].decode("ascii")),
                             len(index)) if k >> 39 else -1
            for k in keys.tolist()], np.int64)
        text_of_hist = np.array([index.setdefault(h.decode("ascii"), len(index)) if h else -1
                                 for h in hist_values.tolist()], np.int64)
        return state_of_key[key_inv.ravel()], np.where(kind != 0, text_of_hist[hist_inv.ravel()], -1)

    def release(self) -> None:
        """Drop the tables once the pass is over and their facts were taken (diagnose.conn.record.RecordTables):
        their pages go back to the system. The states can no longer be updated or read."""
        self.conns = self.tcp = None
        self.n_tcp = 0

    def originator_dir(self, conv: int) -> int | None:
        """The flow-table direction (0 = endpoint A) of Zeek's originator of this conversation."""
        if conv >= len(self.conns) or self.conns[conv]["kind"] == 0:
            return None
        return int(self.conns[conv]["orig"])


class ZeekConnections(_StateTable):
    """Zeek's connections as Zeek delimits them (its 5-tuple key, timers and port reuse): conn.log row by row."""

    def __init__(self, verify_checksums: bool = False, server_ports: np.ndarray | None = None):
        super().__init__(verify_checksums, server_ports, CONN_DTYPE)
        self.count = 0
        self._counters = np.zeros(1, np.int64)
        self._slots = np.full(256, -1, np.int64)
        self._keys = np.zeros((256, 5), np.uint64)
        self._scratch = np.zeros(1, PACKET_DTYPE)

    def update(self, buf: np.ndarray, table: np.ndarray) -> None:
        bad, whole, udp_len = self._row_inputs(buf, table)
        start = 0
        while True:
            start, self.count, self.n_tcp, status = _zeek_rows(
                buf, table, start, bad, whole, udp_len, self.conns, self.count, self.tcp, self.n_tcp, self._slots, self._keys,
                self._counters, self.server_ports, self._scratch)
            if status == DONE:
                return
            if status == GROW_CONNS:
                self.conns = grown(self.conns, self.count + 2)
            elif status == GROW_TCP:
                self.tcp = grown(self.tcp, self.n_tcp + 2)
            else:
                slots = np.full(len(self._slots) * 2, -1, np.int64)
                keys = np.zeros((len(slots), 5), np.uint64)
                _rehash(self._slots, self._keys, slots, keys)
                self._slots, self._keys = slots, keys

    def records(self) -> list[dict]:
        """One conn.log-like dict per connection, in the order the connections started."""
        return [self.record(i) for i in range(self.count)]

    def record(self, i: int) -> dict:
        return conn_record(self.conns[i], self._tcp_row(i))


# ---- records ----------------------------------------------------------------------------------------------------------
def conn_state(kind: int, orig_state: int, resp_state: int, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's conn_state from the two endpoint states (base/protocols/conn/main.zeek)."""
    if kind == K_TCP:
        o_inactive = orig_state in (INACTIVE, PARTIAL)
        r_inactive = resp_state in (INACTIVE, PARTIAL)
        if resp_state == RESET:
            if orig_state in (SYN_SENT, SYN_ACK_SENT) or (orig_state == RESET and orig_size == 0 and resp_size == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if orig_state == RESET:
            if r_inactive:
                return "RSTOS0" if _rstos0_history(history) else "OTH"
            return "RSTO"
        if orig_state == CLOSED and resp_state == CLOSED:
            return "SF"
        if orig_state == CLOSED:
            return "SH" if r_inactive else "S2"
        if resp_state == CLOSED:
            return "SHR" if o_inactive else "S3"
        if orig_state == SYN_SENT and resp_state == INACTIVE:
            return "S0"
        if orig_state == ESTABLISHED and resp_state == ESTABLISHED:
            return "S1"
        return "OTH"
    if kind == K_UDP:
        if orig_state:
            return "SF" if resp_state else "S0"
        return "SHR" if resp_state else "OTH"
    return "OTH"


def _rstos0_history(history: str) -> bool:
    """Zeek's /\\^?S[^HAFGIQ]*R.*/: an originator SYN, then its RST with no handshake progress in between."""
    h = history[1:] if history.startswith("^") else history
    if not h.startswith("S"):
        return False
    for ch in h[1:]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False


def conn_record(c, t, addresses: bool = True, conv: int | None = None) -> dict:
    """conn.log fields of one connection (a CONN_DTYPE row and its TCP_DTYPE row, as numpy records or dicts of
    Python values): Zeek's names, addresses formatted unless `addresses` is False. A CONV_CONN_DTYPE row (ConnStates)
    is conversation `conv`'s: its addresses, frames and IP protocol are the flow table's, None here."""
    from diagnose.addresses import format_address

    o = int(c["orig"])
    r = 1 - o
    kind = int(c["kind"])
    history = bytes(c["hist"][: c["hist_len"]]).decode("ascii")
    if kind == K_TCP:
        states = (int(t["state"][o]), int(t["state"][r]))
        sizes = (int(_py_size(t, o)), int(_py_size(t, r)))
    elif kind in (K_UDP, K_ICMP):
        states = (int(c["size"][o] >= 0), int(c["size"][r] >= 0))
        sizes = (max(int(c["size"][o]), 0), max(int(c["size"][r]), 0))
    else:
        states = (0, 0)
        sizes = (0, 0)
    duration_ns = int(c["last"] - c["start"])
    ipv = int(c["ipv"]) if conv is None else 0
    rec = {
        "ts": int(c["start"]) / 1e9,
        "proto": KIND_NAMES[kind],
        "orig_h": format_address(ipv, c["h_hi"][o], c["h_lo"][o]) if addresses else None,
        "orig_p": int(c["port"][o]),
        "resp_h": format_address(ipv, c["h_hi"][r], c["h_lo"][r]) if addresses else None,
        "resp_p": int(c["port"][r]),
        "ip_proto": int(c["proto"]) if conv is None else None,
        "duration": duration_ns / 1e9 if duration_ns > 0 else None,
        "orig_bytes": sizes[0] if duration_ns > 0 else None,
        "resp_bytes": sizes[1] if duration_ns > 0 else None,
        "conn_state": conn_state(kind, states[0], states[1], sizes[0], sizes[1], history),
        "missed_bytes": int(c["missed"]),
        "history": history or None,
        "orig_pkts": int(c["pkts"][o]),
        "orig_ip_bytes": int(c["ip_bytes"][o]),
        "resp_pkts": int(c["pkts"][r]),
        "resp_ip_bytes": int(c["ip_bytes"][r]),
        "first_frame": int(c["first_frame"]) if conv is None else None,
        "last_frame": int(c["last_frame"]) if conv is None else None,
        "conv": int(c["conv"]) if conv is None else conv,
    }
    if kind == K_TCP:
        rec["orig_state"] = STATE_NAMES[states[0]]
        rec["resp_state"] = STATE_NAMES[states[1]]
    if c["hist_more"]:
        rec["history_truncated"] = True
    return rec


def _py_size(t: np.void, e: int) -> int:
    """TCP_Endpoint::Size in Python (same arithmetic as the kernel helper)."""
    prev, state, peer = int(t["prev_state"][e]), int(t["state"][e]), int(t["state"][1 - e])
    start = int(t["start_seq"][e])
    ack64 = (int(t["ack_wraps"][e]) << 32) + int(t["ack_seq"][e])
    if prev == SYN_SENT and state == RESET and peer == INACTIVE and ack64 not in (start, start + 1):
        return 0
    last64 = (int(t["seq_wraps"][e]) << 32) + int(t["last_seq"][e])
    size = max(last64, ack64) - start
    if size != 0:
        size -= 1
    if int(t["fin_cnt"][e]) > 0 and size != 0:
        size -= 1
    return size % (1 << 64)
