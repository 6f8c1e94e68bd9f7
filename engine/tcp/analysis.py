"""Per-packet TCP analysis with Wireshark's semantics: tcp.analysis.* flags, ACK RTT, bytes in flight, relative
sequence numbers, scaled windows, per-stream times and conversation completeness.

    analyzer = TcpAnalyzer(run.flows)        # run = diagnose.pipeline.open_pass(path)
    for chunk in run.chunks():
        rows = analyzer.update(chunk.table, chunk.buf)    # ANALYSIS_DTYPE, aligned with chunk.table

What is reproduced is tshark 4.0 with default preferences: one pass in file order (each packet judged only on the
packets before it), relative sequence numbers, sequence analysis on, bytes in flight tracked from the unacknowledged
segments, timestamps per stream, fast retransmission taking precedence over out-of-order, window scaling "unknown"
(-1) until a SYN tells. The conditions, their order and their side effects (what state a flagged packet still
updates) follow Wireshark's TCP dissector as documented in anchors.md §2.1; the differences that remain are listed
in docs/tcp-analysis-differences.md.

State lives per TCP conversation (indexed by tcp.stream) and per direction in numpy arrays that grow as
conversations appear, plus a pool of unacknowledged segments (unacked.py), so memory is O(flows + segments in
flight), never O(packets). One kernel walks the rows in order.

Display-filter note: Wireshark's `tcp.analysis.retransmission` also matches fast and spurious retransmissions (they
carry that expert item too); `matches(rows, "tcp.analysis.retransmission")` applies that rule, the raw A_* bits
do not.
"""

from __future__ import annotations

import numpy as np

from diagnose.decode.transport import tcp_option_at
from diagnose.decode.wire import be32
from diagnose.jit import kernel
from diagnose.packet import (OPT_SACK, OPT_WS, ST_ICMP_ERROR, ST_REASSEMBLED, ST_TRUNCATED, TH_ACK, TH_FIN, TH_PSH,
                             TH_RST, TH_SYN)
from diagnose.tablegrowth import grown, reserved, state_dtype, zeroed

from .seqspace import MASK32, seq_gt, seq_le, seq_lt, wrap
from .unacked import MAX_UNACKED, SegmentPool, acknowledge, append, span

# ---- analysis flags (per packet, `flags` column): Wireshark's TCP_A_* conditions ----------------------------------
A_RETRANSMISSION = 1 << 0
A_FAST_RETRANSMISSION = 1 << 1
A_SPURIOUS_RETRANSMISSION = 1 << 2
A_DUPLICATE_ACK = 1 << 3
A_LOST_SEGMENT = 1 << 4
A_ACK_LOST_SEGMENT = 1 << 5
A_OUT_OF_ORDER = 1 << 6
A_ZERO_WINDOW = 1 << 7
A_ZERO_WINDOW_PROBE = 1 << 8
A_ZERO_WINDOW_PROBE_ACK = 1 << 9
A_WINDOW_FULL = 1 << 10
A_WINDOW_UPDATE = 1 << 11
A_KEEP_ALIVE = 1 << 12
A_KEEP_ALIVE_ACK = 1 << 13
A_REUSED_PORTS = 1 << 14

# ---- presence bits (`present` column): which values tshark shows for the row ---------------------------------------
P_SEQ = 1 << 0  # tcp.seq
P_TCP = 1 << 1  # the packet is in a TCP conversation: tcp.stream, tcp.completeness
P_HEADER = 1 << 2  # a sane data offset (>= 20): tcp.ack, tcp.window_size
P_LEN = 1 << 3  # tcp.len (the segment length is known: not an ICMP quote, not shorter than its header)
P_NXTSEQ = 1 << 4  # tcp.nxtseq; with P_LEN, seq and ack are relative (else raw)
P_ERROR = 1 << 5  # the TCP header is the one quoted by an ICMP error
P_ANALYSIS = 1 << 6  # tcp.analysis is shown (Wireshark made an analysis record for the packet)
P_ACKS_FRAME = 1 << 7
P_ACK_RTT = 1 << 8
P_INITIAL_RTT = 1 << 9
P_BYTES_IN_FLIGHT = 1 << 10  # also tcp.analysis.push_bytes_sent
P_DUPACK = 1 << 11  # duplicate_ack_num and duplicate_ack_frame
P_RTO = 1 << 12  # tcp.analysis.rto and rto_frame (retransmissions)
P_SCALE = 1 << 13  # tcp.window_size_scalefactor (not on SYNs)
P_TIMES = 1 << 14  # tcp.time_delta, tcp.time_relative (Wireshark shows them once 20 header bytes were read)

