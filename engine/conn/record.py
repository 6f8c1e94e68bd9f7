"""One JSON-ready record per flow: Zeek's conn.log names where Zeek has the fact, ours next to them.

    records, warnings = collect_flow_records(path)           # one streaming pass: decode, flows, TCP analysis, facts
    cols = analysis.columns(lo, hi)                          # the same facts of flows lo..hi-1, one array per key

Roles: the client is Zeek's originator of the conversation (the SYN sender, else decided by Zeek's heuristics), so
`orig_h`/`orig_p` and `client` agree; per-direction facts are named `*_client` / `*_server`. Times are seconds
(floats), frames are 1-based frame numbers, absent facts are None (e.g. no SYN seen: no MSS, no handshake RTT).

Every field is defined once, in FlowAnalysis.columns: a kernel (_fill_columns) computes the numbers of a block of
flows in one pass over them, numpy the texts (each distinct state, history and address once). The dict records
are read off the columns a block at a time, and `diagnose flows --json` writes the columns without making the
dicts at all (diagnose.report.jsonkernel). TCP records carry more keys than the others (FIELDS marks them), in the same order.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import InitVar, dataclass, field
from decimal import Decimal

import numpy as np

from diagnose.addresses import format_address
from diagnose.conn.facts import FLOW_DTYPE, ICMP_FACTS_DTYPE, PHASE_NAMES, SYN_TIMES, TCP_FACTS_DTYPE, FlowFacts
from diagnose.conn.zeek import (CONV_CONN_DTYPE, HISTORY_MAX, K_ICMP, K_TCP, K_UDP, KIND_NAMES, RESET, SYN_SENT,
                                INACTIVE, ConnStates, conn_state)
from diagnose.flows import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, FlowTable
from diagnose.conn import burst
from diagnose.jit import inline, kernel
from diagnose.tablegrowth import state_dtype

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}

# ---- value kinds of a column (how its numbers become the record's value) ---------------------------------------------
INT = 0  # int64
UINT = 1  # uint64 (Zeek's byte counts are unsigned)
BOOL = 2  # bool
NS = 3  # int64 nanoseconds; the record holds seconds, ns / 1e9 (a float)
FLOAT = 4  # float64
STR = 5  # int32 index into FlowColumns.strings
ADDR = 6  # int32 index into FlowColumns.addresses (ipv, hi, lo rows); the record holds the formatted address
ENDPOINT = 7  # like ADDR, plus FlowColumns.ports[name] (-1 = none): "host:port", "[v6]:port" or "host"
MICROS = 8  # int64 (n, SYN_TIMES) microseconds and FlowColumns.lengths[name]: a list of seconds

_SIDES = ("client", "server")


def _both(name: str, kind: int) -> list[tuple[str, int, bool]]:
    return [(f"{name}_{side}", kind, True) for side in _SIDES]


# (key, kind, only in TCP records), in record order
FIELDS: tuple[tuple[str, int, bool], ...] = tuple([
    ("stream", INT, False), ("proto", STR, False), ("ip_proto", INT, False), ("ts", NS, False),
    ("orig_h", ADDR, False), ("orig_p", INT, False), ("resp_h", ADDR, False), ("resp_p", INT, False),
    ("conn_state", STR, False), ("history", STR, False), ("duration", NS, False), ("orig_bytes", UINT, False),
    ("resp_bytes", UINT, False), ("missed_bytes", INT, False), ("orig_pkts", INT, False),
    ("orig_ip_bytes", INT, False), ("resp_pkts", INT, False), ("resp_ip_bytes", INT, False),
    ("client", ENDPOINT, False), ("server", ENDPOINT, False), ("first_frame", INT, False),
    ("last_frame", INT, False), ("flow_duration", NS, False), ("packets", INT, False),
    ("orig_wire_bytes", INT, False), ("resp_wire_bytes", INT, False), ("reused_ports", BOOL, False),
    ("idle_max", NS, False), ("idle_max_frame", INT, False),
    ("icmp_errors", INT, False), ("icmp_unreachable", BOOL, False), ("icmp_error_type", INT, False),
    ("icmp_error_code", INT, False), ("icmp_error_from", ADDR, False), ("icmp_error_ttl", INT, False),
    ("icmp_error_frame", INT, False), ("icmp_error_time", NS, False), ("icmp_error_quotes", STR, False),
    ("syn_count", INT, True), ("syn_times", MICROS, True), ("synack_seen", BOOL, True),
    ("synack_count", INT, True), ("rst_seen", BOOL, True), ("handshake", STR, True), ("synack_rtt", NS, True),
    ("handshake_rtt", NS, True), ("handshake_ack_rtt", NS, True),
    *_both("mss", INT), *_both("wscale", INT), *_both("sack", BOOL), *_both("timestamps", BOOL),
    ("wscale_negotiated", BOOL, True), ("sack_negotiated", BOOL, True), ("timestamps_negotiated", BOOL, True),
    *_both("data_packets", INT), *_both("oversize_segments", INT), *_both("zero_window_episodes", INT),
    *_both("zero_window_time", NS), *_both("zero_window_open_at_end", BOOL),
    *_both("zero_window_first_frame", INT), *_both("fin", BOOL),
    *_both("max_window", INT), *_both("max_bytes_in_flight", INT), *_both("window_full", INT),
    *_both("window_limited", BOOL), *_both("retransmissions", INT), *_both("duplicate_retransmissions", INT),
    *_both("lost_segments", INT), *_both("retransmission_rate", FLOAT), *_both("retransmission_burstiness", FLOAT),
    *_both("retransmission_time_burstiness", FLOAT), *_both("retransmission_pattern", STR),
    ("retransmissions_artefact", BOOL, True), ("offload_suspected", BOOL, True),
    ("rst_count", INT, True), ("rst_sender", STR, True), ("rst_frame", INT, True), ("rst_time", NS, True),
    ("rst_phase", STR, True), ("rst_idle_before", NS, True), ("rst_bytes_client", INT, True),
    ("rst_bytes_server", INT, True), ("rst_ttl", INT, True), ("rst_hops", INT, True), ("rst_ip_id", INT, True),
    ("rst_sender_ttl_min", INT, True), ("rst_sender_ttl_max", INT, True), ("rst_sender_packets", INT, True),
    ("rst_ttl_mismatch", BOOL, True), ("rst_ip_id_zero", BOOL, True), ("rst_forged", BOOL, True),
    ("end", STR, False), ("completeness", INT, True),
])
KINDS = {name: kind for name, kind, _ in FIELDS}

# keys whose records are never None: FlowColumns.null has no mask for them
_NEVER_NULL = {"proto", "ip_proto", "ts", "orig_h", "resp_h", "client", "server", "first_frame", "last_frame",
               "flow_duration", "packets", "orig_wire_bytes", "resp_wire_bytes", "reused_ports", "icmp_errors",
               "icmp_unreachable", "syn_count", "syn_times", "synack_seen", "synack_count", "rst_seen", "handshake",
               "offload_suspected", "rst_count",
               *[f"{name}_{side}" for side in _SIDES for name in ("data_packets", "oversize_segments",
                                                                  "zero_window_episodes", "zero_window_time",
                                                                  "zero_window_open_at_end", "fin")]}
_NULLABLE = {name for name, _, _ in FIELDS if name not in _NEVER_NULL}

# strings every block may use, first in FlowColumns.strings (their indices are fixed)
_NAMES = ("client", "server", "tcp", "udp", "icmp", "unknown_transport", "completed", "not_seen", "refused",
          "aborted", "icmp_error", "no_answer", "synack_not_acked", "few", "bursty", "uniform", "rst_client",
          "rst_server", "fin_both", "fin_client", "fin_server", "open", *[p for p in PHASE_NAMES if p])
_NAME_INDEX = {name: i for i, name in enumerate(_NAMES)}
_PROTO_INDEX = np.full(256, _NAME_INDEX["unknown_transport"], np.int32)
for _proto, _name in PROTO_NAMES.items():
    _PROTO_INDEX[_proto] = _NAME_INDEX[_name]
_PHASE_INDEX = np.array([_NAME_INDEX.get(p, -1) if p else -1 for p in PHASE_NAMES], np.int32)
_NO_COMPLETENESS = np.zeros(0, np.uint8)


@dataclass
class FlowColumns:
    """The records of flows lo..hi-1 as columns: values[key] (one entry per flow, kinds in FIELDS), null[key] (True
    where the record holds None; keys that are never None have no mask), tcp (the record carries the TCP-only keys;
    their columns hold zeros elsewhere)."""

    lo: int
    values: Mapping[str, np.ndarray]  # made when read (_Columns), or a dict
    null: Mapping[str, np.ndarray]
    tcp: np.ndarray
    strings: list[str]  # STR columns index into this
    addresses: np.ndarray  # uint64 (k, 3): ipv, hi, lo; ADDR/ENDPOINT columns index into it
    ports: dict[str, np.ndarray]  # ENDPOINT columns: the port, -1 for none
    lengths: dict[str, np.ndarray]  # MICROS columns: entries used per flow
    # the [flow, field] int64 matrix and None masks the numeric columns are views of (None once rows are taken)
    matrix: np.ndarray | None = None
    null_matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tcp)

    def address_strings(self) -> list[str]:
        return [_address(int(v), h, lw) for v, h, lw in self.addresses.tolist()]


def _address(ipv: int, hi: int, lo: int) -> str:
    if ipv == 4:  # the common case, without the ipaddress module's object per call
        lo &= 0xFFFFFFFF
        return f"{lo >> 24}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return format_address(ipv, hi, lo)


def _endpoint(host: str, port: int) -> str:
    if port < 0:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _padded(arr: np.ndarray, lo: int, hi: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Rows lo..hi-1 of arr, zero rows past its end; and which rows exist."""
    if hi <= len(arr):
        return arr[lo:hi], np.ones(hi - lo, bool)  # the usual case: a view, nothing copied
    out = np.zeros(hi - lo, dtype)
    have = min(max(len(arr) - lo, 0), hi - lo)
    out[:have] = arr[lo : lo + have]
    present = np.zeros(hi - lo, bool)
    present[:have] = True
    return out, present


