"""One JSON-ready record per flow: Zeek's conn.log names where Zeek has the fact, ours next to them.

    records, warnings = collect_flow_records(path)           # one streaming pass: decode, flows, TCP analysis, facts

Roles: the client is Zeek's originator of the conversation (the SYN sender, else decided by Zeek's heuristics), so
`orig_h`/`orig_p` and `client` agree; per-direction facts are named `*_client` / `*_server`. Times are seconds
(floats), frames are 1-based frame numbers, absent facts are None (e.g. no SYN seen: no MSS, no handshake RTT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import gc
from dataclasses import dataclass, field

import numpy as np

from diagnose.addresses import format_address
from diagnose.conn import burst
from diagnose.conn.facts import PHASE_NAMES, FlowFacts
from diagnose.conn.zeek import ConnStates, conn_record
from diagnose.flows import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, FlowTable

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}


def _address(ipv: int, hi: int, lo: int) -> str:
    if ipv == 4:  # the common case, without the ipaddress module's object per call
        lo &= 0xFFFFFFFF
        return f"{lo >> 24}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return format_address(ipv, hi, lo)


def _s(ns: int) -> float:
    return int(ns) / 1e9


def _endpoint(host: str, port: int | None) -> str:
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _initial_ttl(ttl: int) -> int:
    """The usual initial TTL a host started from (32, 64, 128 or 255): hops = initial - seen."""
    for start in (32, 64, 128, 255):
        if ttl <= start:
            return start
    return 255


def flow_record(conv: dict, zeek: dict | None, orig_dir: int | None, f: dict | None, t: dict | None,
                have_analysis: bool, completeness: int | None = None) -> dict:
    """The record of one conversation from plain rows (see FlowAnalysis.iter_records): its flow-table row, its Zeek
    record (ConnStates), the flow-table direction of Zeek's originator, its FLOW_DTYPE and TCP_FACTS_DTYPE rows."""
    proto = conv["proto"]
    ipv = conv["ipv"]
    cdir = orig_dir
    if cdir is None:
        cdir = conv["client"] if conv["client"] >= 0 else 0
    sdir = 1 - cdir
    ends = (("a_hi", "a_lo", "a_port"), ("b_hi", "b_lo", "b_port"))
    has_ports = proto in (PROTO_TCP, PROTO_UDP)
    client_h = _address(ipv, conv[ends[cdir][0]], conv[ends[cdir][1]])
    server_h = _address(ipv, conv[ends[sdir][0]], conv[ends[sdir][1]])
    client_p = conv[ends[cdir][2]] if has_ports else None
    server_p = conv[ends[sdir][2]] if has_ports else None
    rec: dict = {
        "stream": conv["stream"] if conv["stream"] >= 0 else None,
        "proto": PROTO_NAMES.get(proto, "unknown_transport"),
        "ip_proto": proto,
        "ts": _s(conv["first_ts"]),
        "orig_h": client_h,
        "orig_p": client_p if has_ports else (zeek["orig_p"] if zeek else None),
        "resp_h": server_h,
        "resp_p": server_p if has_ports else (zeek["resp_p"] if zeek else None),
    }
    for key in ("conn_state", "history", "duration", "orig_bytes", "resp_bytes", "missed_bytes", "orig_pkts",
                "orig_ip_bytes", "resp_pkts", "resp_ip_bytes"):
        rec[key] = zeek[key] if zeek else None
    rec.update({
        "client": _endpoint(client_h, client_p),
        "server": _endpoint(server_h, server_p),
        "first_frame": conv["first_frame"],
        "last_frame": conv["last_frame"],
        "flow_duration": _s(conv["last_ts"] - conv["first_ts"]),  # first to last packet (Zeek's may be null)
        "packets": sum(conv["pkts"]),
        "orig_wire_bytes": conv["bytes"][cdir],  # frame bytes on the wire, as the flow table counts them
        "resp_wire_bytes": conv["bytes"][sdir],
        "reused_ports": bool(conv["reused"]),
    })
    if f is not None and f["pkts"] > 0:
        rec["idle_max"] = _s(f["idle_max"]) if f["pkts"] > 1 else None
        rec["idle_max_frame"] = int(f["idle_max_frame"]) if f["pkts"] > 1 else None
    else:
        rec["idle_max"] = rec["idle_max_frame"] = None
    _icmp_facts(rec, f, cdir)
    if t is not None:
        _tcp_facts(rec, t, f, cdir, have_analysis)
        rec["completeness"] = completeness
    else:
        rec["end"] = None
    return rec


