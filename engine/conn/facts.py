"""Per-flow facts (`flow.*`): what a diagnosis asks of one conversation, accumulated chunk by chunk in one kernel.

A flow is a conversation of the flow table (Wireshark's tcp.stream / udp.stream). Facts are kept per direction
(`dir` 0 = endpoint A, the first sender; 1 = endpoint B) and named client/server only when a record is made
(diagnose.conn.record). State is a fixed-size record per conversation (plus one per TCP stream), so memory is
O(flows), never O(packets).

What is measured, and how:
* handshake: pure SYNs (count, first times), SYN-ACKs, the ACK that completes the handshake. Handshake RTT is
  Wireshark's initial RTT (most recent SYN -> the ACK of the SYN-ACK); the SYN -> SYN-ACK and SYN-ACK -> ACK parts
  are kept too (at a client-side capture point the first is the network round trip).
* options from each side's SYN / SYN-ACK: MSS, window scale (or its absence), SACK permitted, timestamps.
* windows: largest advertised window each way (scaled, from the TCP analysis); window-limited = the sender's bytes in
  flight reached the peer's advertised window (Wireshark's tcp.analysis.window_full on its data segments).
* retransmissions per direction (Wireshark's retransmission, fast and spurious flags), their rate over the data
  segments sent, and their burstiness (diagnose.conn.burst) on the segment clock and the time clock. A
  retransmission that repeats the previous data segment of its direction byte for byte in the IP ID, sequence,
  length and TCP timestamp within DUPLICATE_WINDOW_NS is a duplicated frame (SPAN/bridge copy), not a loss.
* zero-window episodes: from a packet advertising window 0 until the same side advertises a non-zero window (RSTs do
  not count: a RST carries window 0 by convention); count and total time per advertising side.
* idle gaps: the longest silence between two packets of the flow; before the first RST, the longer of the gap right
  before it and the gap before the packet that triggered it (a middlebox that forgot an idle flow answers the next
  packet at once, so the idle time sits one packet earlier).
* RST: sender, frame, phase (handshake / after a FIN / after an idle of at least `idle_rst_ns` / mid-transfer), the
  bytes each side had sent by then (from sequence numbers), and its TTL and IP ID against the genuine (non-RST)
  packets of the claimed sender: a different TTL means another hop count, i.e. a middlebox forged it.
* ICMP errors that quote the flow (the flow table gives them the quoted flow's conversation): count, type, code,
  sender, TTL, first frame.
* how the flow ended: FIN both ways, FIN one way, RST, or still open when the capture ends.
"""

from __future__ import annotations

import numpy as np

from diagnose.conn.burst import add_gap
from diagnose.jit import inline
from diagnose.jit import kernel
from diagnose.packet import OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WS, ST_ICMP_ERROR, ST_IP_FRAGMENT
from diagnose.tablegrowth import grown, reserved, state_dtype
from diagnose.tcp.analysis import (A_FAST_RETRANSMISSION, A_LOST_SEGMENT, A_RETRANSMISSION, A_SPURIOUS_RETRANSMISSION,
                                   A_WINDOW_FULL, ANALYSIS_DTYPE)

SYN_TIMES = 8  # SYN times kept per flow (the count goes on)
DUPLICATE_WINDOW_NS = 5_000_000  # a copy of a frame this soon after it is a capture artefact
IDLE_RST_NS = 1_000_000_000  # default: a RST after at least 1 s of silence is "after idle"
M32 = 0xFFFFFFFF
A_ANY_RETRANSMISSION = A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION

# RST phases
PHASE_NONE, PHASE_HANDSHAKE, PHASE_MID_TRANSFER, PHASE_AFTER_IDLE, PHASE_AFTER_FIN = 0, 1, 2, 3, 4
PHASE_NAMES = (None, "handshake", "mid_transfer", "after_idle", "after_fin")

