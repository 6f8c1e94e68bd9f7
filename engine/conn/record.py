"""One JSON-ready record per flow: Zeek's conn.log names where Zeek has the fact, ours next to them.

    records, warnings = collect_flow_records(path)           # one streaming pass: decode, flows, TCP analysis, facts
    cols = analysis.columns(lo, hi)                          # the same facts of flows lo..hi-1, one array per key

Roles: the client is Zeek's originator of the conversation (the SYN sender, else decided by Zeek's heuristics), so
`orig_h`/`orig_p` and `client` agree; per-direction facts are named `*_client` / `*_server`. Times are seconds
(floats), frames are 1-based frame numbers, absent facts are None (e.g. no SYN seen: no MSS, no handshake RTT).

Every field is defined once, column-wise with numpy (FlowAnalysis.columns); the dict records are read off the
columns a block at a time, and `diagnose flows --json` writes the columns without making the dicts at all
(diagnose.report.jsonkernel). TCP records carry more keys than the others (FIELDS marks them), in the same order.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from diagnose.addresses import format_address
from diagnose.conn.facts import FLOW_DTYPE, PHASE_NAMES, SYN_TIMES, TCP_FACTS_DTYPE, FlowFacts
from diagnose.conn.zeek import (CONN_DTYPE, K_ICMP, K_TCP, K_UDP, KIND_NAMES, RESET, SYN_SENT, INACTIVE,
                                TCP_DTYPE, ConnStates, conn_state)
from diagnose.flows import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, FlowTable
from diagnose.conn import burst

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

# strings every block may use, first in FlowColumns.strings (their indices are fixed)
_NAMES = ("client", "server", "tcp", "udp", "icmp", "unknown_transport", "completed", "not_seen", "refused",
          "aborted", "icmp_error", "no_answer", "synack_not_acked", "few", "bursty", "uniform", "rst_client",
          "rst_server", "fin_both", "fin_client", "fin_server", "open", *[p for p in PHASE_NAMES if p])
_NAME_INDEX = {name: i for i, name in enumerate(_NAMES)}
_PROTO_INDEX = np.full(256, _NAME_INDEX["unknown_transport"], np.int32)
for _proto, _name in PROTO_NAMES.items():
    _PROTO_INDEX[_proto] = _NAME_INDEX[_name]
_PHASE_INDEX = np.array([_NAME_INDEX.get(p, -1) if p else -1 for p in PHASE_NAMES], np.int32)


@dataclass
class FlowColumns:
    """The records of flows lo..hi-1 as columns: values[key] (one entry per flow, kinds in FIELDS), null[key] (True
    where the record holds None; keys that are never None have no mask), tcp (the record carries the TCP-only keys;
    their columns hold zeros elsewhere)."""

    lo: int
    values: dict[str, np.ndarray]
    null: dict[str, np.ndarray]
    tcp: np.ndarray
    strings: list[str]  # STR columns index into this
    addresses: np.ndarray  # uint64 (k, 3): ipv, hi, lo; ADDR/ENDPOINT columns index into it
    ports: dict[str, np.ndarray]  # ENDPOINT columns: the port, -1 for none
    lengths: dict[str, np.ndarray]  # MICROS columns: entries used per flow

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


def _initial_ttl(ttl: np.ndarray) -> np.ndarray:
    """The usual initial TTL a host started from (32, 64, 128 or 255): hops = initial - seen."""
    return np.select([ttl <= 32, ttl <= 64, ttl <= 128], [32, 64, 128], 255)


def _padded(arr: np.ndarray, lo: int, hi: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Rows lo..hi-1 of arr, zero rows past its end; and which rows exist."""
    out = np.zeros(hi - lo, dtype)
    have = min(max(len(arr) - lo, 0), hi - lo)
    out[:have] = arr[lo : lo + have]
    present = np.zeros(hi - lo, bool)
    present[:have] = True
    return out, present