# ---- tcp.completeness bits ---------------------------------------------------------------------------------------
C_SYN, C_SYNACK, C_ACK, C_DATA, C_FIN, C_RST = 1, 2, 4, 8, 16, 32

# window scale states besides a shift count 0..14 (Wireshark's encoding)
WS_UNKNOWN = -1  # no SYN seen yet: the window is shown unscaled
WS_NONE = -2  # the handshake showed window scaling is not used

ANALYSIS_DTYPE = np.dtype(
    [
        ("flags", np.uint32),  # A_* bits
        ("present", np.uint16),  # P_* bits
        ("seq", np.uint32),  # tcp.seq (relative when P_LEN)
        ("ack", np.uint32),  # tcp.ack (relative when P_LEN and the ACK flag is set)
        ("nxtseq", np.uint32),  # tcp.nxtseq
        ("len", np.int32),  # tcp.len
        ("window", np.uint32),  # tcp.window_size (scaled)
        ("win_scale", np.int8),  # shift used for tcp.window_size: 0..14, WS_UNKNOWN, WS_NONE
        ("completeness", np.uint8),  # tcp.completeness as shown on this packet (the conversation's so far)
        ("time_delta", np.int64),  # ns since the previous packet of the stream (tcp.time_delta)
        ("time_relative", np.int64),  # ns since the first packet of the stream (tcp.time_relative)
        ("acks_frame", np.int64),  # tcp.analysis.acks_frame
        ("ack_rtt", np.int64),  # ns (tcp.analysis.ack_rtt)
        ("initial_rtt", np.int64),  # ns (tcp.analysis.initial_rtt)
        ("bytes_in_flight", np.uint32),
        ("push_bytes_sent", np.uint32),
        ("dupack_num", np.uint32),  # tcp.analysis.duplicate_ack_num
        ("dupack_frame", np.int64),  # tcp.analysis.duplicate_ack_frame
        ("rto", np.int64),  # ns (tcp.analysis.rto)
        ("rto_frame", np.int64),
    ],
    align=True,
)

# per TCP conversation (index: tcp.stream)
CONV_STATE_DTYPE = state_dtype(
    [
        ("seen", np.uint8),
        ("completeness", np.uint8),  # tcp.completeness of the conversation so far (final after the last packet)
        ("ts_first", np.int64),
        ("ts_prev", np.int64),
        ("ts_syn", np.int64),  # time of the most recent pure SYN, 0 = none
        ("initial_rtt", np.int64),  # ns, 0 = not known yet
    ]
)

# per TCP conversation and direction (index 0 = sent by endpoint A, 1 = by B, as the flow table's `dir`)
DIRECTION_STATE_DTYPE = state_dtype(
    [
        ("base_seq", np.int64),
        ("base_set", np.uint8),
        ("win_scale", np.int8),  # shift count, WS_UNKNOWN or WS_NONE
        ("is_first_ack", np.uint8),  # a SYN was sent and no pure ACK yet: window not scaled for Window Full
        ("valid_bif", np.uint8),  # bytes in flight trustworthy (no gap since the peer last ACKed)
        ("push_set_last", np.uint8),
        ("n_sack", np.uint8),  # SACK blocks in this direction's latest packet (at most 3 are kept)
        ("window", np.int64),  # last raw window field, 0xFFFFFFFF before any
        ("nextseq", np.int64),  # highest sequence number after a segment, 0 = none yet
        ("nextseq_frame", np.int64),
        ("nextseq_ts", np.int64),
        ("maxseqtobeacked", np.int64),
        ("lastack", np.int64),
        ("lastack_ts", np.int64),
        ("lastnondupack", np.int64),
        ("dupacknum", np.int64),  # -1 marks "ACKed unseen segment reported"; an unsigned 32-bit number in Wireshark
        ("lastsegflags", np.int64),  # A_* flags of the latest packet in this direction
        ("push_bytes", np.int64),
        ("sack_bytes", np.int64),  # bytes covered by those SACK blocks
        ("seg_head", np.int64),  # oldest unacknowledged segment (unacked.py), -1 none
        ("seg_tail", np.int64),  # newest
        ("seg_count", np.int64),
        ("seg_sorted", np.uint8),  # the list is in increasing sequence order
        ("span_valid", np.uint8),  # span_first/span_last hold the list's span (offsets from base_seq)
        ("span_first", np.int64),
        ("span_last", np.int64),
    ]
)