# The pass holds a row per conversation (~74k on the 1M-packet benchmark), so it keeps only what most flows need:
# the ICMP errors about a flow (few flows have any) sit in a side table, and the time of the flow's last packet is
# prev_ts (the first packet's time is the flow table's first_ts: nothing here reads it).
FLOW_DTYPE = state_dtype(
    [
        ("pkts", np.int32),  # packets of the flow (ICMP errors about it excluded)
        ("icmp", np.int32),  # 1 + the flow's row in the ICMP error table, 0 = no ICMP error quoted the flow
        ("prev_ts", np.int64),  # the latest packet and the one before it: for the idle time before a RST
        ("prev2_ts", np.int64),
        ("idle_max", np.int64),  # longest gap between consecutive packets (ns)
        ("idle_max_frame", np.int64),  # the packet that ended it
    ]
)

# A row per flow that an ICMP error quoted, in the order of the flows' first errors.
ICMP_FACTS_DTYPE = state_dtype(
    [
        ("conv", np.int32),
        ("icmp_count", np.int32),
        ("icmp_type", np.int16),  # the first error's
        ("icmp_code", np.int16),
        ("icmp_ipv", np.uint8),
        ("icmp_ttl", np.uint8),
        ("icmp_dir", np.int8),  # direction of the quoted packet
        ("icmp_src_hi", np.uint64),
        ("icmp_src_lo", np.uint64),
        ("icmp_frame", np.int64),
        ("icmp_ts", np.int64),
        ("icmp_unreach", np.int32),  # destination-unreachable errors among them
    ]
)

# Packet and segment counts are int32 (2^31 packets in one flow is beyond any capture we read): a row per TCP
# stream, ~22k rows on the 1M-packet benchmark, where each int64 -> int32 saves ~0.1 MB.
TCP_FACTS_DTYPE = state_dtype(
    [
        ("conv", np.int32),
        ("opts_seen", np.uint8, (2,)),  # a SYN or SYN-ACK was seen from that side (its options are known)
        ("mss", np.int32, (2,)),  # 0 = not offered
        ("ws", np.int8, (2,)),  # shift count, -1 = not offered
        ("sack_perm", np.uint8, (2,)),
        ("ts_opt", np.uint8, (2,)),
        ("syn_count", np.int32, (2,)),
        ("syn_times", np.int64, (SYN_TIMES,)),  # the first is the first SYN's time
        ("syn_dir", np.int8),
        ("syn_last_ts", np.int64),
        ("synack_count", np.int32),
        ("synack_dir", np.int8),
        ("synack_ts", np.int64),
        ("synack_seq", np.int64),
        ("synack_syn_ts", np.int64),  # the SYN the SYN-ACK answered (most recent one)
        ("hs_done", np.uint8),
        ("hs_ack_ts", np.int64),
        ("base_set", np.uint8, (2,)),
        ("base", np.int64, (2,)),  # initial sequence number (SYN) or first seq - 1
        ("max_end", np.int64, (2,)),  # highest relative sequence reached (SYN and FIN count one)
        ("ttl_min", np.uint8, (2,)),  # genuine (non-RST) packets of each side
        ("ttl_max", np.uint8, (2,)),
        ("genuine", np.int32, (2,)),
        ("ipid_nonzero", np.int32, (2,)),
        ("fin", np.uint8, (2,)),
        ("rst_count", np.int32, (2,)),
        ("rst_dir", np.int8),
        ("rst_frame", np.int64),
        ("rst_ts", np.int64),
        ("rst_ttl", np.uint8),
        ("rst_ipv", np.uint8),
        ("rst_ipid", np.int64),
        ("rst_idle", np.int64),
        ("rst_phase", np.int8),
        ("rst_bytes", np.int64, (2,)),
        ("rst_ttl_min", np.uint8),  # the claimed sender's genuine packets before the RST
        ("rst_ttl_max", np.uint8),
        ("rst_genuine", np.int32),
        ("rst_ipid_nonzero", np.int32),
        ("zw_open", np.int64, (2,)),  # start of the current zero-window episode, 0 = none
        ("zw_count", np.int32, (2,)),
        ("zw_time", np.int64, (2,)),
        ("zw_frame", np.int64, (2,)),
        ("data_pkts", np.int32, (2,)),
        ("retrans", np.int32, (2,)),
        ("dup_retrans", np.int32, (2,)),
        ("lost", np.int32, (2,)),
        ("window_full", np.int32, (2,)),
        ("max_bif", np.int64, (2,)),
        ("max_win", np.int64, (2,)),
        ("oversize", np.int32, (2,)),
        ("retrans_last_ts", np.int64, (2,)),
        ("retrans_last_seg", np.int32, (2,)),
        ("burst", np.float64, (4, 3)),  # [dir * 2 + clock] running gap statistics; clock 0 segments, 1 seconds
        ("ld_set", np.uint8, (2,)),  # the previous data segment of each direction
        ("ld_seq", np.uint32, (2,)),  # 32-bit packet fields held as such: a row per TCP stream
        ("ld_len", np.int32, (2,)),
        ("ld_ipid", np.uint32, (2,)),
        ("ld_tsval", np.uint32, (2,)),
        ("ld_ts", np.int64, (2,)),
    ]
)


