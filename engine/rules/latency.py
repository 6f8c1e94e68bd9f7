"""Latency phases of a transaction: DNS lookup, TCP connect, TLS handshake, server time to first byte, transfer.

A transaction is a TCP connection carrying HTTP or TLS. Its phases come from different flows and layers:
* DNS: the lookup (query -> response, dns.time) whose A/AAAA answer holds the server's address, the latest one
  answered before the connection's first packet (and at most LOOKUP_WINDOW before it);
* connect: the handshake (SYN -> the ACK completing it; at a client-side capture point, SYN -> SYN-ACK);
* TLS: ClientHello -> first application data;
* TTFB: the slowest request of the connection, request complete -> first byte of its response (HTTP, or HTTPS
  decrypted with a key log);
* transfer: that response's first byte -> its last byte.
The largest phase is the dominant one: the latency rule names it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import itemgetter

import numpy as np

LOOKUP_WINDOW = 30.0  # seconds: an older lookup is not this connection's

LATENCY_FACTS: list[tuple[str, str, str]] = [
    ("latency_dns", "reltime", "DNS lookup of the server's name (query -> answer) before this connection"),
    ("latency_dns_name", "string", "the name looked up"),
    ("latency_connect", "reltime", "TCP connect: SYN -> handshake complete"),
    ("latency_tls", "reltime", "TLS handshake: ClientHello -> first application data"),
    ("latency_ttfb", "reltime", "server time to first byte of the slowest request"),
    ("latency_transfer", "reltime", "that response's first byte -> its last byte"),
    ("latency_total", "reltime", "sum of the phases"),
    ("latency_dominant", "string", "the largest phase: dns | connect | tls | ttfb | transfer"),
    ("latency_dominant_share", "float", "its share of the total (a fraction)"),
]

PHASES = ("dns", "connect", "tls", "ttfb", "transfer")


class DnsAnswers:
    """A/AAAA answers seen in the capture: address -> [(answer time, lookup duration, name)], fed per chunk from
    the application layer's DNS (UDP DNS answers are read in a kernel: no message is decoded in full)."""

    def __init__(self, limit: int = 200_000):
        self.by_address: dict[str, list[tuple[float, float, str | None]]] = {}
        self.count = 0
        self.limit = limit
        self._index: dict[str, tuple[list[float], list]] | None = None

    def update(self, app_chunk) -> None:
        if app_chunk is None or self.count >= self.limit:
            return
        found = []  # (row, address, dns.time ns, name): emitted (parsed) messages first, as AppChunk.items orders
        for row, msg in app_chunk.emitted["dns"]:
            if msg.response and msg.time_ns is not None:
                found.extend((row, address, msg.time_ns, msg.qname) for address in msg.answer_addresses())
        for batch in app_chunk.dns_batches:  # UDP DNS not decoded yet
            found.extend(batch.address_answers())
        if not found:
            return
        found.sort(key=itemgetter(0))  # stable: the order AppChunk.items gives the messages
        rows = np.fromiter((f[0] for f in found), np.int64, len(found))
        answered = (app_chunk.table["ts"][rows] / 1e9).tolist()  # the same floats as int(ts) / 1e9
        by_address = self.by_address
        for (_, address, time_ns, name), when in zip(found, answered):
            entry = (when, time_ns / 1e9, name)
            known = by_address.get(address)
            if known is None:
                by_address[address] = [entry]
            else:
                known.append(entry)
        self.count += len(found)
        self._index = None

    def lookup_before(self, address: str, when: float) -> tuple[float, str | None] | None:
        """(duration, name) of the latest lookup answered with `address` at most LOOKUP_WINDOW before `when` (the
        first such answer when several came at the same time)."""
        if self._index is None:
            self._index = {}
        found = self._index.get(address)
        if found is None:
            entries = sorted(self.by_address.get(address, ()), key=itemgetter(0))  # stable
            found = self._index[address] = ([e[0] for e in entries], entries)
        times, entries = found
        i = bisect_right(times, when + 1e-6) - 1
        if i < 0 or when - times[i] > LOOKUP_WINDOW:
            return None
        best = entries[bisect_left(times, times[i])]
        return best[1], best[2]


TIMED_PROTOCOLS = ("http", "http2", "tls")
# the record facts the phases are made of
LATENCY_INPUTS = ("proto", "app_protocol", "resp_h", "ts", "handshake_rtt", "synack_rtt", "tls_handshake_time",
                  "http_ttfb_max", "http_ttfb_transfer")


_PHASE_KEYS = tuple(f"latency_{k}" for k in PHASES)


_LATENCY_KEYS = ("latency_dns_name", *_PHASE_KEYS, "latency_total", "latency_dominant", "latency_dominant_share")


def add_latency_facts(records, answers: DnsAnswers) -> None:
    """Split each HTTP/TLS connection's time into phases. `records`: dict records, or a FlowRecords (whose
    application facts say which flows are candidates: only those are read, and the phases become columns)."""
    from diagnose.rules.app_facts import writable_record

    columnar = hasattr(records, "add_fact_columns")
    if columnar:  # FlowRecords: read the facts needed from columns, make no record
        from diagnose.rules.flow_records import ABSENT

        convs, protocols = records.extra_values("app_protocol")
        convs = sorted(c for c, p in zip(convs, protocols) if p in TIMED_PROTOCOLS)
        lists = records.fact_lists(convs, LATENCY_INPUTS)  # a list per fact, not a dict per flow
        candidates = zip(convs, zip(*(lists[key] for key in LATENCY_INPUTS)))
        timed: list[int] = []
        columns: dict[str, list] = {key: [] for key in _LATENCY_KEYS}
    else:
        candidates = ((conv, tuple(map(record.get, LATENCY_INPUTS))) for conv, record in enumerate(records))
    lookup_before = answers.lookup_before
    for conv, (proto, app_protocol, resp_h, ts, handshake_rtt, synack_rtt, tls_handshake_time, ttfb,
               ttfb_transfer) in candidates:
        if proto != "tcp" or app_protocol not in TIMED_PROTOCOLS:
            continue
        out = {} if columnar else writable_record(records, conv)
        dns = None
        found = lookup_before(resp_h or "", ts or 0.0)
        if found is not None:
            dns, out["latency_dns_name"] = found
        if ttfb is not None:  # without a request/response the connection is not a transaction we can time
            phases = (dns, handshake_rtt or synack_rtt, tls_handshake_time, ttfb, ttfb_transfer)
            total = 0
            dominant = largest = None
            for name, key, value in zip(PHASES, _PHASE_KEYS, phases):
                if value is not None:
                    out[key] = value
                    total += value
                    if largest is None or value > largest:  # the first of equal phases, as max() picks
                        dominant, largest = name, value
            out["latency_total"] = total
            out["latency_dominant"] = dominant
            out["latency_dominant_share"] = largest / total if total > 0 else None
        if columnar and out:
            timed.append(conv)
            for key, column in columns.items():
                column.append(out.get(key, ABSENT))
    if columnar:
        records.add_fact_columns(timed, {key: column for key, column in columns.items()
                                         if any(v is not ABSENT for v in column)})


def phases_of(record: dict) -> dict[str, float | None]:
    """The phases of a record (for the HTML phase bar)."""
    return {k: record.get(f"latency_{k}") for k in PHASES}
