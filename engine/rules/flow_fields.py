"""`flow.*` fields: the per-flow facts of diagnose.conn (one record per conversation) as display-filter fields.

A flow rule's `when` runs on a context with one row per conversation; these extractors read the columns of the
flow records attached to it (`ctx.extra["flows"]`, a FlowColumns). Column arrays are built on first use, only for
the facts a loaded rule reads. The names are the record's keys (Zeek's conn.log names where Zeek has the fact):
`flow.conn_state`, `flow.syn_count`, `flow.rst_idle_before`, `flow.retransmission_rate_client`, ...

Units follow the display-filter types: durations are reltime (a filter writes seconds: `flow.idle_max > 300`),
times are absolute, rates are fractions (0.047 = 4.7 %). Message templates see the record itself: durations and
times as float seconds.
"""

from __future__ import annotations

import numpy as np

from diagnose.errors import DiagnoseError
from diagnose.fields import FieldType as T, Occurrence, lookup, register
from diagnose.fields.context import Releasable
from diagnose.fields.registry import Field

SIDES = ("client", "server")

# key, type, description ("{side}" entries exist as KEY_client and KEY_server)
FLOW_FACTS: list[tuple[str, T, str]] = [
    ("stream", T.UINT, "tcp.stream / udp.stream index of the conversation"),
    ("proto", T.STRING, "transport: tcp, udp or icmp"),
    ("ip_proto", T.UINT, "IP protocol number"),
    ("ts", T.TIME, "time of the first packet"),
    ("orig_h", T.STRING, "client (Zeek's originator) address"),
    ("orig_p", T.UINT, "client port"),
    ("resp_h", T.STRING, "server (responder) address"),
    ("resp_p", T.UINT, "server port"),
    ("conn_state", T.STRING, "Zeek's connection state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH"),
    ("history", T.STRING, "Zeek's history letters (upper case: client, lower case: server)"),
    ("duration", T.RELTIME, "time from the first to the last packet (Zeek's duration)"),
    ("orig_bytes", T.UINT, "payload bytes the client sent (Zeek, from sequence numbers)"),
    ("resp_bytes", T.UINT, "payload bytes the server sent"),
    ("missed_bytes", T.UINT, "bytes in content gaps: data acknowledged but never seen"),
    ("orig_pkts", T.UINT, "packets the client sent"),
    ("orig_ip_bytes", T.UINT, "IP bytes the client sent"),
    ("resp_pkts", T.UINT, "packets the server sent"),
    ("resp_ip_bytes", T.UINT, "IP bytes the server sent"),
    ("client", T.STRING, "client endpoint, address:port"),
    ("server", T.STRING, "server endpoint, address:port"),
    ("first_frame", T.UINT, "frame number of the first packet"),
    ("last_frame", T.UINT, "frame number of the last packet"),
    ("packets", T.UINT, "packets of the conversation"),
    ("reused_ports", T.BOOL, "started by a SYN reusing the ports of an earlier conversation"),
    ("idle_max", T.RELTIME, "longest silence between two packets of the flow"),
    ("idle_max_frame", T.UINT, "the packet that ended the longest silence"),
    ("icmp_errors", T.UINT, "ICMP errors quoting a packet of this flow"),
    ("icmp_unreachable", T.BOOL, "one of them is destination unreachable"),
    ("icmp_error_type", T.UINT, "ICMP type of the first such error"),
    ("icmp_error_code", T.UINT, "ICMP code of the first such error"),
    ("icmp_error_from", T.STRING, "who sent it (a router or firewall when not the server)"),
    ("icmp_error_ttl", T.UINT, "its TTL"),
    ("icmp_error_frame", T.UINT, "its frame number"),
    ("icmp_error_time", T.TIME, "its time"),
    ("icmp_error_quotes", T.STRING, "whose packet it quotes: client or server"),
    ("syn_count", T.UINT, "pure SYNs (first and retransmitted)"),
    ("synack_seen", T.BOOL, "a SYN-ACK was seen"),
    ("synack_count", T.UINT, "SYN-ACKs"),
    ("rst_seen", T.BOOL, "a RST was seen"),
    ("handshake", T.STRING, "completed | no_answer | refused | icmp_error | aborted | synack_not_acked | not_seen"),
    ("synack_rtt", T.RELTIME, "SYN -> SYN-ACK (the network round trip at a client-side capture point)"),
    ("handshake_rtt", T.RELTIME, "SYN -> the ACK completing the handshake (Wireshark's iRTT)"),
    ("handshake_ack_rtt", T.RELTIME, "SYN-ACK -> ACK"),
    ("mss_{side}", T.UINT, "MSS option in the side's SYN"),
    ("wscale_{side}", T.UINT, "window scale shift in the side's SYN (absent: not offered)"),
    ("sack_{side}", T.BOOL, "SACK permitted in the side's SYN"),
    ("timestamps_{side}", T.BOOL, "TCP timestamps in the side's SYN"),
    ("wscale_negotiated", T.BOOL, "both SYNs carried window scaling"),
    ("sack_negotiated", T.BOOL, "both SYNs permitted SACK"),
    ("timestamps_negotiated", T.BOOL, "both SYNs carried timestamps"),
    ("data_packets_{side}", T.UINT, "segments with payload the side sent"),
    ("oversize_segments_{side}", T.UINT, "segments above the peer's MSS (offload artefacts)"),
    ("zero_window_episodes_{side}", T.UINT, "times the side advertised a zero window"),
    ("zero_window_time_{side}", T.RELTIME, "total time the side's window stayed zero"),
    ("zero_window_open_at_end_{side}", T.BOOL, "the side's window was still zero at the end"),
    ("zero_window_first_frame_{side}", T.UINT, "first zero-window frame of the side"),
    ("fin_{side}", T.BOOL, "the side sent a FIN"),
    ("max_window_{side}", T.UINT, "largest (scaled) window the side advertised"),
    ("max_bytes_in_flight_{side}", T.UINT, "most unacknowledged bytes the side had outstanding"),
    ("window_full_{side}", T.UINT, "segments of the side that filled the peer's window (tcp.analysis.window_full)"),
    ("window_limited_{side}", T.BOOL, "the side's sending was limited by the peer's window"),
    ("retransmissions_{side}", T.UINT, "retransmitted segments the side sent (fast and spurious included)"),
    ("duplicate_retransmissions_{side}", T.UINT, "of those, byte-identical copies within 5 ms (capture artefacts)"),
    ("lost_segments_{side}", T.UINT, "gaps before segments of the side (previous segment not captured)"),
    ("retransmission_rate_{side}", T.FLOAT, "retransmissions / data segments of the side (a fraction)"),
    ("retransmission_burstiness_{side}", T.FLOAT, "burstiness of the side's retransmissions on the segment clock "
     "(diagnose.conn.burst: > 0 bursty, about 0 uniform)"),
    ("retransmission_time_burstiness_{side}", T.FLOAT, "the same on the time clock"),
    ("retransmission_pattern_{side}", T.STRING, "bursty | uniform | few"),
    ("retransmissions_artefact", T.BOOL, "every retransmission of the flow is a duplicated frame (capture artefact)"),
    ("offload_suspected", T.BOOL, "segments above the MSS: TSO/GSO/GRO at the capture host"),
    ("rst_count", T.UINT, "RST segments"),
    ("rst_sender", T.STRING, "who sent the first RST: client or server (as the addresses claim)"),
    ("rst_frame", T.UINT, "frame of the first RST"),
    ("rst_time", T.TIME, "time of the first RST"),
    ("rst_phase", T.STRING, "handshake | mid_transfer | after_idle | after_fin"),
    ("rst_idle_before", T.RELTIME, "silence before the RST (or before the packet that triggered it)"),
    ("rst_bytes_client", T.UINT, "bytes the client had sent when the RST came"),
    ("rst_bytes_server", T.UINT, "bytes the server had sent when the RST came"),
    ("rst_ttl", T.UINT, "TTL of the RST"),
    ("rst_hops", T.UINT, "hops the RST travelled (from the usual initial TTLs 64/128/255)"),
    ("rst_ip_id", T.UINT, "IPv4 ID of the RST"),
    ("rst_sender_ttl_min", T.UINT, "lowest TTL of the claimed sender's other packets"),
    ("rst_sender_ttl_max", T.UINT, "highest TTL of the claimed sender's other packets"),
    ("rst_sender_packets", T.UINT, "the claimed sender's other packets"),
    ("rst_ttl_mismatch", T.BOOL, "the RST's TTL differs from the claimed sender's packets"),
    ("rst_ip_id_zero", T.BOOL, "the RST has IP ID 0 where the sender's packets do not"),
    ("rst_forged", T.BOOL, "the RST was forged by a middlebox (TTL mismatch)"),
    ("end", T.STRING, "fin_both | fin_client | fin_server | rst_client | rst_server | open"),
    ("completeness", T.UINT, "tcp.completeness of the conversation: 1 SYN 2 SYN-ACK 4 ACK 8 data 16 FIN 32 RST"),
]