def _icmp_facts(rec: dict, f: np.void | None, cdir: int) -> None:
    n = int(f["icmp_count"]) if f is not None else 0
    rec["icmp_errors"] = n
    rec["icmp_unreachable"] = bool(n and f["icmp_unreach"] > 0)
    if n:
        rec["icmp_error_type"] = int(f["icmp_type"])
        rec["icmp_error_code"] = int(f["icmp_code"])
        rec["icmp_error_from"] = _address(int(f["icmp_ipv"]), f["icmp_src_hi"], f["icmp_src_lo"])
        rec["icmp_error_ttl"] = int(f["icmp_ttl"])
        rec["icmp_error_frame"] = int(f["icmp_frame"])
        rec["icmp_error_time"] = _s(f["icmp_ts"])
        rec["icmp_error_quotes"] = "client" if int(f["icmp_dir"]) == cdir else "server"
    else:
        for key in ("type", "code", "from", "ttl", "frame", "time", "quotes"):
            rec[f"icmp_error_{key}"] = None


def _sides(rec: dict, name: str, values, cdir: int, convert=int) -> None:
    rec[f"{name}_client"] = None if values[cdir] is None else convert(values[cdir])
    rec[f"{name}_server"] = None if values[1 - cdir] is None else convert(values[1 - cdir])