_NS_20MS = 20_000_000
_NS_3MS = 3_000_000
_TCP = 6

# kernel status
_DONE, _GROW_POOL, _GROW_STREAMS = 0, 1, 2


@kernel
def _init_direction(f):
    f.base_seq = 0
    f.base_set = 0
    f.win_scale = WS_UNKNOWN
    f.is_first_ack = 0
    f.valid_bif = 1
    f.push_set_last = 0
    f.n_sack = 0
    f.window = MASK32
    f.nextseq = 0
    f.nextseq_frame = 0
    f.nextseq_ts = 0
    f.maxseqtobeacked = 0
    f.lastack = 0
    f.lastack_ts = 0
    f.lastnondupack = 0
    f.dupacknum = 0
    f.lastsegflags = 0
    f.push_bytes = 0
    f.sack_bytes = 0
    f.seg_head = -1
    f.seg_tail = -1
    f.seg_count = 0
    f.seg_sorted = 1
    f.span_valid = 0
    f.span_first = 0
    f.span_last = 0


@kernel
def _under(elapsed, limit):
    """elapsed < limit compared as unsigned 64-bit numbers, as Wireshark does (a negative elapsed never is)."""
    return np.uint64(elapsed) < np.uint64(limit)


@kernel
def _quoted_tcp(buf, r):
    """(offset in buf, captured bytes) of the TCP header quoted by ICMP error row r; offset -1 when not found."""
    if buf.shape[0] == 0 or r.l4_off < 0:
        return -1, 0
    end = r.data + r.caplen
    q = r.data + r.l4_off + 8
    if q >= end:
        return -1, 0
    version = buf[q] >> 4
    if version == 4:
        if q + 20 > end:
            return -1, 0
        t = q + np.int64(buf[q] & 0x0F) * 4
    elif version == 6:
        if q + 40 > end or buf[q + 6] != _TCP:
            return -1, 0
        t = q + 40
    else:
        return -1, 0
    return t, end - t


@kernel
def _be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@kernel
def _quoted_wscale(buf, t, hlen, end):
    """Window-scale shift in a quoted header's options, -1 when absent or not captured."""
    q = t + 20
    while True:
        kind, olen = tcp_option_at(buf, q, t + hlen, end)
        if kind < 0:
            break
        if kind == 3 and olen == 3:
            return np.int64(buf[q + 2])
        q += olen
    return -1


@kernel
def _verify_window_scaling(fw, rv, is_synack):
    """After a SYN or SYN-ACK: scaling is off unless both sides offered it (Wireshark's rule)."""
    if fw.win_scale == WS_UNKNOWN:
        fw.win_scale = WS_NONE
        rv.win_scale = WS_NONE
    elif is_synack and rv.win_scale == WS_NONE:
        fw.win_scale = WS_NONE