def _syn_micros(delta: np.ndarray) -> np.ndarray:
    """round(delta / 1e9, 6) in microseconds, for (flow, SYN) ns deltas: the nearest microsecond, except at an exact half
    (and for huge deltas), where Python's rounding of the float seconds decides."""
    micros = np.zeros_like(delta)
    rows = np.flatnonzero(delta.any(axis=1))  # most flows have no SYN after the first: zero deltas, zero micros
    some = delta[rows]
    part = (some + 500) // 1000
    odd = (some % 1000 == 500) | (np.abs(some) >= 10**15)
    for k in zip(*np.nonzero(odd)):
        seconds = round(int(some[k]) / 1e9, 6)
        part[k] = int(Decimal(repr(seconds)) * 10**6)
    micros[rows] = part
    return micros


def _distinct_addresses(ipv: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of (ipv, hi, lo) keys, index of each key's row), keys given as three uint64 columns: IPv6
    rows need all three columns, the others fit one integer (sorting one integer column is far faster than sorting
    rows, and only IPv6 keys are stacked into rows)."""
    v6 = ipv == 6
    inverse = np.empty(len(ipv), np.int64)
    if v6.any():
        narrow = np.flatnonzero(~v6)
        packed = (ipv[narrow] << np.uint64(32)) | (lo[narrow] & np.uint64(0xFFFFFFFF))
        distinct, inverse[narrow] = np.unique(packed, return_inverse=True)
    else:
        distinct, inverse[:] = np.unique((ipv << np.uint64(32)) | (lo & np.uint64(0xFFFFFFFF)), return_inverse=True)
    rows = [np.stack([distinct >> np.uint64(32), np.zeros_like(distinct), distinct & np.uint64(0xFFFFFFFF)], axis=1)]
    wide = np.flatnonzero(v6)
    if len(wide):
        distinct6, inverse6 = np.unique(np.stack([ipv[wide], hi[wide], lo[wide]], axis=1), axis=0,
                                        return_inverse=True)
        inverse[wide] = inverse6.ravel() + len(distinct)
        rows.append(distinct6)
    return np.concatenate(rows), inverse


_HISTORY_MIX = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)


def _distinct_histories(hist: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(distinct histories in sorted order, index of each flow's) of NUL-padded history rows. Rows are told apart by
    a mix of their 64-bit words (one integer column sorts far faster than byte strings), checked against the rows
    themselves: should two histories ever mix alike, the byte strings are sorted instead."""
    rows = np.ascontiguousarray(hist)
    n, width = rows.shape
    if n and width % 8 == 0:
        words = rows.view(np.uint64)
        key = np.zeros(n, np.uint64)
        for k in range(words.shape[1]):
            key ^= words[:, k] * np.uint64(_HISTORY_MIX[k % len(_HISTORY_MIX)]) + np.uint64(k)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if np.array_equal(words, words[first][inverse]):
            texts = rows[first].view(f"S{width}").ravel().tolist()  # NUL padding drops off
            order = sorted(range(len(texts)), key=texts.__getitem__)  # as np.unique orders the byte strings
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            return [texts[i].decode("ascii") for i in order], rank[inverse]
    distinct, inverse = np.unique(rows.view(f"S{width}").ravel(), return_inverse=True)
    return [h.decode("ascii") for h in distinct.tolist()], inverse.ravel().astype(np.int64)


class StringTable:
    """Distinct strings, each with the id of its first appearance (`fixed` names take the first ids)."""

    def __init__(self, fixed: tuple[str, ...] = ()):
        self.items: list[str] = list(fixed)
        self.index: dict[str, int] = {name: i for i, name in enumerate(fixed)}

    def add(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.items)
            self.items.append(text)
        return i


# Row of each key in the block matrices the column kernel fills: module constants R_<KEY> (numba reads them as
# compile-time constants; FIELDS is in this module, so editing it recompiles the kernel).
for _row, (_key, _, _) in enumerate(FIELDS):
    globals()["R_" + _key.upper()] = _row
_S_CLIENT, _S_SERVER = _NAME_INDEX["client"], _NAME_INDEX["server"]
_S_HANDSHAKE = tuple(_NAME_INDEX[o] for o in ("completed", "not_seen", "refused", "aborted", "icmp_error", "no_answer",
                                               "synack_not_acked"))
_S_FEW, _S_BURSTY, _S_UNIFORM = _NAME_INDEX["few"], _NAME_INDEX["bursty"], _NAME_INDEX["uniform"]
_S_END = tuple(_NAME_INDEX[e] for e in ("rst_client", "rst_server", "fin_both", "fin_client", "fin_server", "open"))
_MIN_EVENTS, _BURSTY = burst.MIN_EVENTS, burst.BURSTY


@inline
def _put(mat, nul, row, i, value, null):
    mat[i, row] = value
    nul[i, row] = null


@inline
def _zeek_size(z, e):
    """Zeek's TCP_Endpoint::Size of endpoint e of a TCP_DTYPE row, modulo 2**64 (as zeek._py_size)."""
    start = z.start_seq[e]
    ack64 = (np.int64(z.ack_wraps[e]) << 32) + z.ack_seq[e]
    last64 = (np.int64(z.seq_wraps[e]) << 32) + z.last_seq[e]
    size = max(last64, ack64) - start
    if size != 0:
        size -= 1
    if z.fin_cnt[e] > 0 and size != 0:
        size -= 1
    data_acked = ack64 != start and ack64 != start + 1
    if z.prev_state[e] == SYN_SENT and z.state[e] == RESET and z.state[1 - e] == INACTIVE and data_acked:
        size = 0
    return size


@inline
def _burstiness(stats):
    """burst.burstiness_from_stats of one (count, mean, M2) row: (B, None)."""
    count, mean, m2 = stats[0], stats[1], stats[2]
    if not count >= 2:
        return 0.0, True
    sigma = np.sqrt((m2 if (m2 >= 0.0 or m2 != m2) else 0.0) / count)  # NaN passes, as np.maximum lets it
    if not sigma + mean > 0:
        return 0.0, True
    return (sigma - mean) / (sigma + mean), False


@inline
def _initial_ttl(ttl):
    """The usual initial TTL a host started from (32, 64, 128 or 255): hops = initial - seen."""
    return 32 if ttl <= 32 else 64 if ttl <= 64 else 128 if ttl <= 128 else 255


# ---- what the records read, taken from the pass's state tables once the pass is over ---------------------------------
# The pass keeps ~0.16 KB per flow and ~1 KB per TCP stream of working state (Zeek's sequence bookkeeping, previous
# timestamps, running statistics); the records need about a third of it. FlowAnalysis copies that third into the
# tables below (derived values such as Zeek's sizes computed once) and releases the pass's tables. Facts few flows
# have (RSTs, ICMP errors, repeated SYNs) sit in side tables sorted by conversation: a block's rows are scattered
# into zeroed rows, which is what a flow without them read before.

RECORD_FLOW_DTYPE = state_dtype(
    [
        ("kind", np.uint8),  # Zeek's connection kind, 0 = not tracked by Zeek
        ("orig", np.uint8),  # endpoint index of Zeek's originator
        ("port", np.uint16, (2,)),  # Zeek's ports (ICMP: types)
        ("hist", np.uint8, (HISTORY_MAX,)),
        ("hist_len", np.uint8),
        ("zstate", np.uint8, (2,)),  # Zeek's endpoint states (UDP/ICMP: 1 = active)
        ("zsize", np.int64, (2,)),  # Zeek's endpoint sizes (TCP: modulo 2**64)
        ("duration", np.int64),  # Zeek's LastTime - start_time (ns)
        ("missed", np.int64),
        ("pkts", np.uint32, (2,)),  # per endpoint (at most the capture's frames: < 2**32)
        ("ip_bytes", np.int64, (2,)),
        ("has_tcp", np.uint8),  # TCP facts present (RECORD_TCP_DTYPE row at the conversation's stream)
        ("one_packet", np.uint8),  # at most one packet: no idle time
        ("idle_max", np.int64),
        ("idle_max_frame", np.int64),
    ]
)

RECORD_TCP_DTYPE = state_dtype(
    [
        ("syns", np.int32),  # pure SYNs, both sides
        ("synack_count", np.int32),
        ("rsts", np.int32),  # RSTs, both sides
        ("hs_done", np.uint8),
        ("syn_dir", np.int8),
        ("synack_syn_ts", np.int64),
        ("synack_ts", np.int64),
        ("hs_ack_ts", np.int64),
        ("opts_seen", np.uint8, (2,)),
        ("mss", np.int32, (2,)),
        ("ws", np.int8, (2,)),
        ("sack_perm", np.uint8, (2,)),
        ("ts_opt", np.uint8, (2,)),
        ("data_pkts", np.int32, (2,)),
        ("oversize", np.int32, (2,)),
        ("zw_count", np.int32, (2,)),
        ("zw_time", np.int64, (2,)),  # including an episode still open at the flow's last packet
        ("zw_open", np.uint8, (2,)),  # an episode is open at the end
        ("zw_frame", np.int64, (2,)),
        ("fin", np.uint8, (2,)),
        ("max_win", np.int64, (2,)),
        ("max_bif", np.int64, (2,)),
        ("window_full", np.int32, (2,)),
        ("retrans", np.int32, (2,)),
        ("dup_retrans", np.int32, (2,)),
        ("lost", np.int32, (2,)),
        ("burst", np.float64, (2, 2)),  # [dir, clock] burstiness (clock 0 segments, 1 seconds)
        ("burst_none", np.uint8, (2, 2)),  # too few gaps for a burstiness
    ]
)

_NO_TCP_FACTS = np.zeros(1, RECORD_TCP_DTYPE)  # what a flow without TCP facts reads: _record_tcp of a zero row
_NO_TCP_FACTS["burst_none"] = 1

# side tables: "conv" first, rows sorted by it
RECORD_RST_DTYPE = np.dtype([("conv", np.int64), *[(name, *TCP_FACTS_DTYPE.fields[name][:1]) for name in (
    "rst_dir", "rst_frame", "rst_ts", "rst_ttl", "rst_ipv", "rst_ipid", "rst_idle", "rst_phase", "rst_bytes",
    "rst_ttl_min", "rst_ttl_max", "rst_genuine", "rst_ipid_nonzero")]], align=True)
RECORD_ICMP_DTYPE = np.dtype([("conv", np.int64), *[(name, *ICMP_FACTS_DTYPE.fields[name][:1]) for name in (
    "icmp_count", "icmp_type", "icmp_code", "icmp_ipv", "icmp_ttl", "icmp_dir", "icmp_src_hi", "icmp_src_lo",
    "icmp_frame", "icmp_ts", "icmp_unreach")]], align=True)
RECORD_SYN_DTYPE = np.dtype([("conv", np.int64), ("delta", np.int64, (SYN_TIMES,))])  # SYN times after the first


@inline
def _record_flows(convs, c, f, ftcp, n_tcp, ztcp, out):
    """RECORD_FLOW_DTYPE rows of conversations (c, f: their CONV_CONN_DTYPE and FLOW_DTYPE rows)."""
    for i in range(convs.shape[0]):
        cv = convs[i]
        cr = c[i]
        fr = f[i]
        o = out[i]
        stream = np.int64(cv.stream)
        o.has_tcp = cv.proto == PROTO_TCP and stream >= 0 and stream < n_tcp and ftcp[max(stream, 0)].conv >= 0
        o.kind = cr.kind
        o.orig = cr.orig
        o.hist_len = cr.hist_len
        for e in range(2):
            o.port[e] = cr.port[e]
            o.pkts[e] = cr.pkts[e]
            o.ip_bytes[e] = cr.ip_bytes[e]
        for k in range(HISTORY_MAX):
            o.hist[k] = cr.hist[k]
        kind = np.int64(cr.kind)
        if kind == K_TCP and cr.tcp >= 0:
            z = ztcp[cr.tcp]
            for e in range(2):
                o.zsize[e] = _zeek_size(z, e)
                o.zstate[e] = z.state[e]
        elif kind == K_UDP or kind == K_ICMP:
            for e in range(2):
                o.zstate[e] = cr.size[e] >= 0
                o.zsize[e] = max(cr.size[e], 0)
        o.duration = cr.last - cr.start
        o.missed = cr.missed
        o.one_packet = fr.pkts <= 1
        o.idle_max = fr.idle_max
        o.idle_max_frame = fr.idle_max_frame


@inline
def _record_tcp(ftcp, f, out):
    """RECORD_TCP_DTYPE rows of TCP streams (ftcp: their TCP_FACTS_DTYPE rows; f: FLOW_DTYPE rows by conversation)."""
    for s in range(out.shape[0]):
        t = ftcp[s]
        o = out[s]
        last_ts = f[t.conv].prev_ts if t.conv >= 0 and t.conv < f.shape[0] else np.int64(0)
        o.syns = t.syn_count[0] + t.syn_count[1]
        o.synack_count = t.synack_count
        o.rsts = t.rst_count[0] + t.rst_count[1]
        o.hs_done = t.hs_done
        o.syn_dir = t.syn_dir
        o.synack_syn_ts = t.synack_syn_ts
        o.synack_ts = t.synack_ts
        o.hs_ack_ts = t.hs_ack_ts
        for d in range(2):
            o.opts_seen[d] = t.opts_seen[d]
            o.mss[d] = t.mss[d]
            o.ws[d] = t.ws[d]
            o.sack_perm[d] = t.sack_perm[d]
            o.ts_opt[d] = t.ts_opt[d]
            o.data_pkts[d] = t.data_pkts[d]
            o.oversize[d] = t.oversize[d]
            o.zw_count[d] = t.zw_count[d]
            is_open = t.zw_open[d] != 0
            o.zw_open[d] = is_open
            o.zw_time[d] = t.zw_time[d] + (last_ts - t.zw_open[d] if is_open else 0)
            o.zw_frame[d] = t.zw_frame[d]
            o.fin[d] = t.fin[d]
            o.max_win[d] = t.max_win[d]
            o.max_bif[d] = t.max_bif[d]
            o.window_full[d] = t.window_full[d]
            o.retrans[d] = t.retrans[d]
            o.dup_retrans[d] = t.dup_retrans[d]
            o.lost[d] = t.lost[d]
            for clock in range(2):
                b, none = _burstiness(t.burst[d * 2 + clock])
                o.burst[d, clock] = b
                o.burst_none[d, clock] = none


@kernel
def _record_rows(convs, c, f, ftcp, n_tcp, ztcp, out_flows, out_tcp):
    """_record_flows and _record_tcp in one kernel (loading a cached kernel costs a few ms each)."""
    _record_flows(convs, c, f, ftcp, n_tcp, ztcp, out_flows)
    _record_tcp(ftcp[:n_tcp], f, out_tcp)


def _side_rows(side: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows of conversations lo..hi-1 from a side table (sorted by conv), zeroed where it has none."""
    a, b = np.searchsorted(side["conv"], [lo, hi])
    out = np.zeros(hi - lo, side.dtype)
    np.put(out, side["conv"][a:b] - lo, side[a:b])  # np.put: numpy's indexed store of structured rows is slow
    return out


def _side_table(source: np.ndarray, rows: np.ndarray, conv: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """dtype rows (conv, then fields of source[rows] of the same names), sorted by conv."""
    order = np.argsort(conv, kind="stable")
    rows, conv = rows[order], conv[order]
    out = np.zeros(len(rows), dtype)
    out["conv"] = conv
    for name in dtype.names[1:]:
        out[name] = source[name][rows]
    return out


@dataclass
class RecordTables:
    """The facts the records of a capture's flows read (the RECORD_* tables above)."""

    flows: np.ndarray  # RECORD_FLOW_DTYPE per conversation
    tcp: np.ndarray  # RECORD_TCP_DTYPE per TCP stream
    rst: np.ndarray  # side tables
    icmp: np.ndarray
    syn: np.ndarray
    have_analysis: bool

    @classmethod
    def take(cls, flows: FlowTable, states: ConnStates, facts: FlowFacts) -> RecordTables:
        """The record tables of the pass's state; the states and facts release their tables (they are done)."""
        convs = flows.conversations
        n = len(convs)
        n_tcp = facts.n_tcp
        c, _ = _padded(states.conns, 0, n, CONV_CONN_DTYPE)
        f, _ = _padded(facts.flows, 0, n, FLOW_DTYPE)
        ftcp = facts.tcp[:n_tcp]
        out_flows = np.zeros(n, RECORD_FLOW_DTYPE)
        out_tcp = np.zeros(n_tcp, RECORD_TCP_DTYPE)
        _record_rows(convs, c, f, facts.tcp, n_tcp, states.tcp, out_flows, out_tcp)
        # a stream's facts belong to conversation `conv` (its records read them only where has_tcp says so)
        tcp_conv = ftcp["conv"].astype(np.int64)
        known = (tcp_conv >= 0) & (tcp_conv < n)
        rst_rows = np.nonzero(known & (out_tcp["rsts"] > 0))[0]  # the RST fields are written with the count
        syn_rows = np.nonzero(known & (out_tcp["syns"] >= 2))[0]  # the first SYN's delta is 0
        syn = np.zeros(len(syn_rows), RECORD_SYN_DTYPE)
        syn["conv"] = tcp_conv[syn_rows]
        kept = np.minimum(out_tcp["syns"][syn_rows], SYN_TIMES)
        syn["delta"] = np.where(np.arange(SYN_TIMES) < kept[:, None],
                                ftcp["syn_times"][syn_rows] - ftcp["syn_times"][syn_rows, :1], 0)
        syn = syn[np.argsort(syn["conv"], kind="stable")]
        icmp = facts.icmp_errors()
        tables = cls(out_flows, out_tcp, _side_table(ftcp, rst_rows, tcp_conv[rst_rows], RECORD_RST_DTYPE),
                     _side_table(icmp, np.arange(len(icmp)), icmp["conv"], RECORD_ICMP_DTYPE), syn, facts.have_analysis)
        del c, f, ftcp, icmp
        states.release()
        facts.release()
        return tables


@kernel
def _fill_columns(convs, c, icmps, rsts, ftcp, no_tcp, completeness, have_analysis, cdir, inverse, proto_index,
                  phase_index, mat, matf, nul, has_t, zstate, ports, syn_len):
    """The numeric columns of a block of flows: mat/matf (int64 and float64 views of one [flow, field] matrix),
    nul (the None masks), has_t (TCP facts present), zstate (Zeek's endpoint states of originator and responder),
    ports (client and server port, -1 for none) and syn_len (SYN times kept). c, icmp, rsts: the block's
    RECORD_FLOW, RECORD_ICMP and RECORD_RST rows; ftcp: RECORD_TCP rows by stream."""
    n = convs.shape[0]
    n_comp = completeness.shape[0]
    na = not have_analysis
    for i in range(n):
        cv = convs[i]
        cr = c[i]
        fr = icmps[i]
        rs = rsts[i]
        proto = np.int64(cv.proto)
        stream = np.int64(cv.stream)
        zeek = cr.kind != 0
        orig = np.int64(cr.orig)
        cd = cdir[i]
        sd = 1 - cd
        ht = cr.has_tcp != 0
        t = ftcp[stream] if ht else no_tcp[0]  # absent facts read as zeros
        has_t[i] = ht

        # ---- the flow table's facts ---------------------------------------------------------------------------
        has_ports = proto == PROTO_TCP or proto == PROTO_UDP
        cp = np.int64(cv.a_port if cd == 0 else cv.b_port)
        sp = np.int64(cv.a_port if sd == 0 else cv.b_port)
        ports[0, i] = cp if has_ports else -1
        ports[1, i] = sp if has_ports else -1
        _put(mat, nul, R_STREAM, i, stream, stream < 0)
        _put(mat, nul, R_PROTO, i, proto_index[proto], False)
        _put(mat, nul, R_IP_PROTO, i, proto, False)
        _put(mat, nul, R_TS, i, cv.first_ts, False)
        _put(mat, nul, R_ORIG_H, i, inverse[0, i], False)
        _put(mat, nul, R_ORIG_P, i, cp if has_ports else np.int64(cr.port[orig]), not has_ports and not zeek)
        _put(mat, nul, R_RESP_H, i, inverse[1, i], False)
        _put(mat, nul, R_RESP_P, i, sp if has_ports else np.int64(cr.port[1 - orig]), not has_ports and not zeek)

        # ---- Zeek's conn.log (conn_state and history: Python, from zstate and the sizes) ------------------------
        o_size = cr.zsize[orig]
        r_size = cr.zsize[1 - orig]
        o_state = np.int64(cr.zstate[orig])
        r_state = np.int64(cr.zstate[1 - orig])
        zstate[0, i] = o_state
        zstate[1, i] = r_state
        duration = cr.duration
        timed = zeek and duration > 0
        nul[i, R_CONN_STATE] = not zeek
        nul[i, R_HISTORY] = not zeek or cr.hist_len == 0
        _put(mat, nul, R_DURATION, i, duration, not timed)
        _put(mat, nul, R_ORIG_BYTES, i, o_size, not timed)
        _put(mat, nul, R_RESP_BYTES, i, r_size, not timed)
        _put(mat, nul, R_MISSED_BYTES, i, cr.missed, not zeek)
        _put(mat, nul, R_ORIG_PKTS, i, cr.pkts[orig], not zeek)
        _put(mat, nul, R_ORIG_IP_BYTES, i, cr.ip_bytes[orig], not zeek)
        _put(mat, nul, R_RESP_PKTS, i, cr.pkts[1 - orig], not zeek)
        _put(mat, nul, R_RESP_IP_BYTES, i, cr.ip_bytes[1 - orig], not zeek)

        # ---- ours -----------------------------------------------------------------------------------------------
        _put(mat, nul, R_CLIENT, i, inverse[0, i], False)
        _put(mat, nul, R_SERVER, i, inverse[1, i], False)
        _put(mat, nul, R_FIRST_FRAME, i, cv.first_frame, False)
        _put(mat, nul, R_LAST_FRAME, i, cv.last_frame, False)
        _put(mat, nul, R_FLOW_DURATION, i, cv.last_ts - cv.first_ts, False)
        _put(mat, nul, R_PACKETS, i, cv.pkts[0] + cv.pkts[1], False)
        _put(mat, nul, R_ORIG_WIRE_BYTES, i, cv.bytes[cd], False)  # frame bytes, as the flow table counts them
        _put(mat, nul, R_RESP_WIRE_BYTES, i, cv.bytes[sd], False)
        _put(mat, nul, R_REUSED_PORTS, i, cv.reused != 0, False)
        _put(mat, nul, R_IDLE_MAX, i, cr.idle_max, cr.one_packet != 0)
        _put(mat, nul, R_IDLE_MAX_FRAME, i, cr.idle_max_frame, cr.one_packet != 0)
        icmp = np.int64(fr.icmp_count)
        no_icmp = icmp == 0
        _put(mat, nul, R_ICMP_ERRORS, i, icmp, False)
        _put(mat, nul, R_ICMP_UNREACHABLE, i, icmp > 0 and fr.icmp_unreach > 0, False)
        _put(mat, nul, R_ICMP_ERROR_TYPE, i, fr.icmp_type, no_icmp)
        _put(mat, nul, R_ICMP_ERROR_CODE, i, fr.icmp_code, no_icmp)
        _put(mat, nul, R_ICMP_ERROR_FROM, i, inverse[2, i], no_icmp)
        _put(mat, nul, R_ICMP_ERROR_TTL, i, fr.icmp_ttl, no_icmp)
        _put(mat, nul, R_ICMP_ERROR_FRAME, i, fr.icmp_frame, no_icmp)
        _put(mat, nul, R_ICMP_ERROR_TIME, i, fr.icmp_ts, no_icmp)
        _put(mat, nul, R_ICMP_ERROR_QUOTES, i, _S_CLIENT if fr.icmp_dir == cd else _S_SERVER, no_icmp)

        # ---- TCP: handshake and options -------------------------------------------------------------------------
        syns = np.int64(t.syns)
        synacks = np.int64(t.synack_count)
        rst_n = np.int64(t.rsts)
        hs_done = t.hs_done != 0
        _put(mat, nul, R_SYN_COUNT, i, syns, False)
        syn_len[i] = min(syns, SYN_TIMES) if ht else 0  # their times: RECORD_SYN rows
        _put(mat, nul, R_SYNACK_SEEN, i, synacks > 0, False)
        _put(mat, nul, R_SYNACK_COUNT, i, synacks, False)
        _put(mat, nul, R_RST_SEEN, i, rst_n > 0, False)
        rst_dir = np.int64(rs.rst_dir)
        syn_dir = np.int64(t.syn_dir)
        if hs_done:
            outcome = _S_HANDSHAKE[0]  # completed
        elif syns == 0 and synacks == 0:
            outcome = _S_HANDSHAKE[1]  # not_seen: joined mid-stream
        elif rst_n > 0 and synacks == 0 and rst_dir != syn_dir:
            outcome = _S_HANDSHAKE[2]  # refused
        elif rst_n > 0 and rst_dir == syn_dir and synacks == 0:
            outcome = _S_HANDSHAKE[3]  # aborted: the client gave up with a RST
        elif synacks == 0 and icmp > 0:
            outcome = _S_HANDSHAKE[4]  # icmp_error
        elif synacks == 0:
            outcome = _S_HANDSHAKE[5]  # no_answer
        else:
            outcome = _S_HANDSHAKE[6]  # synack_not_acked
        _put(mat, nul, R_HANDSHAKE, i, outcome, False)
        syn_ts = t.synack_syn_ts
        _put(mat, nul, R_SYNACK_RTT, i, t.synack_ts - syn_ts, not (synacks > 0 and syn_ts != 0))
        _put(mat, nul, R_HANDSHAKE_RTT, i, t.hs_ack_ts - syn_ts, not (hs_done and syn_ts != 0))
        _put(mat, nul, R_HANDSHAKE_ACK_RTT, i, t.hs_ack_ts - t.synack_ts, not (hs_done and synacks > 0))
        unseen_c = t.opts_seen[cd] == 0
        unseen_s = t.opts_seen[sd] == 0
        _put(mat, nul, R_MSS_CLIENT, i, t.mss[cd], unseen_c or t.mss[cd] == 0)
        _put(mat, nul, R_MSS_SERVER, i, t.mss[sd], unseen_s or t.mss[sd] == 0)
        _put(mat, nul, R_WSCALE_CLIENT, i, t.ws[cd], unseen_c or t.ws[cd] < 0)
        _put(mat, nul, R_WSCALE_SERVER, i, t.ws[sd], unseen_s or t.ws[sd] < 0)
        _put(mat, nul, R_SACK_CLIENT, i, t.sack_perm[cd] != 0, unseen_c)
        _put(mat, nul, R_SACK_SERVER, i, t.sack_perm[sd] != 0, unseen_s)
        _put(mat, nul, R_TIMESTAMPS_CLIENT, i, t.ts_opt[cd] != 0, unseen_c)
        _put(mat, nul, R_TIMESTAMPS_SERVER, i, t.ts_opt[sd] != 0, unseen_s)
        not_both = unseen_c or unseen_s
        _put(mat, nul, R_WSCALE_NEGOTIATED, i, t.ws[0] >= 0 and t.ws[1] >= 0, not_both)
        _put(mat, nul, R_SACK_NEGOTIATED, i, t.sack_perm[0] != 0 and t.sack_perm[1] != 0, not_both)
        _put(mat, nul, R_TIMESTAMPS_NEGOTIATED, i, t.ts_opt[0] != 0 and t.ts_opt[1] != 0, not_both)

        # ---- TCP: transfer --------------------------------------------------------------------------------------
        _put(mat, nul, R_DATA_PACKETS_CLIENT, i, t.data_pkts[cd], False)
        _put(mat, nul, R_DATA_PACKETS_SERVER, i, t.data_pkts[sd], False)
        _put(mat, nul, R_OVERSIZE_SEGMENTS_CLIENT, i, t.oversize[cd], False)
        _put(mat, nul, R_OVERSIZE_SEGMENTS_SERVER, i, t.oversize[sd], False)
        _put(mat, nul, R_ZERO_WINDOW_EPISODES_CLIENT, i, t.zw_count[cd], False)
        _put(mat, nul, R_ZERO_WINDOW_EPISODES_SERVER, i, t.zw_count[sd], False)
        open_c = t.zw_open[cd] != 0
        open_s = t.zw_open[sd] != 0
        _put(mat, nul, R_ZERO_WINDOW_TIME_CLIENT, i, t.zw_time[cd], False)
        _put(mat, nul, R_ZERO_WINDOW_TIME_SERVER, i, t.zw_time[sd], False)
        _put(mat, nul, R_ZERO_WINDOW_OPEN_AT_END_CLIENT, i, open_c, False)
        _put(mat, nul, R_ZERO_WINDOW_OPEN_AT_END_SERVER, i, open_s, False)
        _put(mat, nul, R_ZERO_WINDOW_FIRST_FRAME_CLIENT, i, t.zw_frame[cd], t.zw_frame[cd] == 0)
        _put(mat, nul, R_ZERO_WINDOW_FIRST_FRAME_SERVER, i, t.zw_frame[sd], t.zw_frame[sd] == 0)
        fin_c = t.fin[cd] != 0
        fin_s = t.fin[sd] != 0
        _put(mat, nul, R_FIN_CLIENT, i, fin_c, False)
        _put(mat, nul, R_FIN_SERVER, i, fin_s, False)
        _put(mat, nul, R_MAX_WINDOW_CLIENT, i, t.max_win[cd], na)
        _put(mat, nul, R_MAX_WINDOW_SERVER, i, t.max_win[sd], na)
        _put(mat, nul, R_MAX_BYTES_IN_FLIGHT_CLIENT, i, t.max_bif[cd], na)
        _put(mat, nul, R_MAX_BYTES_IN_FLIGHT_SERVER, i, t.max_bif[sd], na)
        _put(mat, nul, R_WINDOW_FULL_CLIENT, i, t.window_full[cd], na)
        _put(mat, nul, R_WINDOW_FULL_SERVER, i, t.window_full[sd], na)
        _put(mat, nul, R_WINDOW_LIMITED_CLIENT, i, t.window_full[cd] > 0, na)
        _put(mat, nul, R_WINDOW_LIMITED_SERVER, i, t.window_full[sd] > 0, na)
        _put(mat, nul, R_RETRANSMISSIONS_CLIENT, i, t.retrans[cd], na)
        _put(mat, nul, R_RETRANSMISSIONS_SERVER, i, t.retrans[sd], na)
        _put(mat, nul, R_DUPLICATE_RETRANSMISSIONS_CLIENT, i, t.dup_retrans[cd], na)
        _put(mat, nul, R_DUPLICATE_RETRANSMISSIONS_SERVER, i, t.dup_retrans[sd], na)
        _put(mat, nul, R_LOST_SEGMENTS_CLIENT, i, t.lost[cd], na)
        _put(mat, nul, R_LOST_SEGMENTS_SERVER, i, t.lost[sd], na)
        for side in range(2):
            d = cd if side == 0 else sd
            data = np.int64(t.data_pkts[d])
            retrans = np.int64(t.retrans[d])
            matf[i, R_RETRANSMISSION_RATE_CLIENT + side] = retrans / data if data > 0 else 0.0
            nul[i, R_RETRANSMISSION_RATE_CLIENT + side] = na or data == 0
            seg_b, seg_none = t.burst[d, 0], t.burst_none[d, 0] != 0
            time_b, time_none = t.burst[d, 1], t.burst_none[d, 1] != 0
            matf[i, R_RETRANSMISSION_BURSTINESS_CLIENT + side] = seg_b
            nul[i, R_RETRANSMISSION_BURSTINESS_CLIENT + side] = na or seg_none
            matf[i, R_RETRANSMISSION_TIME_BURSTINESS_CLIENT + side] = time_b
            nul[i, R_RETRANSMISSION_TIME_BURSTINESS_CLIENT + side] = na or time_none
            if seg_none or retrans < _MIN_EVENTS:
                pattern = _S_FEW
            elif seg_b >= _BURSTY:
                pattern = _S_BURSTY
            else:
                pattern = _S_UNIFORM
            _put(mat, nul, R_RETRANSMISSION_PATTERN_CLIENT + side, i, pattern, na or retrans == 0)
        total = np.int64(t.retrans[0]) + np.int64(t.retrans[1])
        _put(mat, nul, R_RETRANSMISSIONS_ARTEFACT, i, np.int64(t.dup_retrans[0]) + np.int64(t.dup_retrans[1]) == total,
             total == 0 or na)
        _put(mat, nul, R_OFFLOAD_SUSPECTED, i, np.int64(t.oversize[0]) + np.int64(t.oversize[1]) > 0, False)

        # ---- TCP: the RST and how the flow ended ----------------------------------------------------------------
        no_rst = rst_n == 0
        genuine = np.int64(rs.rst_genuine)
        not_genuine = no_rst or genuine == 0
        ttl = np.int64(rs.rst_ttl)
        ttl_lo = np.int64(rs.rst_ttl_min)
        ttl_hi = np.int64(rs.rst_ttl_max)
        ipv4 = rs.rst_ipv == 4
        rst_by_client = rst_dir == cd
        phase = np.int64(phase_index[np.int64(rs.rst_phase)])
        _put(mat, nul, R_RST_COUNT, i, rst_n, False)
        _put(mat, nul, R_RST_SENDER, i, _S_CLIENT if rst_by_client else _S_SERVER, no_rst)
        _put(mat, nul, R_RST_FRAME, i, rs.rst_frame, no_rst)
        _put(mat, nul, R_RST_TIME, i, rs.rst_ts, no_rst)
        _put(mat, nul, R_RST_PHASE, i, phase, no_rst or phase < 0)
        _put(mat, nul, R_RST_IDLE_BEFORE, i, rs.rst_idle, no_rst)
        _put(mat, nul, R_RST_BYTES_CLIENT, i, rs.rst_bytes[cd], no_rst)
        _put(mat, nul, R_RST_BYTES_SERVER, i, rs.rst_bytes[sd], no_rst)
        _put(mat, nul, R_RST_TTL, i, ttl, no_rst)
        _put(mat, nul, R_RST_HOPS, i, _initial_ttl(ttl) - ttl, no_rst)
        _put(mat, nul, R_RST_IP_ID, i, rs.rst_ipid, no_rst or not ipv4)
        _put(mat, nul, R_RST_SENDER_TTL_MIN, i, ttl_lo, not_genuine)
        _put(mat, nul, R_RST_SENDER_TTL_MAX, i, ttl_hi, not_genuine)
        _put(mat, nul, R_RST_SENDER_PACKETS, i, genuine, no_rst)
        mismatch = ttl < ttl_lo or ttl > ttl_hi  # a RST at another hop count than its sender's packets: forged
        _put(mat, nul, R_RST_TTL_MISMATCH, i, mismatch, not_genuine)
        _put(mat, nul, R_RST_IP_ID_ZERO, i, ipv4 and rs.rst_ipid == 0 and rs.rst_ipid_nonzero > 0, not_genuine)
        _put(mat, nul, R_RST_FORGED, i, mismatch, not_genuine)
        if not no_rst and rst_by_client:
            end = _S_END[0]
        elif not no_rst:
            end = _S_END[1]
        elif t.fin[0] != 0 and t.fin[1] != 0:
            end = _S_END[2]
        elif fin_c:
            end = _S_END[3]
        elif fin_s:
            end = _S_END[4]
        else:
            end = _S_END[5]
        _put(mat, nul, R_END, i, end, not ht)
        if n_comp == 0:
            _put(mat, nul, R_COMPLETENESS, i, 0, True)
        else:
            at = min(stream, n_comp - 1)
            if at < 0:
                at += n_comp  # as numpy indexes a -1 stream
            known = stream < n_comp
            _put(mat, nul, R_COMPLETENESS, i, np.int64(completeness[at]) if known else 0, not known)


def flow_columns(flows: FlowTable, tables: RecordTables, completeness: np.ndarray | None, lo: int,
                 hi: int, lazy_texts: bool = False) -> FlowColumns:
    """The records of conversations lo..hi-1 (see FlowAnalysis.columns): the numbers by a kernel (_fill_columns),
    the texts (states, histories, addresses) once per distinct value of the block. With lazy_texts, Zeek's
    conn_state and history are decided when first read (and the block has no matrix)."""
    convs = flows.conversations[lo:hi]
    n = len(convs)
    c, _ = _padded(tables.flows, lo, lo + n, RECORD_FLOW_DTYPE)
    return _columns_of(lo, convs, c, lambda side: _side_rows(side, lo, lo + n), tables, completeness, lazy_texts)


def flow_columns_of(flows: FlowTable, tables: RecordTables, completeness: np.ndarray | None,
                    rows: np.ndarray) -> FlowColumns:
    """The records of the conversations `rows` (sorted, each < flows.count) as one block of columns, row k holding
    conversation rows[k]: what flow_columns gives for them, without computing the blocks around them (the flows a
    diagnosis flags are a tenth of all, spread over every block). Its lo is -1: its rows are not a range; its
    conn_state and history are decided when first read, and it has no matrix: its records live as long as the
    findings about them (to the end of the run), so each field is kept in the narrowest type that holds it (~0.25
    of the matrix's 0.9 KB per flow)."""
    rows = np.asarray(rows, np.int64)
    # np.take, not rows of a structured array by an index array: numpy's generic path for that is ~30x slower
    if len(rows) and rows[-1] >= len(tables.flows):
        c = np.zeros(len(rows), RECORD_FLOW_DTYPE)
        kept = np.flatnonzero(rows < len(tables.flows))
        c[kept] = np.take(tables.flows, rows[kept])
    else:
        c = np.take(tables.flows, rows)
    return _columns_of(-1, np.take(flows.conversations, rows), c, lambda side: _side_take(side, rows), tables,
                       completeness, True, compact=True)


def _side_take(side: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of conversations `rows` (sorted) from a side table (sorted by conv), zeroed where it has none."""
    out = np.zeros(len(rows), side.dtype)
    if len(side) and len(rows):
        at = np.minimum(np.searchsorted(side["conv"], rows), len(side) - 1)
        hit = np.flatnonzero(side["conv"][at] == rows)
        np.put(out, hit, np.take(side, at[hit]))
    return out


def _columns_of(lo: int, convs: np.ndarray, c: np.ndarray, side_rows: Callable[[np.ndarray], np.ndarray],
                tables: RecordTables, completeness: np.ndarray | None, lazy_texts: bool,
                compact: bool = False) -> FlowColumns:
    """The columns of conversations `convs` (their RECORD_FLOW rows c; side_rows(table): their rows of a side
    table); compact: kept per field, narrowed, instead of in the kernel's matrix (see flow_columns_of)."""
    n = len(convs)
    f = side_rows(tables.icmp)
    zeek = c["kind"] != 0
    client = convs["client"]
    cdir = np.where(zeek, c["orig"], np.where(client >= 0, client, 0)).astype(np.int64)

    # ---- addresses: each distinct (ipv, hi, lo) once per block -----------------------------------------------------
    ipv = convs["ipv"].astype(np.uint64)
    client_hi = np.where(cdir == 0, convs["a_hi"], convs["b_hi"])
    client_lo = np.where(cdir == 0, convs["a_lo"], convs["b_lo"])
    server_hi = np.where(cdir == 0, convs["b_hi"], convs["a_hi"])
    server_lo = np.where(cdir == 0, convs["b_lo"], convs["a_lo"])
    addresses, inverse = _distinct_addresses(
        np.concatenate([ipv, ipv, f["icmp_ipv"].astype(np.uint64)]),
        np.concatenate([client_hi, server_hi, f["icmp_src_hi"]]).astype(np.uint64, copy=False),
        np.concatenate([client_lo, server_lo, f["icmp_src_lo"]]).astype(np.uint64, copy=False))
    inverse = inverse.reshape(3, n)

    # ---- the numbers ------------------------------------------------------------------------------------------------
    mat = np.zeros((n, len(FIELDS)), np.int64)  # a flow's fields side by side: the kernel writes them in turn
    nul = np.zeros((n, len(FIELDS)), np.uint8)
    has_t = np.zeros(n, np.uint8)
    zstate = np.zeros((2, n), np.int64)
    ports = np.zeros((2, n), np.int64)
    syn_len = np.zeros(n, np.int64)
    _fill_columns(convs, c, f, side_rows(tables.rst), tables.tcp, _NO_TCP_FACTS,
                  _NO_COMPLETENESS if completeness is None else completeness, tables.have_analysis, cdir, inverse,
                  _PROTO_INDEX, _PHASE_INDEX, mat, mat.view(np.float64), nul, has_t, zstate, ports, syn_len)

    # a field's numbers as stored (UINT as uint64, FLOAT as float64), from the matrix or its compact copy
    if compact and n:
        fields, masks = _compact_fields(mat, nul)
        mat = nul = None  # noqa: F841 - the matrices go: the fields hold their numbers

        def field(row: int) -> np.ndarray:
            return fields[row]

        def null_of(name: str) -> np.ndarray:
            return masks[_ROW[name]]
    else:
        fields = None

        def field(row: int) -> np.ndarray:
            kind_ = FIELDS[row][1]
            return mat[:, row].view(np.uint64) if kind_ == UINT else mat[:, row].view(np.float64) if kind_ == FLOAT \
                else mat[:, row]

        def null_of(name: str) -> np.ndarray:
            return nul[:, _ROW[name]].view(bool)

    # ---- Zeek's conn_state and history: decided once per distinct combination -----------------------------------
    strings = StringTable(_NAMES)
    texts_pending = [True]

    def decide_texts() -> None:  # their texts join the block's strings (a list the block's readers share)
        if not texts_pending:
            return
        texts_pending.clear()
        hist_text, hist_of = _distinct_histories(c["hist"])
        history = np.array([strings.add(h) for h in hist_text], np.int32)[hist_of]
        kind = c["kind"].astype(np.int64)
        empty = (field(R_ORIG_BYTES) == 0) & (field(R_RESP_BYTES) == 0)  # conn_state tells sizes zero or not
        combo = (hist_of << 16) | (kind << 8) | (zstate[0] << 5) | (zstate[1] << 2) | empty
        combos, combo_of = np.unique(combo, return_inverse=True)
        state = np.array([strings.add(conn_state(kd, os_, rs, 0 if e else 1, 0 if e else 1, hist_text[h]))
                          if kd else -1 for kd, os_, rs, e, h in
                          zip(((combos >> 8) & 255).tolist(), ((combos >> 5) & 7).tolist(),
                              ((combos >> 2) & 7).tolist(), (combos & 1).tolist(), (combos >> 16).tolist())],
                         np.int32)[combo_of.ravel()]
        if fields is not None:
            fields[R_HISTORY], fields[R_CONN_STATE] = history, state
        else:
            mat[:, R_HISTORY], mat[:, R_CONN_STATE] = history, state

    if not lazy_texts:
        decide_texts()

    def value(name: str) -> np.ndarray:
        if texts_pending and name in _ZEEK_TEXTS:
            decide_texts()
        row = _ROW[name]
        kind_ = KINDS[name]
        if kind_ == BOOL:
            return field(row) != 0
        if kind_ == MICROS:
            syn_delta = side_rows(tables.syn)["delta"]
            syn_delta[has_t == 0] = 0  # as the flow's records read no TCP facts
            return _syn_micros(syn_delta)
        return field(row)

    values = _Columns(_ROW, value)
    null = _Columns(_NULL_ROW, null_of)
    return FlowColumns(lo, values, null, has_t.view(bool), strings.items, addresses,
                       {"client": ports[0], "server": ports[1]}, {"syn_times": syn_len},
                       None if lazy_texts else mat, None if lazy_texts else nul)


_UNSIGNED = tuple((np.dtype(t), int(np.iinfo(t).max)) for t in (np.uint8, np.uint16, np.uint32))
_SIGNED = tuple((np.dtype(t), int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in (np.int8, np.int16, np.int32))


def _compact_fields(mat: np.ndarray, nul: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A block's [flow, field] matrices as one array per field in the narrowest type holding its numbers (UINT
    unsigned, FLOAT float64; readers get the same Python numbers from them), and a bool None mask per field (one
    shared all-False mask for the fields without a None)."""
    lows, highs = mat.min(axis=0).tolist(), mat.max(axis=0).tolist()
    fields = []
    for row, (_name, kind, _tcp_only) in enumerate(FIELDS):
        column, low, high = mat[:, row], lows[row], highs[row]
        if kind == FLOAT:
            fields.append(column.view(np.float64).copy())
        elif kind == UINT:  # as uint64: a number of 2**63 and more reads as a negative int64
            dtype = next((t for t, top in _UNSIGNED if low >= 0 and high <= top), np.dtype(np.uint64))
            fields.append(column.view(np.uint64).astype(dtype))
        else:
            dtype = next((t for t, bottom, top in _SIGNED if bottom <= low and high <= top), np.dtype(np.int64))
            fields.append(column.astype(dtype))
    some = nul.any(axis=0).tolist()
    none = np.zeros(len(mat), bool)
    masks = [nul[:, row].astype(bool) if some[row] else none for row in range(len(FIELDS))]
    return fields, masks


_ZEEK_TEXTS = frozenset(("history", "conn_state"))  # decided from the block's numbers when first read (lazy_texts)


_ROW = {name: row for row, (name, _, _) in enumerate(FIELDS)}
_NULL_ROW = {name: row for name, row in _ROW.items() if name in _NULLABLE}


class _Columns(Mapping):
    """A block's columns by key, each made when first read (a reader such as the rules' sweep reads a few dozen of
    the ~150 keys: making every view, bool column and SYN-time table was a fifth of the block's time)."""

    def __init__(self, keys: dict[str, int], make: Callable[[str], np.ndarray]):
        self._keys = keys
        self._make = make
        self._made: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        got = self._made.get(name)
        if got is None:
            if name not in self._keys:
                raise KeyError(name)
            got = self._made[name] = self._make(name)
        return got

    def get(self, name: str, default=None):
        # Mapping.get finds an absent key by catching __getitem__'s KeyError: ~1 us for each key without a None mask
        return self[name] if name in self._keys else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _values(cols: FlowColumns, name: str, kind: int, address_texts: list[str]) -> list:
    """One column as the records' Python values (None where null)."""
    arr = cols.values[name]
    if kind == NS:
        out = (arr / 1e9).tolist()  # the same float as int(ns) / 1e9
    elif kind == BOOL:
        out = arr.astype(bool).tolist()
    elif kind == STR:
        out = [cols.strings[i] for i in arr.tolist()]
    elif kind == ADDR:
        out = [address_texts[i] for i in arr.tolist()]
    elif kind == ENDPOINT:
        out = [_endpoint(address_texts[i], p) for i, p in zip(arr.tolist(), cols.ports[name].tolist())]
    elif kind == MICROS:
        seconds = (arr / 1e6).tolist()  # the float round(x, 6) gives: the nearest to the decimal
        out = [row[:m] for row, m in zip(seconds, cols.lengths[name].tolist())]
    else:
        out = arr.tolist()
    missing = cols.null.get(name)
    if missing is not None:
        for i in np.flatnonzero(missing).tolist():  # a few of a column are None: no Python step for the others
            out[i] = None
    return out


def column_records(cols: FlowColumns) -> list[dict]:
    """The dict records of a block of columns."""
    address_texts = cols.address_strings()
    lists = [_values(cols, name, kind, address_texts) for name, kind, _ in FIELDS]
    names = [name for name, _, _ in FIELDS]
    common = [name for name, _, tcp_only in FIELDS if not tcp_only][:-1]  # up to "end", which comes last
    end_at = names.index("end")
    out = []
    for row, is_tcp in zip(zip(*lists), cols.tcp.tolist()):
        if is_tcp:
            out.append(dict(zip(names, row)))
        else:
            rec = dict(zip(common, row))
            rec["end"] = row[end_at]
            out.append(rec)
    return out


BLOCK = 2048  # flows turned into columns (and records) at a time: memory stays bounded


@dataclass
class FlowAnalysis:
    """Everything one pass learned about the flows of a capture. Made once the pass is over: it takes what the
    records read from the pass's ConnStates and FlowFacts (RecordTables), which release their tables."""

    flows: FlowTable
    states: InitVar[ConnStates]
    facts: InitVar[FlowFacts]
    completeness: np.ndarray | None
    warnings: list[str] = field(default_factory=list)
    tables: RecordTables = field(init=False)

    def __post_init__(self, states: ConnStates, facts: FlowFacts) -> None:
        self.tables = RecordTables.take(self.flows, states, facts)

    def __len__(self) -> int:
        return self.flows.count

    def columns(self, lo: int = 0, hi: int | None = None, lazy_texts: bool = False) -> FlowColumns:
        """The records of flows lo..hi-1 as columns (one array per key; see FlowColumns and FIELDS; lazy_texts: see
        flow_columns)."""
        return flow_columns(self.flows, self.tables, self.completeness, lo,
                            self.flows.count if hi is None else hi, lazy_texts)

    def columns_of(self, rows: np.ndarray) -> FlowColumns:
        """The records of the flows `rows` (sorted) as one block of columns (flow_columns_of)."""
        return flow_columns_of(self.flows, self.tables, self.completeness, rows)

    def iter_columns(self, block: int = BLOCK, lazy_texts: bool = False) -> Iterator[FlowColumns]:
        for lo in range(0, self.flows.count, block):
            yield self.columns(lo, lo + block, lazy_texts)

    def iter_records(self) -> Iterator[dict]:
        """One record per flow, in flow-table order, built a block at a time (stream them out for big captures)."""
        for cols in self.iter_columns():
            gc_was_on = gc.isenabled()
            gc.disable()  # a block makes ~100k small containers: the cyclic collector would double the time
            try:
                block = column_records(cols)
            finally:
                if gc_was_on:
                    gc.enable()
            yield from block

    def records(self) -> list[dict]:
        return list(self.iter_records())


def analyse_flows(path: str, tick: Callable[[], None] | None = None, idle_rst_seconds: float = 1.0,
                  **open_kwargs) -> FlowAnalysis:
    """One streaming pass over a capture: decode, flow table, Wireshark-style TCP analysis, Zeek states, facts."""
    from diagnose.pipeline import open_pass
    from diagnose.tcp.analysis import TcpAnalyzer

    run = open_pass(path, **open_kwargs)
    analyzer = TcpAnalyzer(run.flows)
    states = ConnStates()
    facts = FlowFacts(idle_rst_seconds)
    with run.capture:
        for chunk in run.chunks():
            rows = analyzer.update(chunk.table, chunk.buf)
            states.update(chunk.buf, chunk.table, run.flows.count)
            facts.update(chunk.table, run.flows.count, run.flows.tcp_streams, rows)
            if tick is not None:
                tick()
    return FlowAnalysis(run.flows, states, facts, analyzer.completeness[: run.flows.tcp_streams].copy(),
                        list(run.capture.info.warnings))


def collect_flow_records(path: str, tick: Callable[[], None] | None = None, **kwargs) -> tuple[list[dict], list[str]]:
    """(one record per flow, capture warnings): what `diagnose flows --json` prints."""
    result = analyse_flows(path, tick, **kwargs)
    return result.records(), result.warnings