def _tcp_facts(rec: dict, t: np.void, f: np.void, cdir: int, have_analysis: bool) -> None:
    sdir = 1 - cdir
    syns = sum(t["syn_count"])
    rec["syn_count"] = syns
    first = int(t["syn_first_ts"])
    rec["syn_times"] = [round(_s(x - first), 6) for x in t["syn_times"][: min(syns, len(t["syn_times"]))]]
    rec["synack_seen"] = bool(t["synack_count"] > 0)
    rec["synack_count"] = int(t["synack_count"])
    rst_n = sum(t["rst_count"])
    rec["rst_seen"] = rst_n > 0
    hs_done = bool(t["hs_done"])
    if hs_done:
        outcome = "completed"
    elif syns == 0 and t["synack_count"] == 0:
        outcome = "not_seen"  # joined mid-stream
    elif rst_n and t["synack_count"] == 0 and int(t["rst_dir"]) != int(t["syn_dir"]):
        outcome = "refused"
    elif rst_n and int(t["rst_dir"]) == int(t["syn_dir"]) and t["synack_count"] == 0:
        outcome = "aborted"  # the client gave up with a RST
    elif t["synack_count"] == 0 and rec["icmp_errors"]:
        outcome = "icmp_error"
    elif t["synack_count"] == 0:
        outcome = "no_answer"
    else:
        outcome = "synack_not_acked"
    rec["handshake"] = outcome
    syn_ts = int(t["synack_syn_ts"])
    rec["synack_rtt"] = _s(t["synack_ts"] - syn_ts) if t["synack_count"] and syn_ts else None
    rec["handshake_rtt"] = _s(t["hs_ack_ts"] - syn_ts) if hs_done and syn_ts else None
    rec["handshake_ack_rtt"] = _s(t["hs_ack_ts"] - t["synack_ts"]) if hs_done and t["synack_count"] else None

    seen = t["opts_seen"]
    _sides(rec, "mss", [(int(t["mss"][d]) or None) if seen[d] else None for d in (0, 1)], cdir)
    _sides(rec, "wscale", [(int(t["ws"][d]) if t["ws"][d] >= 0 else None) if seen[d] else None for d in (0, 1)],
           cdir)
    _sides(rec, "sack", [bool(t["sack_perm"][d]) if seen[d] else None for d in (0, 1)], cdir, bool)
    _sides(rec, "timestamps", [bool(t["ts_opt"][d]) if seen[d] else None for d in (0, 1)], cdir, bool)
    both = bool(seen[0] and seen[1])
    rec["wscale_negotiated"] = bool(t["ws"][0] >= 0 and t["ws"][1] >= 0) if both else None
    rec["sack_negotiated"] = bool(t["sack_perm"][0] and t["sack_perm"][1]) if both else None
    rec["timestamps_negotiated"] = bool(t["ts_opt"][0] and t["ts_opt"][1]) if both else None

    _sides(rec, "data_packets", t["data_pkts"], cdir)
    _sides(rec, "oversize_segments", t["oversize"], cdir)
    _sides(rec, "zero_window_episodes", t["zw_count"], cdir)
    last = int(f["last_ts"])
    zw_time = [int(t["zw_time"][d]) + (last - int(t["zw_open"][d]) if t["zw_open"][d] else 0) for d in (0, 1)]
    _sides(rec, "zero_window_time", zw_time, cdir, _s)
    _sides(rec, "zero_window_open_at_end", [bool(t["zw_open"][d]) for d in (0, 1)], cdir, bool)
    _sides(rec, "zero_window_first_frame", [int(t["zw_frame"][d]) or None for d in (0, 1)], cdir)
    _sides(rec, "fin", [bool(t["fin"][d]) for d in (0, 1)], cdir, bool)

    if have_analysis:
        _sides(rec, "max_window", t["max_win"], cdir)
        _sides(rec, "max_bytes_in_flight", t["max_bif"], cdir)
        _sides(rec, "window_full", t["window_full"], cdir)
        _sides(rec, "window_limited", [bool(t["window_full"][d] > 0) for d in (0, 1)], cdir, bool)
        _sides(rec, "retransmissions", t["retrans"], cdir)
        _sides(rec, "duplicate_retransmissions", t["dup_retrans"], cdir)
        _sides(rec, "lost_segments", t["lost"], cdir)
        rates = [int(t["retrans"][d]) / int(t["data_pkts"][d]) if t["data_pkts"][d] else None for d in (0, 1)]
        _sides(rec, "retransmission_rate", rates, cdir, float)
        seg_b = [burst.burstiness_from_stats(*t["burst"][d * 2]) for d in (0, 1)]
        time_b = [burst.burstiness_from_stats(*t["burst"][d * 2 + 1]) for d in (0, 1)]
        _sides(rec, "retransmission_burstiness", seg_b, cdir, float)
        _sides(rec, "retransmission_time_burstiness", time_b, cdir, float)
        _sides(rec, "retransmission_pattern", [burst.pattern(int(t["retrans"][d]), seg_b[d]) for d in (0, 1)],
               cdir, str)
        total = sum(t["retrans"])
        dups = sum(t["dup_retrans"])
        rec["retransmissions_artefact"] = (dups == total) if total else None
    else:
        for name in ("max_window", "max_bytes_in_flight", "window_full", "window_limited", "retransmissions",
                     "duplicate_retransmissions", "lost_segments", "retransmission_rate",
                     "retransmission_burstiness", "retransmission_time_burstiness", "retransmission_pattern"):
            rec[f"{name}_client"] = rec[f"{name}_server"] = None
        rec["retransmissions_artefact"] = None
    rec["offload_suspected"] = sum(t["oversize"]) > 0

    rec["rst_count"] = rst_n
    if rst_n:
        rdir = int(t["rst_dir"])
        ttl = int(t["rst_ttl"])
        genuine = int(t["rst_genuine"])
        lo, hi = int(t["rst_ttl_min"]), int(t["rst_ttl_max"])
        rec["rst_sender"] = "client" if rdir == cdir else "server"
        rec["rst_frame"] = int(t["rst_frame"])
        rec["rst_time"] = _s(t["rst_ts"])
        rec["rst_phase"] = PHASE_NAMES[int(t["rst_phase"])]
        rec["rst_idle_before"] = _s(t["rst_idle"])
        rec["rst_bytes_client"] = int(t["rst_bytes"][cdir])
        rec["rst_bytes_server"] = int(t["rst_bytes"][sdir])
        rec["rst_ttl"] = ttl
        rec["rst_hops"] = _initial_ttl(ttl) - ttl
        rec["rst_ip_id"] = int(t["rst_ipid"]) if t["rst_ipv"] == 4 else None
        rec["rst_sender_ttl_min"] = lo if genuine else None
        rec["rst_sender_ttl_max"] = hi if genuine else None
        rec["rst_sender_packets"] = genuine
        rec["rst_ttl_mismatch"] = (not lo <= ttl <= hi) if genuine else None
        rec["rst_ip_id_zero"] = bool(t["rst_ipv"] == 4 and t["rst_ipid"] == 0 and t["rst_ipid_nonzero"] > 0) \
            if genuine else None
        rec["rst_forged"] = rec["rst_ttl_mismatch"]
        rec["end"] = "rst_client" if rdir == cdir else "rst_server"
    else:
        for key in ("sender", "frame", "time", "phase", "idle_before", "bytes_client", "bytes_server", "ttl", "hops",
                    "ip_id", "sender_ttl_min", "sender_ttl_max", "sender_packets", "ttl_mismatch", "ip_id_zero",
                    "forged"):
            rec[f"rst_{key}"] = None
        if t["fin"][0] and t["fin"][1]:
            rec["end"] = "fin_both"
        elif t["fin"][cdir]:
            rec["end"] = "fin_client"
        elif t["fin"][sdir]:
            rec["end"] = "fin_server"
        else:
            rec["end"] = "open"