# record keys that are not fields (lists: templates read them from the record)
FRAME_LIST_FACTS = {"dns_error_frames", "dns_unanswered_frames"}  # lists of frame numbers a rule can cite (evidence_frames)
TEMPLATE_ONLY = {"syn_times", "dns_error_names"} | FRAME_LIST_FACTS

SECONDS_TYPES = (T.RELTIME, T.TIME)


def fact_table() -> list[tuple[str, T, str]]:
    """Every flow fact with the {side} entries expanded: (record key, type, description)."""
    from diagnose.rules.app_facts import APP_FACTS
    from diagnose.rules.latency import LATENCY_FACTS

    out = []
    for key, ftype, description in FLOW_FACTS:
        if "{side}" in key:
            for side in SIDES:
                out.append((key.format(side=side), ftype, description.replace("the side", f"the {side}")
                            .replace("The side", f"The {side}")))
        else:
            out.append((key, ftype, description))
    out.extend((key, T(type_name), description) for key, type_name, description in (*APP_FACTS, *LATENCY_FACTS))
    return out


_FIRST_TCP_FACT, _LAST_TCP_FACT = "syn_count", "completeness"
_TCP_APP_PREFIXES = ("http_", "tls_", "latency_")


def tcp_only_facts() -> set[str]:
    """Facts only a TCP flow can have (diagnose.conn's TCP facts, HTTP, TLS, latency): their columns are read
    from the TCP flows' records only — most flows of a busy capture are DNS over UDP."""
    keys = [key for key, _, _ in fact_table()]
    tcp = set(keys[keys.index(_FIRST_TCP_FACT): keys.index(_LAST_TCP_FACT) + 1])
    tcp.update(k for k in keys if k.startswith(_TCP_APP_PREFIXES))
    return tcp