def _zeek_sizes(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Zeek's TCP_Endpoint::Size of endpoint e of each TCP_DTYPE row, modulo 2**64 (as zeek._py_size)."""
    k = np.arange(len(t))
    prev, state, peer = t["prev_state"][k, e], t["state"][k, e], t["state"][k, 1 - e]
    start = t["start_seq"][k, e]
    ack64 = (t["ack_wraps"][k, e] << 32) + t["ack_seq"][k, e]
    last64 = (t["seq_wraps"][k, e] << 32) + t["last_seq"][k, e]
    size = np.maximum(last64, ack64) - start
    size -= size != 0
    size -= (t["fin_cnt"][k, e] > 0) & (size != 0)
    data_acked = (ack64 != start) & (ack64 != start + 1)
    size[(prev == SYN_SENT) & (state == RESET) & (peer == INACTIVE) & data_acked] = 0
    return size.view(np.uint64)


def _burstiness(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """burst.burstiness_from_stats over rows of (count, mean, M2): (B, None mask)."""
    count, mean, m2 = stats[:, 0], stats[:, 1], stats[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(np.maximum(m2, 0.0) / count)
        none = (count < 2) | ~(sigma + mean > 0)
        b = np.where(none, 0.0, (sigma - mean) / (sigma + mean))
    return b, none


def _syn_micros(delta: np.ndarray) -> np.ndarray:
    """round(delta / 1e9, 6) in microseconds, for ns deltas: the nearest microsecond, except at an exact half
    (and for huge deltas), where Python's rounding of the float seconds decides."""
    micros = (delta + 500) // 1000
    odd = (delta % 1000 == 500) | (np.abs(delta) >= 10**15)
    for k in zip(*np.nonzero(odd)):
        seconds = round(int(delta[k]) / 1e9, 6)
        micros[k] = int(Decimal(repr(seconds)) * 10**6)
    return micros


def _distinct_addresses(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of (ipv, hi, lo) keys, index of each key's row): IPv6 rows need all three columns, the
    others fit one integer (sorting one integer column is far faster than sorting rows)."""
    v6 = keys[:, 0] == 6
    inverse = np.empty(len(keys), np.int64)
    narrow = np.nonzero(~v6)[0]
    packed = (keys[narrow, 0] << np.uint64(32)) | (keys[narrow, 2] & np.uint64(0xFFFFFFFF))
    distinct, inverse[narrow] = np.unique(packed, return_inverse=True)
    rows = [np.stack([distinct >> np.uint64(32), np.zeros_like(distinct), distinct & np.uint64(0xFFFFFFFF)], axis=1)]
    wide = np.nonzero(v6)[0]
    if len(wide):
        distinct6, inverse6 = np.unique(keys[wide], axis=0, return_inverse=True)
        inverse[wide] = inverse6.ravel() + len(distinct)
        rows.append(distinct6)
    return np.concatenate(rows), inverse


class _Strings:
    """Distinct strings of a block, the fixed names first."""

    def __init__(self):
        self.items: list[str] = list(_NAMES)
        self.index: dict[str, int] = dict(_NAME_INDEX)

    def add(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.items)
            self.items.append(text)
        return i


def flow_columns(flows: FlowTable, states: ConnStates, facts: FlowFacts, completeness: np.ndarray | None,
                 lo: int, hi: int) -> FlowColumns:
    """The records of conversations lo..hi-1 (see FlowAnalysis.columns)."""
    convs = flows.conversations[lo:hi]
    n = len(convs)
    hi = lo + n
    k = np.arange(n)
    v: dict[str, np.ndarray] = {}
    null: dict[str, np.ndarray] = {}
    strings = _Strings()
    none = np.zeros(n, bool)

    def put(name: str, values, missing=None) -> None:
        v[name] = np.asarray(values)
        if missing is not None:
            null[name] = np.asarray(missing, bool) | none

    def sides(name: str, per_dir: np.ndarray, missing: np.ndarray | None = None) -> None:
        """A per-direction fact (columns indexed [flow, dir]) as its _client and _server keys."""
        put(f"{name}_client", per_dir[k, cdir], None if missing is None else missing[k, cdir])
        put(f"{name}_server", per_dir[k, sdir], None if missing is None else missing[k, sdir])

    # ---- the conversation, Zeek's view of it, its facts ------------------------------------------------------------
    c, _ = _padded(states.conns, lo, hi, CONN_DTYPE)
    zeek = c["kind"] != 0
    f, _ = _padded(facts.flows, lo, hi, FLOW_DTYPE)
    proto = convs["proto"].astype(np.int64)
    stream = convs["stream"].astype(np.int64)
    has_t = (proto == PROTO_TCP) & (stream >= 0) & (stream < facts.n_tcp)
    t = np.zeros(n, TCP_FACTS_DTYPE)
    t[has_t] = facts.tcp[stream[has_t]]
    has_t &= t["conv"] >= 0
    t[~has_t] = 0
    orig = c["orig"].astype(np.int64)
    cdir = np.where(zeek, orig, np.where(convs["client"] >= 0, convs["client"], 0)).astype(np.int64)
    sdir = 1 - cdir

    # ---- addresses: each distinct (ipv, hi, lo) once per block -----------------------------------------------------
    ipv = convs["ipv"].astype(np.uint64)
    ends_hi = np.stack([convs["a_hi"], convs["b_hi"]], axis=1)
    ends_lo = np.stack([convs["a_lo"], convs["b_lo"]], axis=1)
    icmp_ipv = f["icmp_ipv"].astype(np.uint64)
    keys = np.concatenate([
        np.stack([ipv, ends_hi[k, cdir], ends_lo[k, cdir]], axis=1),
        np.stack([ipv, ends_hi[k, sdir], ends_lo[k, sdir]], axis=1),
        np.stack([icmp_ipv, f["icmp_src_hi"], f["icmp_src_lo"]], axis=1),
    ])
    addresses, inverse = _distinct_addresses(keys)
    inverse = inverse.reshape(3, n).astype(np.int32)

    # ---- the flow table's facts -------------------------------------------------------------------------------------
    has_ports = (proto == PROTO_TCP) | (proto == PROTO_UDP)
    ports = np.stack([convs["a_port"], convs["b_port"]], axis=1).astype(np.int64)
    zports = c["port"].astype(np.int64)
    client_p, server_p = ports[k, cdir], ports[k, sdir]
    put("stream", stream, stream < 0)
    put("proto", _PROTO_INDEX[proto])
    put("ip_proto", proto)
    put("ts", convs["first_ts"])
    put("orig_h", inverse[0])
    put("orig_p", np.where(has_ports, client_p, zports[k, orig]), ~has_ports & ~zeek)
    put("resp_h", inverse[1])
    put("resp_p", np.where(has_ports, server_p, zports[k, 1 - orig]), ~has_ports & ~zeek)

    # ---- Zeek's conn.log ------------------------------------------------------------------------------------------
    kind = c["kind"].astype(np.int64)
    o_size = np.zeros(n, np.uint64)
    r_size = np.zeros(n, np.uint64)
    o_state = np.zeros(n, np.int64)
    r_state = np.zeros(n, np.int64)
    tcp_rows = np.nonzero((kind == K_TCP) & (c["tcp"] >= 0))[0]
    if len(tcp_rows):
        z = states.tcp[c["tcp"][tcp_rows]]
        zo = orig[tcp_rows]
        o_size[tcp_rows] = _zeek_sizes(z, zo)
        r_size[tcp_rows] = _zeek_sizes(z, 1 - zo)
        o_state[tcp_rows] = z["state"][np.arange(len(tcp_rows)), zo]
        r_state[tcp_rows] = z["state"][np.arange(len(tcp_rows)), 1 - zo]
    other = (kind == K_UDP) | (kind == K_ICMP)
    zsize = c["size"]
    o_state[other] = zsize[k, orig][other] >= 0
    r_state[other] = zsize[k, 1 - orig][other] >= 0
    o_size[other] = np.maximum(zsize[k, orig][other], 0)
    r_size[other] = np.maximum(zsize[k, 1 - orig][other], 0)
    width = c["hist"].shape[1]
    raw = np.ascontiguousarray(c["hist"]).view(f"S{width}").ravel()  # NUL padding drops off
    distinct, hist_of = np.unique(raw, return_inverse=True)
    hist_text = [h.decode("ascii") for h in distinct.tolist()]
    hist_idx = np.array([strings.add(h) for h in hist_text], np.int32)[hist_of.ravel()]
    empty = (o_size == 0) & (r_size == 0)  # conn_state looks at sizes only to tell them zero
    combo = (hist_of.ravel().astype(np.int64) << 16) | (kind << 8) | (o_state << 5) | (r_state << 2) | empty
    combos, combo_of = np.unique(combo, return_inverse=True)
    state_idx = np.array([strings.add(conn_state(kd, os_, rs, 0 if e else 1, 0 if e else 1, hist_text[h]))
                          if kd else -1 for kd, os_, rs, e, h in
                          zip(((combos >> 8) & 255).tolist(), ((combos >> 5) & 7).tolist(),
                              ((combos >> 2) & 7).tolist(), (combos & 1).tolist(), (combos >> 16).tolist())],
                         np.int32)[combo_of.ravel()]
    duration = c["last"] - c["start"]
    timed = zeek & (duration > 0)
    put("conn_state", state_idx, ~zeek)
    put("history", hist_idx, ~zeek | (c["hist_len"] == 0))
    put("duration", duration, ~timed)
    put("orig_bytes", o_size, ~timed)
    put("resp_bytes", r_size, ~timed)
    put("missed_bytes", c["missed"], ~zeek)
    put("orig_pkts", c["pkts"][k, orig], ~zeek)
    put("orig_ip_bytes", c["ip_bytes"][k, orig], ~zeek)
    put("resp_pkts", c["pkts"][k, 1 - orig], ~zeek)
    put("resp_ip_bytes", c["ip_bytes"][k, 1 - orig], ~zeek)

    # ---- ours -----------------------------------------------------------------------------------------------------
    put("client", inverse[0])
    put("server", inverse[1])
    put("first_frame", convs["first_frame"])
    put("last_frame", convs["last_frame"])
    put("flow_duration", convs["last_ts"] - convs["first_ts"])
    put("packets", convs["pkts"].sum(axis=1))
    put("orig_wire_bytes", convs["bytes"][k, cdir])  # frame bytes on the wire, as the flow table counts them
    put("resp_wire_bytes", convs["bytes"][k, sdir])
    put("reused_ports", convs["reused"] != 0)
    put("idle_max", f["idle_max"], f["pkts"] <= 1)
    put("idle_max_frame", f["idle_max_frame"], f["pkts"] <= 1)
    icmp = f["icmp_count"].astype(np.int64)
    no_icmp = icmp == 0
    put("icmp_errors", icmp)
    put("icmp_unreachable", (icmp > 0) & (f["icmp_unreach"] > 0))
    put("icmp_error_type", f["icmp_type"], no_icmp)
    put("icmp_error_code", f["icmp_code"], no_icmp)
    put("icmp_error_from", inverse[2], no_icmp)
    put("icmp_error_ttl", f["icmp_ttl"], no_icmp)
    put("icmp_error_frame", f["icmp_frame"], no_icmp)
    put("icmp_error_time", f["icmp_ts"], no_icmp)
    put("icmp_error_quotes", np.where(f["icmp_dir"] == cdir, 0, 1), no_icmp)  # "client" / "server"

    # ---- TCP: handshake and options -------------------------------------------------------------------------------
    syns = t["syn_count"].sum(axis=1).astype(np.int64)
    synacks = t["synack_count"].astype(np.int64)
    rst_n = t["rst_count"].sum(axis=1).astype(np.int64)
    hs_done = t["hs_done"] != 0
    put("syn_count", syns)
    used = np.arange(SYN_TIMES)[None, :] < np.minimum(syns, SYN_TIMES)[:, None]
    put("syn_times", _syn_micros(np.where(used, t["syn_times"] - t["syn_first_ts"][:, None], 0)))
    put("synack_seen", synacks > 0)
    put("synack_count", synacks)
    put("rst_seen", rst_n > 0)
    rst_dir = t["rst_dir"].astype(np.int64)
    syn_dir = t["syn_dir"].astype(np.int64)
    outcomes = [
        (hs_done, "completed"),
        ((syns == 0) & (synacks == 0), "not_seen"),  # joined mid-stream
        ((rst_n > 0) & (synacks == 0) & (rst_dir != syn_dir), "refused"),
        ((rst_n > 0) & (rst_dir == syn_dir) & (synacks == 0), "aborted"),  # the client gave up with a RST
        ((synacks == 0) & (icmp > 0), "icmp_error"),
        (synacks == 0, "no_answer"),
    ]
    put("handshake", np.select([m for m, _ in outcomes], [_NAME_INDEX[o] for _, o in outcomes],
                               _NAME_INDEX["synack_not_acked"]).astype(np.int32))
    syn_ts = t["synack_syn_ts"]
    put("synack_rtt", t["synack_ts"] - syn_ts, ~((synacks > 0) & (syn_ts != 0)))
    put("handshake_rtt", t["hs_ack_ts"] - syn_ts, ~(hs_done & (syn_ts != 0)))
    put("handshake_ack_rtt", t["hs_ack_ts"] - t["synack_ts"], ~(hs_done & (synacks > 0)))
    unseen = t["opts_seen"] == 0
    sides("mss", t["mss"], unseen | (t["mss"] == 0))
    sides("wscale", t["ws"], unseen | (t["ws"] < 0))
    sides("sack", t["sack_perm"] != 0, unseen)
    sides("timestamps", t["ts_opt"] != 0, unseen)
    not_both = unseen.any(axis=1)
    put("wscale_negotiated", (t["ws"] >= 0).all(axis=1), not_both)
    put("sack_negotiated", (t["sack_perm"] != 0).all(axis=1), not_both)
    put("timestamps_negotiated", (t["ts_opt"] != 0).all(axis=1), not_both)

    # ---- TCP: transfer ----------------------------------------------------------------------------------------------
    sides("data_packets", t["data_pkts"])
    sides("oversize_segments", t["oversize"])
    sides("zero_window_episodes", t["zw_count"])
    open_zw = t["zw_open"] != 0
    sides("zero_window_time", t["zw_time"] + np.where(open_zw, f["last_ts"][:, None] - t["zw_open"], 0))
    sides("zero_window_open_at_end", open_zw)
    sides("zero_window_first_frame", t["zw_frame"], t["zw_frame"] == 0)
    sides("fin", t["fin"] != 0)
    no_analysis = np.full((n, 2), not facts.have_analysis)
    sides("max_window", t["max_win"], no_analysis)
    sides("max_bytes_in_flight", t["max_bif"], no_analysis)
    sides("window_full", t["window_full"], no_analysis)
    sides("window_limited", t["window_full"] > 0, no_analysis)
    sides("retransmissions", t["retrans"], no_analysis)
    sides("duplicate_retransmissions", t["dup_retrans"], no_analysis)
    sides("lost_segments", t["lost"], no_analysis)
    data = t["data_pkts"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(data > 0, t["retrans"] / np.maximum(data, 1), 0.0)
    sides("retransmission_rate", rate, no_analysis | (data == 0))
    seg_b, seg_none = _burstiness(t["burst"][:, [0, 2]].reshape(-1, 3))
    time_b, time_none = _burstiness(t["burst"][:, [1, 3]].reshape(-1, 3))
    seg_b, seg_none, time_b, time_none = (x.reshape(n, 2) for x in (seg_b, seg_none, time_b, time_none))
    sides("retransmission_burstiness", seg_b, no_analysis | seg_none)
    sides("retransmission_time_burstiness", time_b, no_analysis | time_none)
    retrans = t["retrans"]
    pattern = np.where(seg_none | (retrans < burst.MIN_EVENTS), _NAME_INDEX["few"],
                       np.where(seg_b >= burst.BURSTY, _NAME_INDEX["bursty"], _NAME_INDEX["uniform"]))
    sides("retransmission_pattern", pattern.astype(np.int32), no_analysis | (retrans == 0))
    total = retrans.sum(axis=1)
    put("retransmissions_artefact", t["dup_retrans"].sum(axis=1) == total,
        (total == 0) | (not facts.have_analysis))
    put("offload_suspected", t["oversize"].sum(axis=1) > 0)

    # ---- TCP: the RST and how the flow ended ----------------------------------------------------------------------
    no_rst = rst_n == 0
    genuine = t["rst_genuine"]
    not_genuine = no_rst | (genuine == 0)
    ttl = t["rst_ttl"].astype(np.int64)
    ttl_lo = t["rst_ttl_min"].astype(np.int64)
    ttl_hi = t["rst_ttl_max"].astype(np.int64)
    ipv4 = t["rst_ipv"] == 4
    rst_by_client = rst_dir == cdir
    phase = _PHASE_INDEX[t["rst_phase"].astype(np.int64)]
    put("rst_count", rst_n)
    put("rst_sender", np.where(rst_by_client, 0, 1), no_rst)
    put("rst_frame", t["rst_frame"], no_rst)
    put("rst_time", t["rst_ts"], no_rst)
    put("rst_phase", phase, no_rst | (phase < 0))
    put("rst_idle_before", t["rst_idle"], no_rst)
    put("rst_bytes_client", t["rst_bytes"][k, cdir], no_rst)
    put("rst_bytes_server", t["rst_bytes"][k, sdir], no_rst)
    put("rst_ttl", ttl, no_rst)
    put("rst_hops", _initial_ttl(ttl) - ttl, no_rst)
    put("rst_ip_id", t["rst_ipid"], no_rst | ~ipv4)
    put("rst_sender_ttl_min", ttl_lo, not_genuine)
    put("rst_sender_ttl_max", ttl_hi, not_genuine)
    put("rst_sender_packets", genuine, no_rst)
    mismatch = (ttl < ttl_lo) | (ttl > ttl_hi)  # a RST at another hop count than its sender's packets: forged
    put("rst_ttl_mismatch", mismatch, not_genuine)
    put("rst_ip_id_zero", ipv4 & (t["rst_ipid"] == 0) & (t["rst_ipid_nonzero"] > 0), not_genuine)
    put("rst_forged", mismatch, not_genuine)
    fin = t["fin"] != 0
    end = np.select([~no_rst & rst_by_client, ~no_rst, fin.all(axis=1), fin[k, cdir], fin[k, sdir]],
                    [_NAME_INDEX[e] for e in ("rst_client", "rst_server", "fin_both", "fin_client", "fin_server")],
                    _NAME_INDEX["open"])
    put("end", end.astype(np.int32), ~has_t)
    if completeness is None or len(completeness) == 0:
        put("completeness", np.zeros(n, np.int64), np.ones(n, bool))
    else:
        known = stream < len(completeness)
        put("completeness", np.where(known, completeness[np.minimum(stream, len(completeness) - 1)], 0)
            .astype(np.int64), ~known)

    values = {name: v[name] for name, _, _ in FIELDS}
    return FlowColumns(lo, values, null, has_t, strings.items, addresses,
                       {"client": np.where(has_ports, client_p, -1), "server": np.where(has_ports, server_p, -1)},
                       {"syn_times": np.minimum(syns, SYN_TIMES) * has_t})


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
    if missing is not None and missing.any():
        out = [None if m else x for x, m in zip(out, missing.tolist())]
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
    """Everything one pass learned about the flows of a capture."""

    flows: FlowTable
    states: ConnStates
    facts: FlowFacts
    completeness: np.ndarray | None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.flows.count

    def columns(self, lo: int = 0, hi: int | None = None) -> FlowColumns:
        """The records of flows lo..hi-1 as columns (one array per key; see FlowColumns and FIELDS)."""
        return flow_columns(self.flows, self.states, self.facts, self.completeness, lo,
                            self.flows.count if hi is None else hi)

    def iter_columns(self, block: int = BLOCK) -> Iterator[FlowColumns]:
        for lo in range(0, self.flows.count, block):
            yield self.columns(lo, lo + block)

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