class _Rows:
    """Rows [start, stop) of a structured array as plain Python values (one tolist per field), read as dicts: far
    faster than numpy records one value at a time, and bounded in memory when taken a block at a time."""

    def __init__(self, arr: np.ndarray, start: int = 0, stop: int | None = None):
        stop = len(arr) if stop is None else min(stop, len(arr))
        self.start = start
        self.n = max(stop - start, 0)
        part = arr[start:stop]
        self.names = arr.dtype.names
        self.cols = [part[name].tolist() for name in self.names]

    def __contains__(self, i: int) -> bool:
        return self.start <= i < self.start + self.n

    def __getitem__(self, i: int) -> dict:
        k = i - self.start
        return dict(zip(self.names, (col[k] for col in self.cols)))


BLOCK = 2048  # flows converted to Python values at a time


@dataclass
class FlowAnalysis:
    """Everything one pass learned about the flows of a capture."""

    flows: FlowTable
    states: ConnStates
    facts: FlowFacts
    completeness: np.ndarray | None
    warnings: list[str] = field(default_factory=list)

    def iter_records(self) -> Iterator[dict]:
        """One record per flow, in flow-table order, built a block at a time (stream them out for big captures)."""
        all_convs = self.flows.conversations
        for lo in range(0, len(all_convs), BLOCK):
            gc_was_on = gc.isenabled()
            gc.disable()  # a block makes ~100k small containers: the cyclic collector would double the time
            try:
                block = list(self._block(all_convs, lo, min(lo + BLOCK, len(all_convs))))
            finally:
                if gc_was_on:
                    gc.enable()
            yield from block

    def _block(self, all_convs: np.ndarray, lo: int, hi: int) -> Iterator[dict]:
        convs = _Rows(all_convs, lo, hi)
        conns = _Rows(self.states.conns, lo, hi)
        flows = _Rows(self.facts.flows, lo, hi)
        streams = all_convs["stream"][lo:hi][all_convs["proto"][lo:hi] == PROTO_TCP]
        s_lo, s_hi = (int(streams.min()), int(streams.max()) + 1) if len(streams) else (0, 0)
        tcp_facts = _Rows(self.facts.tcp, s_lo, s_hi)
        comp = self.completeness[s_lo:s_hi].tolist() if self.completeness is not None else None
        tcp_ids = [conns.cols[conns.names.index("tcp")][k] for k in range(conns.n)]
        used = [x for x in tcp_ids if x >= 0]
        tcp_states = _Rows(self.states.tcp, min(used), max(used) + 1) if used else None
        for i in range(lo, hi):
            conv = convs[i]
            zeek = orig_dir = None
            if i in conns:
                c = conns[i]
                if c["kind"]:
                    zeek = conn_record(c, tcp_states[c["tcp"]] if c["tcp"] >= 0 else None, addresses=False)
                    orig_dir = c["orig"]
            f = flows[i] if i in flows else None
            t = None
            stream = conv["stream"]
            if conv["proto"] == PROTO_TCP and stream in tcp_facts:
                t = tcp_facts[stream]
                if t["conv"] < 0:
                    t = None
            completeness = comp[stream - s_lo] if t is not None and comp is not None and \
                stream - s_lo < len(comp) else None
            yield flow_record(conv, zeek, orig_dir, f, t, self.facts.have_analysis, completeness)

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
    return FlowAnalysis(run.flows, states, facts, analyzer.completeness.copy(), list(run.capture.info.warnings))


def collect_flow_records(path: str, tick: Callable[[], None] | None = None, **kwargs) -> tuple[list[dict], list[str]]:
    """(one record per flow, capture warnings): what `diagnose flows --json` prints."""
    result = analyse_flows(path, tick, **kwargs)
    return result.records(), result.warnings