class Facts(dict):
    """A flow record as templates see it: a fact the record does not hold reads as none (None), like a missing
    field in a filter; names themselves were checked when the playbook was loaded."""

    def __missing__(self, key):
        return None


class FlowColumns(Releasable):
    """Columns over the flow records, built on first use (one per fact a rule reads). `records` is a list of dict
    records or a FlowRecords, which makes the columns from the flow analysis's own columns."""

    def __init__(self, records):
        self.records = records
        self.n = len(records)
        self._columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._tcp_rows: np.ndarray | None = None
        self._tcp_keys = tcp_only_facts()

    def column(self, key: str, ftype: T) -> tuple[np.ndarray, np.ndarray]:
        got = self._columns.get(key)
        if got is None:
            if hasattr(self.records, "column"):  # diagnose.rules.flow_records.FlowRecords: columns without dicts
                got = self._columns[key] = self.records.column(key, ftype)
            elif key in self._tcp_keys:
                got = self._columns[key] = self._tcp_column(key, ftype)
            else:
                got = self._columns[key] = _build(self.records, key, ftype)
        return got

    def release(self) -> None:
        self._columns.clear()

    def _tcp_column(self, key: str, ftype: T) -> tuple[np.ndarray, np.ndarray]:
        if self._tcp_rows is None:
            self._tcp_rows = np.fromiter((i for i, r in enumerate(self.records) if r.get("proto") == "tcp"),
                                         np.int64)
        rows = self._tcp_rows
        part_values, part_present = _build([self.records[i] for i in rows.tolist()], key, ftype)
        if ftype == T.STRING:
            values = np.empty(self.n, object)
            values[:] = ""
        else:
            values = np.zeros(self.n, part_values.dtype)
        present = np.zeros(self.n, bool)
        values[rows] = part_values
        present[rows] = part_present
        return values, present