@kernel
def _analyze(table, buf, out, reused, convs, dirs, entries, free_head, counters, start):
    """Analyse rows start.. of the packet table into out; returns (next row, status).

    State is indexed by tcp.stream (dense over TCP conversations). Returns early, before touching the row, with
    _GROW_POOL when no free segment entry is left and with _GROW_STREAMS when the state arrays are too short."""
    n = table.shape[0]
    for i in range(start, n):
        r = table[i]
        c = r.conv
        st = r.stream
        if c < 0 or st < 0:
            continue
        is_error = (r.status & ST_ICMP_ERROR) != 0
        if is_error:
            if r.q_proto != _TCP:
                continue
            t, avail = _quoted_tcp(buf, r)
            if t < 0 or avail < 16:
                # Wireshark stops before the conversation lookup; from an IPv4 quote it still shows tcp.seq
                if t >= 0 and avail >= 8 and (buf[r.data + r.l4_off + 8] >> 4) == 4:
                    out[i].present = P_SEQ | P_ERROR
                    out[i].seq = r.q_tcp_seq
                continue
            seq = np.int64(r.q_tcp_seq)
            ack = be32(buf, t + 8)
            hlen = (_be16(buf, t + 12) >> 12) * 4
            flags = _be16(buf, t + 12) & 0x0FFF
            win = _be16(buf, t + 14)
            wscale = _quoted_wscale(buf, t, hlen, r.data + r.caplen)
            n_sack = 0
            reported = avail
        else:
            if r.ip_proto != _TCP or r.l4_off < 0:
                continue
            if r.tcp_hlen == 0 and (r.status & ST_TRUNCATED) != 0:
                continue  # header not captured: Wireshark gives up before the conversation lookup
            if free_head[0] < 0:
                return i, _GROW_POOL
            seq = np.int64(r.tcp_seq)
            ack = np.int64(r.tcp_ack)
            hlen = np.int64(r.tcp_hlen)
            flags = np.int64(r.tcp_flags)
            win = np.int64(r.tcp_win)
            wscale = np.int64(r.opt_ws) if (r.tcp_opts & OPT_WS) != 0 else -1
            n_sack = np.int64(r.sack_count) if (r.tcp_opts & OPT_SACK) != 0 else 0
            # TCP bytes as Wireshark counts them: by IP length, but never past the end of the frame on the wire
            reported = np.int64(r.l4_len)
            if (r.status & ST_REASSEMBLED) == 0 and r.l4_off + reported > r.wirelen:
                reported = max(np.int64(r.wirelen) - r.l4_off, 0)
        if st >= convs.shape[0]:
            return i, _GROW_STREAMS
        frame = r.frame
        ts = r.ts
        d = np.int64(r.dir)
        cs = convs[st]
        fw = dirs[st, d]
        rv = dirs[st, 1 - d]
        o = out[i]

        syn = (flags & TH_SYN) != 0
        has_ack = (flags & TH_ACK) != 0
        pure_syn = syn and not has_ack
        synack = syn and has_ack
        pure_ack = has_ack and not syn
        syn_or_fin = (flags & (TH_SYN | TH_FIN)) != 0
        no_sfr = (flags & (TH_SYN | TH_FIN | TH_RST)) == 0

        ta = False  # Wireshark made an analysis record for this packet (then tcp.analysis is shown)
        taf = np.int64(0)  # its flags

        # ---- conversation lookup: new, port reuse, retransmitted SYN ------------------------------------------
        is_new = False
        if cs.seen == 0:
            cs.seen = 1
            cs.completeness = 0
            cs.ts_first = ts
            cs.ts_prev = ts
            cs.ts_syn = 0
            cs.initial_rtt = 0
            _init_direction(dirs[st, 0])
            _init_direction(dirs[st, 1])
            if c < reused.shape[0] and reused[c] != 0 and pure_syn:
                # a SYN with a new ISN on known ports: Wireshark's new conversation starts at completeness 1
                ta = True
                taf |= A_REUSED_PORTS
                cs.completeness = C_SYN
            else:
                is_new = True
        elif pure_syn and fw.base_set != 0:
            if seq != fw.base_seq:
                counters[1] += 1  # Wireshark would have split the conversation here; the flow table did not
            else:
                fw.nextseq = fw.maxseqtobeacked  # a retransmitted SYN: forget what a RST may have advanced
                ta = True
        if synack and fw.base_set != 0 and seq != fw.base_seq:
            fw.base_seq = seq
            fw.span_valid = 0  # offsets from the base changed
            ta = True
            taf |= A_REUSED_PORTS

        o.present = P_TCP | P_SEQ
        o.completeness = cs.completeness
        fw.n_sack = 0
        fw.sack_bytes = 0

        # ---- per-stream times ---------------------------------------------------------------------------------
        o.time_delta = ts - cs.ts_prev
        cs.ts_prev = ts
        o.time_relative = ts - cs.ts_first

        out_seq = seq
        out_ack = ack
        out_win = win
        seglen = np.int64(0)
        have_seglen = (not is_error) and reported >= hlen
        if is_error:
            o.present |= P_ERROR
        if have_seglen:
            o.present |= P_LEN
            seglen = reported - hlen
            if fw.base_set == 0:
                fw.base_seq = seq if syn else wrap(seq - 1)
                fw.base_set = 1
            if rv.base_set == 0 and has_ack:
                rv.base_seq = wrap(ack - 1)
                rv.base_set = 1

            # ---- sequence analysis (single pass) ---------------------------------------------------------------
            if has_ack:
                rv.valid_bif = 1
            skip_ack_checks = False
            if seglen == 1 and seq == fw.nextseq and rv.window == 0:
                ta = True
                taf |= A_ZERO_WINDOW_PROBE
                skip_ack_checks = True
            if not skip_ack_checks:
                if win == 0 and no_sfr:
                    ta = True
                    taf |= A_ZERO_WINDOW
                if fw.nextseq != 0 and seq_gt(seq, fw.nextseq) and (flags & TH_RST) == 0:
                    ta = True
                    taf |= A_LOST_SEGMENT
                    fw.valid_bif = 0  # until the peer ACKs again
                if seglen <= 1 and seq == wrap(fw.nextseq - 1) and no_sfr:
                    ta = True
                    taf |= A_KEEP_ALIVE
                if seglen == 0 and win != 0 and win != fw.window and seq == fw.nextseq and ack == fw.lastack \
                        and no_sfr:
                    ta = True
                    taf |= A_WINDOW_UPDATE
                if seglen > 0 and rv.win_scale != WS_UNKNOWN and no_sfr:
                    shift = 0
                    if rv.is_first_ack == 0 and rv.win_scale != WS_NONE:
                        shift = np.int64(rv.win_scale)
                    if wrap(seq + seglen) == wrap(rv.lastack + wrap(rv.window << shift)):
                        ta = True
                        taf |= A_WINDOW_FULL
                same_ack = seglen == 0 and seq == fw.nextseq and ack == fw.lastack and no_sfr and win == fw.window
                if same_ack and win != 0 and (rv.lastsegflags & A_KEEP_ALIVE) != 0:
                    ta = True
                    taf |= A_KEEP_ALIVE_ACK
                elif same_ack and win == 0 and (rv.lastsegflags & A_ZERO_WINDOW_PROBE) != 0:
                    ta = True
                    taf |= A_ZERO_WINDOW_PROBE_ACK
                elif same_ack and win != 0:
                    fw.dupacknum = 1 if fw.dupacknum == -1 else fw.dupacknum + 1
                    ta = True
                    taf |= A_DUPLICATE_ACK
                    o.dupack_num = fw.dupacknum
                    o.dupack_frame = fw.lastnondupack
            if ack != fw.lastack:
                fw.lastnondupack = frame
                fw.dupacknum = 0

            # ACKed unseen segment: this ACK covers data the other direction never showed
            if rv.maxseqtobeacked != 0 and seq_gt(ack, rv.maxseqtobeacked) and has_ack:
                ta = True
                if seq_lt(rv.maxseqtobeacked, rv.nextseq):
                    rv.maxseqtobeacked = rv.nextseq
                    taf |= A_ACK_LOST_SEGMENT
                else:
                    if rv.dupacknum == 0:
                        taf |= A_ACK_LOST_SEGMENT
                    rv.dupacknum = -1  # report one lost segment once, even over a run of pure ACKs
                    # (Wireshark's counter is unsigned, so this -1 also passes the ">= 2 dup ACKs" test below)

            # retransmission family: the segment does not advance the sequence number
            if (seglen > 0 or syn_or_fin) and (taf & A_KEEP_ALIVE) == 0:
                not_advanced = fw.nextseq != 0 and seq_lt(seq, fw.nextseq)
                if seglen > 1 and wrap(fw.nextseq - 1) == seq:
                    not_advanced = False  # new data after a zero-window probe byte
                if seglen > 0 and rv.lastack != 0 and seq_le(wrap(seq + seglen), rv.lastack):
                    ta = True
                    taf |= A_SPURIOUS_RETRANSMISSION
                elif not_advanced and wrap(rv.dupacknum) >= 2 and rv.lastack == seq \
                        and _under(ts - rv.lastack_ts, _NS_20MS):
                    ta = True
                    taf |= A_FAST_RETRANSMISSION
                else:
                    threshold = cs.initial_rtt if cs.initial_rtt != 0 else _NS_3MS
                    expected = wrap(seq + seglen + (1 if syn_or_fin else 0))
                    if not_advanced and _under(ts - fw.nextseq_ts, threshold) and fw.nextseq != expected:
                        ta = True
                        taf |= A_OUT_OF_ORDER
                    elif not_advanced:
                        ta = True
                        taf |= A_RETRANSMISSION
                        # RTO: from the oldest segment still unacknowledged, else from the highest one sent
                        if fw.seg_head >= 0:
                            o.rto = ts - entries[fw.seg_head].ts
                            o.rto_frame = entries[fw.seg_head].frame
                        else:
                            o.rto = ts - fw.nextseq_ts
                            o.rto_frame = fw.nextseq_frame

            nextseq = wrap(seq + seglen)
            if (seglen > 0 or syn_or_fin) and fw.seg_count < MAX_UNACKED:
                if syn_or_fin:
                    nextseq = wrap(nextseq + 1)
                append(entries, free_head, fw, seq, nextseq, frame, ts, fw.base_seq)
            is_probe = (taf & A_ZERO_WINDOW_PROBE) != 0
            if (seq_gt(nextseq, fw.nextseq) or fw.nextseq == 0) and not is_probe:
                fw.nextseq = nextseq
                fw.nextseq_frame = frame
                fw.nextseq_ts = ts
            if (seq == fw.maxseqtobeacked or fw.maxseqtobeacked == 0) and not is_probe:
                fw.maxseqtobeacked = fw.nextseq
            fw.window = win
            fw.lastack = ack
            fw.lastack_ts = ts
            fw.lastsegflags = taf

            # drop what this ACK covers from the other direction's list; an exact match gives the ACK RTT
            matched, acked_frame, acked_ts = acknowledge(entries, free_head, rv, ack, rv.base_seq)
            if matched:
                ta = True
                o.acks_frame = acked_frame
                o.ack_rtt = ts - acked_ts

            # bytes in flight: span of this direction's unacknowledged segments, less what the peer SACKed
            if seglen != 0 and fw.seg_head >= 0 and fw.valid_bif != 0:
                first, last = span(entries, fw, fw.base_seq)
                in_flight = wrap(last - first)
                if rv.n_sack > 0:
                    in_flight = wrap(in_flight - rv.sack_bytes)
                if 0 < in_flight < 2000000000:
                    ta = True
                    o.bytes_in_flight = in_flight - 1 if syn_or_fin else in_flight
                psh = (flags & TH_PSH) != 0
                if psh and fw.push_set_last == 0:
                    fw.push_bytes = wrap(fw.push_bytes + seglen)
                    fw.push_set_last = 1
                elif psh:
                    fw.push_bytes = seglen
                elif fw.push_set_last != 0:
                    fw.push_bytes = seglen
                    fw.push_set_last = 0
                else:
                    fw.push_bytes = wrap(fw.push_bytes + seglen)
                ta = True
                o.push_bytes_sent = fw.push_bytes

            # relative numbers, scaled window, next sequence number
            out_seq = wrap(seq - fw.base_seq)
            if has_ack:
                out_ack = wrap(ack - rv.base_seq)
            if not syn and fw.win_scale >= 0:
                out_win = wrap(win << np.int64(fw.win_scale))
            o.len = seglen
            o.nxtseq = wrap(out_seq + seglen + (1 if syn_or_fin else 0))
        o.seq = out_seq
        o.ack = out_ack
        o.window = out_win
        o.win_scale = fw.win_scale

        if hlen < 20:
            continue  # bogus header length: Wireshark stops here, before completeness and the analysis tree
        o.present |= P_HEADER
        if have_seglen:
            o.present |= P_NXTSEQ
        if not syn:
            o.present |= P_SCALE

        # ---- conversation completeness ------------------------------------------------------------------------
        if is_new:
            cc = 0
            if pure_syn:
                cc = C_SYN
                if have_seglen and seglen > 0:
                    cc |= C_DATA  # TCP Fast Open
        else:
            cc = cs.completeness
            if synack:
                cc |= C_SYNACK
            if pure_ack:
                cc |= C_DATA if (have_seglen and seglen > 0) else C_ACK
            if (flags & (TH_FIN | TH_ACK)) == (TH_FIN | TH_ACK):
                cc |= C_FIN
            if (flags & TH_RST) != 0:
                cc |= C_RST
        cs.completeness = cc

        if syn:
            if not has_ack:
                cs.ts_syn = ts
            fw.is_first_ack = 1
        if pure_ack and cs.ts_syn != 0 and cs.initial_rtt == 0:
            cs.initial_rtt = ts - cs.ts_syn
        if pure_ack:
            fw.is_first_ack = 0
        if reported < 20:
            continue  # Wireshark's next reads (checksum, urgent pointer) fail: nothing after this happens
        o.present |= P_TIMES
        if reported < hlen:
            continue  # and its option walk runs off the segment

        # ---- options are read after the analysis: they count for the next packets ----------------------------
        if wscale >= 0:
            fw.win_scale = min(wscale, 14)
        if n_sack > 0:
            kept = min(n_sack, 3)
            total = np.int64(0)
            for b in range(kept):
                total += wrap(np.int64(r.sack_right[b]) - np.int64(r.sack_left[b]))
            fw.n_sack = kept
            fw.sack_bytes = wrap(total)

        # ---- what tshark shows for the analysis ---------------------------------------------------------------
        if ta and have_seglen:
            o.flags = taf
            o.present |= P_ANALYSIS
            if o.acks_frame != 0:
                o.present |= P_ACKS_FRAME
                if o.ack_rtt != 0:
                    o.present |= P_ACK_RTT
            if cs.initial_rtt != 0:
                o.initial_rtt = cs.initial_rtt
                o.present |= P_INITIAL_RTT
            if o.bytes_in_flight != 0:
                o.present |= P_BYTES_IN_FLIGHT
            if (taf & A_DUPLICATE_ACK) != 0 and o.dupack_num != 0:
                o.present |= P_DUPACK
            if (taf & A_RETRANSMISSION) != 0 and o.rto != 0:
                o.present |= P_RTO
        else:
            o.flags = 0

        if syn:
            _verify_window_scaling(fw, rv, has_ack)
    return n, _DONE