@inline
def _seq_delta(a, b):
    d = (a - b) & M32
    if d >= 0x80000000:
        d -= 0x100000000
    return d


@inline
def _icmp_error(f, r, c, icmp, n_icmp):
    """Count an ICMP error quoting flow c; its first error takes the next row of the ICMP table (the caller made
    room). Returns the rows used."""
    if f.icmp == 0:
        n_icmp += 1
        f.icmp = n_icmp
        e = icmp[n_icmp - 1]
        e.conv = c
        e.icmp_type = r.icmp_type
        e.icmp_code = r.icmp_code
        e.icmp_ipv = r.ipv
        e.icmp_ttl = r.ip_ttl
        e.icmp_dir = r.dir
        e.icmp_src_hi = r.src_hi
        e.icmp_src_lo = r.src_lo
        e.icmp_frame = r.frame
        e.icmp_ts = r.ts
    e = icmp[f.icmp - 1]
    e.icmp_count += 1
    if (r.ipv == 4 and r.icmp_type == 3) or (r.ipv == 6 and r.icmp_type == 1):
        e.icmp_unreach += 1
    return n_icmp


@kernel
def _tcp_row(f, t, r, a, have_analysis, idle_rst_ns):
    d = r.dir
    p = 1 - d
    flags = np.int64(r.tcp_flags)
    syn = (flags & 0x02) != 0
    ack = (flags & 0x10) != 0
    rst = (flags & 0x04) != 0
    fin = (flags & 0x01) != 0
    ts = r.ts
    seq = np.int64(r.tcp_seq)
    length = np.int64(r.payload_len)
    if syn:  # each side's options, from its SYN or SYN-ACK
        t.opts_seen[d] = 1
        t.mss[d] = r.opt_mss if (r.tcp_opts & OPT_MSS) else 0
        t.ws[d] = r.opt_ws if (r.tcp_opts & OPT_WS) else -1
        t.sack_perm[d] = (r.tcp_opts & OPT_SACK_PERM) != 0
        t.ts_opt[d] = (r.tcp_opts & OPT_TS) != 0
        if not ack and not rst:
            n = t.syn_count[0] + t.syn_count[1]
            if n < SYN_TIMES:
                t.syn_times[n] = ts
            if n == 0:
                t.syn_dir = d
            t.syn_count[d] += 1
            t.syn_last_ts = ts
        elif ack:
            if t.synack_count == 0:
                t.synack_ts = ts
                t.synack_dir = d
                t.synack_seq = seq
                t.synack_syn_ts = t.syn_last_ts
            t.synack_count += 1
    elif ack and not rst and t.synack_count > 0 and not t.hs_done and d != t.synack_dir \
            and np.int64(r.tcp_ack) == ((t.synack_seq + 1) & M32):
        t.hs_done = 1
        t.hs_ack_ts = ts
    # sequence space per direction: bytes sent so far
    if not t.base_set[d]:
        t.base_set[d] = 1
        t.base[d] = seq if syn else (seq - 1) & M32
    if not rst:
        seg_end = (seq + length + np.int64(syn) + np.int64(fin)) & M32
        delta = _seq_delta(seg_end, (t.base[d] + t.max_end[d]) & M32)
        if delta > 0:
            t.max_end[d] += delta
    if rst:
        if t.rst_count[0] + t.rst_count[1] == 0:
            t.rst_dir = d
            t.rst_frame = r.frame
            t.rst_ts = ts
            t.rst_ttl = r.ip_ttl
            t.rst_ipv = r.ipv
            t.rst_ipid = r.ip_id
            idle = ts - f.prev_ts if f.pkts > 0 else 0
            if f.pkts > 1 and f.prev_ts - f.prev2_ts > idle:
                idle = f.prev_ts - f.prev2_ts
            t.rst_idle = idle
            t.rst_ttl_min = t.ttl_min[d]
            t.rst_ttl_max = t.ttl_max[d]
            t.rst_genuine = t.genuine[d]
            t.rst_ipid_nonzero = t.ipid_nonzero[d]
            for k in range(2):
                t.rst_bytes[k] = t.max_end[k] - 1 - (1 if t.fin[k] else 0)  # the SYN (or the base) and FIN
                if t.rst_bytes[k] < 0:
                    t.rst_bytes[k] = 0
            if not t.hs_done:
                t.rst_phase = PHASE_HANDSHAKE if t.syn_count[0] + t.syn_count[1] + t.synack_count > 0 \
                    else (PHASE_AFTER_IDLE if idle >= idle_rst_ns else PHASE_MID_TRANSFER)
            elif t.fin[0] or t.fin[1]:
                t.rst_phase = PHASE_AFTER_FIN
            elif idle >= idle_rst_ns:
                t.rst_phase = PHASE_AFTER_IDLE
            else:
                t.rst_phase = PHASE_MID_TRANSFER
        t.rst_count[d] += 1
    else:  # the TTL and IP ID of the side's genuine packets
        if t.genuine[d] == 0 or r.ip_ttl < t.ttl_min[d]:
            t.ttl_min[d] = r.ip_ttl
        if t.genuine[d] == 0 or r.ip_ttl > t.ttl_max[d]:
            t.ttl_max[d] = r.ip_ttl
        t.genuine[d] += 1
        if r.ip_id != 0:
            t.ipid_nonzero[d] += 1
    if fin and not t.fin[d]:
        t.fin[d] = 1
    if not rst and not syn:  # zero-window episodes of the advertising side
        if r.tcp_win == 0:
            if t.zw_open[d] == 0:
                t.zw_open[d] = ts
                t.zw_count[d] += 1
                if t.zw_frame[d] == 0:
                    t.zw_frame[d] = r.frame
        elif t.zw_open[d] != 0:
            t.zw_time[d] += ts - t.zw_open[d]
            t.zw_open[d] = 0
    if length > 0:
        t.data_pkts[d] += 1
        if t.mss[p] > 0 and length > t.mss[p]:
            t.oversize[d] += 1  # longer than the peer's MSS: segmentation offload at the capture host
    if have_analysis:
        af = np.int64(a.flags)
        if np.int64(a.window) > t.max_win[d]:
            t.max_win[d] = a.window
        if af & A_WINDOW_FULL:
            t.window_full[d] += 1
        if length > 0 and np.int64(a.bytes_in_flight) > t.max_bif[d]:
            t.max_bif[d] = a.bytes_in_flight
        if af & A_LOST_SEGMENT:
            t.lost[d] += 1
        if af & A_ANY_RETRANSMISSION:
            if t.retrans[d] != 0:  # the gap since the previous retransmission
                add_gap(t.burst, d * 2, np.float64(t.data_pkts[d] - t.retrans_last_seg[d]))
                add_gap(t.burst, d * 2 + 1, (ts - t.retrans_last_ts[d]) / 1e9)
            t.retrans[d] += 1
            t.retrans_last_ts[d] = ts
            t.retrans_last_seg[d] = t.data_pkts[d]
            if t.ld_set[d] and t.ld_seq[d] == seq and t.ld_len[d] == length and t.ld_ipid[d] == r.ip_id \
                    and t.ld_tsval[d] == r.opt_ts_val and ts - t.ld_ts[d] <= DUPLICATE_WINDOW_NS:
                t.dup_retrans[d] += 1
    if length > 0:
        t.ld_set[d] = 1
        t.ld_seq[d] = seq
        t.ld_len[d] = length
        t.ld_ipid[d] = r.ip_id
        t.ld_tsval[d] = r.opt_ts_val
        t.ld_ts[d] = ts