def _build(records: list[dict], key: str, ftype: T) -> tuple[np.ndarray, np.ndarray]:
    raw = np.empty(len(records), object)
    raw[:] = [r.get(key) for r in records]
    return typed_values(raw, np.fromiter((v is not None for v in raw.tolist()), bool, len(raw)), ftype)


def typed_values(raw: np.ndarray, present: np.ndarray, ftype: T) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) a filter compares, from a record's Python values (object array; `present` where not None):
    strings ("" when absent), bools, floats, integer nanoseconds for times and durations (given in float seconds),
    integers otherwise. One conversion for dict records and FlowRecords alike: numpy converts the present values
    with Python's own bool(), float() and int() (an object array's astype), not a generator per value."""
    present = np.asarray(present, bool)
    n = len(raw)
    held = raw[present]
    if ftype == T.STRING:
        values = np.empty(n, object)
        values[:] = ""
        values[present] = [v if v.__class__ is str else str(v) for v in held.tolist()]
        return values, present
    if ftype == T.BOOL:
        values = np.zeros(n, bool)
        values[present] = held.astype(bool)
    elif ftype == T.FLOAT:
        values = np.zeros(n, np.float64)
        values[present] = held.astype(np.float64)
    elif ftype in SECONDS_TYPES:
        values = np.zeros(n, np.int64)
        values[present] = np.round(held.astype(np.float64) * 1e9).astype(np.int64)  # round(): half to even
    else:
        values = np.zeros(n, np.int64)
        values[present] = held.astype(np.int64)  # int(): floats truncate
    return values, present


class FlowFactsUnavailable(DiagnoseError):
    pass


def _extractor(key: str, ftype: T):
    def extract(ctx) -> list[Occurrence]:
        columns = ctx.extra.get("flows")
        if columns is None:
            raise FlowFactsUnavailable(f"flow.{key} is a flow fact: it is known once the whole capture was read, so "
                                       "it can be used in playbook rules (scope: flow), not in a packet filter")
        values, present = columns.column(key, ftype)
        index = ctx.extra.get("flow_index")
        if index is None:
            return [Occurrence(values, present)]
        ok = index >= 0
        safe = np.where(ok, index, 0)
        return [Occurrence(values[safe], present[safe] & ok)]
    return extract


def register_flow_fields() -> None:
    try:  # the application layer's per-packet fields (dns.*, http.*, tls.*) read by packet filters in playbooks
        import diagnose.protocols.fields  # noqa: F401  (registers on import)
    except ImportError:  # pragma: no cover - part of the package; guards a partial checkout only
        pass
    for key, ftype, description in fact_table():
        name = f"flow.{key}"
        if lookup(name) is None:
            register(Field(name, ftype, description, _extractor(key, ftype), protocol="flow"))


register_flow_fields()