class TcpAnalyzer:
    """Wireshark-style TCP analysis over the packet-table chunks of one capture, in order.

    `flows` is the pass's FlowTable (diagnose.pipeline.Pass.flows): it tells which conversations were started by
    a SYN that reused the ports of an earlier one (tcp.analysis.reused_ports). Without it that flag is never set.
    """

    def __init__(self, flows=None, initial_streams: int | None = None, initial_segments: int = 4096):
        self._flows = flows
        # per-stream rows reserved up front, mapped as written (diagnose.tablegrowth); both tables have one length
        if initial_streams is None:
            self._dirs = reserved(DIRECTION_STATE_DTYPE, (2,))
        else:
            self._dirs = zeroed(initial_streams, DIRECTION_STATE_DTYPE, (2,))
        self._convs = zeroed(len(self._dirs), CONV_STATE_DTYPE)
        self._pool = SegmentPool(initial_segments)
        self._counters = np.zeros(2, np.int64)  # [unused, SYNs the flow table kept in a conversation Wireshark split]
        self._empty_buf = np.zeros(0, np.uint8)
        self._no_reuse = np.zeros(0, np.uint8)

    def _grow_streams(self) -> None:
        self._convs = grown(self._convs, 2 * len(self._convs))
        self._dirs = grown(self._dirs, 2 * len(self._dirs))

    def update(self, table: np.ndarray, buf: np.ndarray | None = None) -> np.ndarray:
        """Analyse one chunk (after decode and flows); returns its ANALYSIS_DTYPE rows, aligned by index.

        `buf` is the chunk's byte buffer; it is only read for the TCP headers quoted by ICMP errors (which
        Wireshark also counts in their stream's times and completeness)."""
        out = np.zeros(len(table), ANALYSIS_DTYPE)
        reused = self._flows.conversations["reused"] if self._flows is not None else self._no_reuse
        buf = self._empty_buf if buf is None else buf
        start = 0
        while start < len(table):
            start, status = _analyze(table, buf, out, reused, self._convs, self._dirs, self._pool.entries,
                                     self._pool.free_head, self._counters, start)
            if status == _GROW_POOL:
                self._pool.grow()
            elif status == _GROW_STREAMS:
                self._grow_streams()
        return out

    def release(self) -> None:
        """Drop the pass-only state (per-direction sequence state, the segment pool) once the capture is read: only
        the per-stream state (completeness, stream_state) stays. The analyzer can no longer be updated."""
        self._dirs = None
        self._pool = None

    @property
    def completeness(self) -> np.ndarray:
        """tcp.completeness per tcp.stream (its final value once the capture is read); index with a conversation's
        `stream` (FlowTable.conversations) to get it per conversation."""
        return self._convs["completeness"]

    def conversation_completeness(self, conversations: np.ndarray) -> np.ndarray:
        """tcp.completeness of each conversation (rows of FlowTable.conversations, in their order); 0 for
        conversations that are not TCP or have no analysed packet."""
        out = np.zeros(len(conversations), np.uint8)
        stream = conversations["stream"].astype(np.int64)
        tcp = (conversations["proto"] == _TCP) & (stream >= 0) & (stream < len(self._convs))
        out[tcp] = self._convs["completeness"][stream[tcp]]
        return out

    @property
    def stream_state(self) -> np.ndarray:
        """CONV_STATE_DTYPE per tcp.stream (a view): completeness, first time, initial RTT (ns); `seen` = 0 beyond
        the streams met so far."""
        return self._convs

    @property
    def unsplit_port_reuses(self) -> int:
        """SYNs with a new ISN that Wireshark would have put in a new conversation but the flow table did not."""
        return int(self._counters[1])