@kernel
def _facts(table, start, analysis, have_analysis, flows, tcp, icmp, n_icmp, idle_rst_ns):
    """Rows start.. of a chunk; returns (next row, ICMP rows used). Stops before an ICMP error that would need a row
    the full ICMP table lacks: the caller grows it and calls again from that row."""
    for k in range(start, table.shape[0]):
        r = table[k]
        c = r.conv
        if c < 0:
            continue
        f = flows[c]
        if (r.status & ST_ICMP_ERROR) != 0:
            if f.icmp == 0 and n_icmp >= icmp.shape[0]:
                return k, n_icmp
            n_icmp = _icmp_error(f, r, c, icmp, n_icmp)
            continue
        if (r.status & ST_IP_FRAGMENT) != 0:
            continue
        if r.ip_proto == 6 and r.l4_off >= 0 and r.tcp_hlen >= 20 and r.stream >= 0:
            t = tcp[r.stream]
            t.conv = c
            _tcp_row(f, t, r, analysis[k] if have_analysis else analysis[0], have_analysis, idle_rst_ns)
        if f.pkts != 0:
            gap = r.ts - f.prev_ts
            if gap > f.idle_max:
                f.idle_max = gap
                f.idle_max_frame = r.frame
        f.prev2_ts = f.prev_ts
        f.prev_ts = r.ts
        f.pkts += 1
    return table.shape[0], n_icmp


class FlowFacts:
    """Accumulates the per-flow facts of one capture, chunk by chunk (after FlowTable.update and, for the facts
    that need Wireshark's analysis flags, TcpAnalyzer.update on the same chunk)."""

    def __init__(self, idle_rst_seconds: float = IDLE_RST_NS / 1e9):
        self.idle_rst_ns = int(idle_rst_seconds * 1e9)
        self.flows = reserved(FLOW_DTYPE)  # rows reserved up front, mapped as written (diagnose.tablegrowth)
        self.tcp = reserved(TCP_FACTS_DTYPE)
        self.n_tcp = 0  # streams met so far: their rows hold conv = -1 until a packet fills them in
        self.icmp = np.zeros(64, ICMP_FACTS_DTYPE)  # grown as flows get their first ICMP error
        self.n_icmp = 0
        self.have_analysis = False
        self._no_analysis = np.zeros(1, ANALYSIS_DTYPE)

    def update(self, table: np.ndarray, n_convs: int, n_tcp_streams: int, analysis: np.ndarray | None = None) -> None:
        """n_convs / n_tcp_streams: FlowTable.count and FlowTable.tcp_streams after this chunk."""
        if n_convs > len(self.flows):
            self.flows = grown(self.flows, n_convs)
        if n_tcp_streams > len(self.tcp):
            self.tcp = grown(self.tcp, n_tcp_streams)
        if n_tcp_streams > self.n_tcp:
            # only the new streams' rows: marking spare capacity would make all of its pages resident
            self.tcp["conv"][self.n_tcp : n_tcp_streams] = -1
            self.n_tcp = n_tcp_streams
        if analysis is not None:
            self.have_analysis = True
        start = 0
        while True:
            start, self.n_icmp = _facts(table, start, self._no_analysis if analysis is None else analysis,
                                        analysis is not None, self.flows, self.tcp, self.icmp, self.n_icmp,
                                        self.idle_rst_ns)
            if start == len(table):
                return
            self.icmp = grown(self.icmp, self.n_icmp + 1)

    def release(self) -> None:
        """Drop the tables once the pass is over and their facts were taken (diagnose.conn.record.RecordTables):
        their pages go back to the system. The facts can no longer be updated or read."""
        self.flows = self.tcp = self.icmp = None
        self.n_tcp = self.n_icmp = 0

    def icmp_errors(self) -> np.ndarray:
        """ICMP_FACTS_DTYPE rows of the flows ICMP errors quoted so far (a view: copy it to keep it)."""
        return self.icmp[: self.n_icmp]

    def tcp_facts(self, stream: int) -> np.void | None:
        if stream < 0 or stream >= self.n_tcp or self.tcp[stream]["conv"] < 0:
            return None
        return self.tcp[stream]