# Display-filter names of the flags. Wireshark's retransmission filter also matches fast and spurious ones.
FLAG_FILTERS = {
    "tcp.analysis.retransmission": A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION,
    "tcp.analysis.fast_retransmission": A_FAST_RETRANSMISSION,
    "tcp.analysis.spurious_retransmission": A_SPURIOUS_RETRANSMISSION,
    "tcp.analysis.duplicate_ack": A_DUPLICATE_ACK,
    "tcp.analysis.lost_segment": A_LOST_SEGMENT,
    "tcp.analysis.ack_lost_segment": A_ACK_LOST_SEGMENT,
    "tcp.analysis.out_of_order": A_OUT_OF_ORDER,
    "tcp.analysis.zero_window": A_ZERO_WINDOW,
    "tcp.analysis.zero_window_probe": A_ZERO_WINDOW_PROBE,
    "tcp.analysis.zero_window_probe_ack": A_ZERO_WINDOW_PROBE_ACK,
    "tcp.analysis.window_full": A_WINDOW_FULL,
    "tcp.analysis.window_update": A_WINDOW_UPDATE,
    "tcp.analysis.keep_alive": A_KEEP_ALIVE,
    "tcp.analysis.keep_alive_ack": A_KEEP_ALIVE_ACK,
    "tcp.analysis.reused_ports": A_REUSED_PORTS,
}


def matches(rows: np.ndarray, flag_filter: str) -> np.ndarray:
    """Boolean mask of the rows a `tcp.analysis.<flag>` display filter selects."""
    return (rows["flags"] & FLAG_FILTERS[flag_filter]) != 0
