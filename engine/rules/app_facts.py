"""Application-layer flow facts: what diagnose.protocols learned about each conversation (HTTP transactions, the
TLS negotiation and certificate chain, DNS matching), flattened into the flow record so rules read them as
`flow.http_*`, `flow.tls_*`, `flow.dns_*` like every other flow fact.

Times are seconds (epoch for instants, durations as floats), like the rest of the record; certificate validity is
judged at the capture's time (diagnose.protocols.x509.check_chain), never at the time of the analysis.
"""

from __future__ import annotations

import numpy as np

# key, type name, description: the flow facts this module adds (registered by diagnose.rules.flow_fields)
APP_FACTS: list[tuple[str, str, str]] = [
    ("app_protocol", "string", "application protocol recognised by content: http, http2, tls, dns, mdns, llmnr"),
    ("http_requests", "uint", "HTTP requests on the connection"),
    ("http_responses", "uint", "HTTP responses on the connection"),
    ("http_errors", "uint", "responses with status 400 or more"),
    ("http_client_errors", "uint", "responses 400-499"),
    ("http_server_errors", "uint", "responses 500-599"),
    ("http_first_error_code", "uint", "status of the first error response"),
    ("http_first_error_request", "string", "method and URI the first error answered"),
    ("http_first_error_frame", "uint", "frame of the first error response"),
    ("http_errors_text", "string", "every request -> status of the connection, e.g. 'GET / → 200, GET /x → 404'"),
    ("http_truncated", "uint", "responses cut short (connection closed or reset before the body was complete)"),
    ("http_truncated_received", "uint", "body bytes the first cut response delivered"),
    ("http_truncated_expected", "uint", "body bytes it announced (Content-Length)"),
    ("http_truncated_frame", "uint", "frame of the first cut response's header"),
    ("http_truncated_request", "string", "method and URI of the first cut response"),
    ("http_ttfb_max", "reltime", "longest time from a complete request to the first byte of its response"),
    ("http_ttfb_request", "string", "method and URI of that request"),
    ("http_ttfb_request_frame", "uint", "frame completing that request"),
    ("http_ttfb_response_frame", "uint", "frame with the first byte of its response"),
    ("http_ttfb_request_time", "time", "when that request was complete"),
    ("http_ttfb_transfer", "reltime", "that response's first byte -> its last byte"),
    ("http_response_end_time", "time", "when the last response of the connection was complete"),
    ("tls_client_hello", "bool", "a ClientHello was seen"),
    ("tls_server_hello", "bool", "a ServerHello was seen"),
    ("tls_version", "string", "negotiated version (TLSv1.2, TLSv1.3, ...)"),
    ("tls_offered_max", "string", "highest version the client offered (supported_versions, else the hello version)"),
    ("tls_offered_min", "string", "lowest version the client offered"),
    ("tls_offered_versions", "string", "every version the client offered, highest first"),
    ("tls_obsolete_offered", "bool", "the client offered SSLv3, TLS 1.0 or TLS 1.1"),
    ("tls_obsolete_negotiated", "bool", "the session uses SSLv3, TLS 1.0 or TLS 1.1"),
    ("tls_cipher", "string", "negotiated cipher suite"),
    ("tls_ciphers_offered", "uint", "cipher suites the client offered"),
    ("tls_sni", "string", "server name the client asked for"),
    ("tls_alpn", "string", "application protocol chosen by the server (ALPN)"),
    ("tls_history", "string", "handshake shape (Zeek's ssl_history letters: upper case client, lower case server)"),
    ("tls_handshake_done", "bool", "the client finished the handshake (sent its first protected record)"),
    ("tls_alert", "string", "first fatal (or, without one, first) alert: its name"),
    ("tls_alert_code", "uint", "its description code (e.g. 45 certificate_expired)"),
    ("tls_alert_level", "string", "fatal | warning | encrypted"),
    ("tls_alert_from", "string", "who sent it: client or server"),
    ("tls_alert_frame", "uint", "its frame"),
    ("tls_alerts", "uint", "alerts seen"),
    ("tls_cert_visible", "bool", "the server certificate was seen (in clear, or decrypted with keys)"),
    ("tls_cert_subject", "string", "server (leaf) certificate subject"),
    ("tls_cert_cn", "string", "its common name"),
    ("tls_cert_san", "string", "its DNS subject alternative names, comma separated"),
    ("tls_cert_issuer", "string", "its issuer"),
    ("tls_cert_not_before", "time", "its notBefore"),
    ("tls_cert_not_after", "time", "its notAfter"),
    ("tls_cert_frame", "uint", "frame carrying the Certificate message"),
    ("tls_cert_expired", "bool", "a certificate of the chain had expired at the capture's time"),
    ("tls_cert_not_yet_valid", "bool", "a certificate of the chain was not yet valid at the capture's time"),
    ("tls_hostname_matches", "bool", "the leaf certificate covers the SNI (RFC 6125)"),
    ("tls_chain_length", "uint", "certificates the server sent"),
    ("tls_chain_complete", "bool", "the chain ends in a self-issued or trusted certificate"),
    ("tls_chain_verified", "bool", "the chain verifies against the trust store (absent: no store to check)"),
    ("tls_verify_error", "string", "why it does not verify"),
    ("tls_self_signed", "bool", "the server sent one certificate that issued itself"),
    ("tls_app_records_client", "uint", "application-data records the client sent"),
    ("tls_app_records_server", "uint", "application-data records the server sent"),
    ("tls_client_hello_time", "time", "when the ClientHello was sent"),
    ("tls_handshake_time", "reltime", "ClientHello -> the client's first protected record (the TLS handshake)"),
    ("tls_decrypted", "bool", "the session was decrypted with a key log"),
    ("dns_messages", "uint", "DNS messages on the conversation"),
    ("dns_queries", "uint", "DNS queries (UDP DNS, from the DNS scanner)"),
    ("dns_responses", "uint", "DNS responses"),
    ("dns_retransmissions", "uint", "queries sent again before an answer"),
    ("dns_errors", "uint", "responses with a non-zero rcode"),
    ("dns_nxdomain", "uint", "responses with rcode 3 (No such name)"),
    ("dns_error_rcode", "uint", "rcode of the first error response"),
    ("dns_error_name", "string", "name asked in the first error response"),
    ("dns_time_max", "reltime", "slowest answer (query -> response, dns.time)"),
    ("dns_unanswered", "uint", "DNS queries never answered"),
    ("dns_unanswered_name", "string", "name of the first unanswered query"),
    ("dns_unanswered_frame", "uint", "frame of the first unanswered query"),
]

OBSOLETE = {0x0002, 0x0300, 0x0301, 0x0302}


def _version_name(v) -> str | None:
    from diagnose.protocols.tls import VERSION_NAMES

    if v is None:
        return None
    return VERSION_NAMES.get(v, f"0x{v:04x}")


def _s(ns) -> float | None:
    return None if ns is None else int(ns) / 1e9


def _cipher_name(code) -> str | None:
    if code is None:
        return None
    try:
        from diagnose.protocols.tls_decrypt import _SUITE_NAMES

        name = _SUITE_NAMES.get(code)
    except ImportError:  # pragma: no cover
        name = None
    return name or f"0x{code:04x}"


def add_app_facts(records, summary) -> None:
    """Add the application facts (AppLayer.finish()'s AppSummary) to the records of the flows it knows. Absent
    facts are simply not set (records are read with .get, templates through diagnose.rules.facts.Facts), which
    keeps tens of thousands of records small.

    A FlowRecords holds no dict per flow: the usual UDP DNS conversations' facts (the same keys for tens of
    thousands) become columns (add_fact_columns), every other flow's facts are made on demand
    (app_columns.AppFacts, add_lazy_facts), and the facts the rules read are made now, as columns."""
    flows = getattr(summary, "flows", summary) or {}
    dns_udp = getattr(summary, "dns", {}) or {}
    n = len(records)
    if hasattr(records, "add_lazy_facts"):
        from diagnose.rules.app_columns import AppFacts, DnsRest

        if getattr(dns_udp, "convs", None) is not None:
            rest = _dns_columns(records, dns_udp, flows, n)
        else:
            rest = DnsRest.of_facts(dns_udp)
        group = AppFacts(flows, rest, n)
        records.add_lazy_facts(group)
        for key in records.extra_keys_read & _APP_KEYS:
            group.column(key)
        return
    extra_for = getattr(records, "extra_for", None) or records.__getitem__  # or a plain list of dict records
    # conversations in order: the UDP DNS ones and the AppFlow ones between
    flow_convs = sorted(flows)
    f = 0
    beyond = 1 << 62  # after every conversation
    next_flow = flow_convs[0] if flow_convs else beyond
    for conv, queries, responses, retransmissions, errors, time_max_ns, errors_seen, unanswered in _dns_rows(dns_udp):
        while next_flow < conv:
            _flow(records, n, next_flow, flows[next_flow], extra_for)
            f += 1
            next_flow = flow_convs[f] if f < len(flow_convs) else beyond
        if conv < n:
            record = extra_for(conv)
            if responses and not errors_seen and not unanswered:  # the usual flow: one literal, one update
                record.update({"app_protocol": "dns", "dns_messages": queries + responses, "dns_queries": queries,
                               "dns_responses": responses, "dns_retransmissions": retransmissions,
                               "dns_errors": errors, "dns_time_max": time_max_ns / 1e9, "dns_nxdomain": 0,
                               "dns_unanswered": 0})
            else:
                _dns_udp(record, queries, responses, retransmissions, errors, time_max_ns, errors_seen, unanswered)
    for conv in flow_convs[f:]:
        _flow(records, n, conv, flows[conv], extra_for)


_APP_KEYS = {key for key, _, _ in APP_FACTS} | {"dns_error_frames", "dns_error_names", "dns_unanswered_frames"}


def _dns_columns(records, table, flows, n: int):
    """Give the usual UDP DNS conversations' facts to `records` as columns (the literal of add_app_facts, column
    by column: same keys, order and values, in the smallest integer types) and return the rest (a DnsRest):
    conversations with error responses or unanswered queries, or without a response (their facts vary), and any
    the application layer also knows as an AppFlow."""
    from diagnose.rules.app_columns import DnsRest
    from diagnose.rules.flow_records import _narrow

    convs = table.convs
    usual = (table.responses != 0) & (convs < n)
    for by_conv in (table.errors_seen, table.unanswered, flows):
        if by_conv:
            usual &= ~np.isin(convs, np.fromiter(by_conv, np.int64, len(by_conv)))
    rows = np.flatnonzero(usual)
    queries, responses = table.queries[rows].astype(np.int64), table.responses[rows].astype(np.int64)
    protocol = np.broadcast_to(np.array(["dns"], object), (len(rows),))  # the same value: nothing per flow
    zeros = np.broadcast_to(np.zeros(1, np.uint8), (len(rows),))
    records.add_fact_columns(convs[rows], {
        "app_protocol": protocol, "dns_messages": _narrow(queries + responses), "dns_queries": _narrow(queries),
        "dns_responses": _narrow(responses), "dns_retransmissions": _narrow(table.retransmissions[rows]),
        "dns_errors": _narrow(table.errors[rows]), "dns_time_max": table.time_max_ns[rows] / 1e9,
        "dns_nxdomain": zeros, "dns_unanswered": zeros})
    return DnsRest.of_table(table, np.flatnonzero(~usual))


def _flow(records, n: int, conv: int, flow, extra_for) -> None:
    if not 0 <= conv < n:
        return
    _flow_facts(extra_for(conv), flow)


def _flow_facts(record: dict, flow) -> None:
    """An AppFlow's facts, written into a record."""
    record["app_protocol"] = flow.protocol
    if flow.http is not None:
        _http(record, flow.http)
    if flow.tls is not None:
        _tls(record, flow.tls.session, flow.chain, flow)
    if flow.dns is not None:
        _dns(record, flow)


def _dns_rows(dns_udp):
    """(conv, queries, responses, retransmissions, errors, time_max_ns, errors_seen, unanswered) of each UDP DNS
    conversation in conversation order: from the columns of a DnsFactsTable, else from DnsFacts objects."""
    convs = getattr(dns_udp, "convs", None)
    if convs is None:
        return [(c, f.queries, f.responses, f.retransmissions, f.errors, f.time_max_ns, f.errors_seen, f.unanswered)
                for c, f in sorted(dns_udp.items())]
    convs_l = convs.tolist()
    lists = []
    for by_conv in (dns_udp.errors_seen, dns_udp.unanswered):  # a few conversations have them
        column = [None] * len(convs_l)
        if by_conv:
            for i in np.flatnonzero(np.isin(convs, np.fromiter(by_conv, np.int64, len(by_conv)))).tolist():
                column[i] = by_conv[convs_l[i]]
        lists.append(column)
    return zip(convs_l, dns_udp.queries.tolist(), dns_udp.responses.tolist(), dns_udp.retransmissions.tolist(),
               dns_udp.errors.tolist(), dns_udp.time_max_ns.tolist(), *lists)


def writable_record(records, conv: int) -> dict:
    """Where to add facts to a flow's record: the record itself, or a FlowRecords's extra facts of the flow."""
    extra_for = getattr(records, "extra_for", None)
    return extra_for(conv) if extra_for is not None else records[conv]


def _request_text(tx) -> str | None:
    if not tx.has_request:
        return None
    return f"{tx.method or '?'} {tx.uri or '?'}"


def _http(record: dict, conn) -> None:
    # one pass over the transactions (most connections have one or two); the keys are set in a fixed order
    txs = conn.transactions
    requests = responses = client_errors = server_errors = 0
    first_error = slowest = first_cut = None
    cut = 0
    slowest_ns = None
    end_ts = None
    parts = []
    for k, t in enumerate(txs):
        if t.has_request:
            requests += 1
        if not t.has_response:
            if k < 20:
                parts.append(f"{_request_text(t) or '(no request)'} → no response")
            continue
        responses += 1
        code = t.code
        if k < 20:
            parts.append(f"{_request_text(t) or '(no request)'} → {code}")
        if (code or 0) >= 400:
            if code < 500:
                client_errors += 1
            else:
                server_errors += 1
            if first_error is None:
                first_error = t
        if t.truncated:
            cut += 1
            if first_cut is None:
                first_cut = t
        if t.has_request and t.request_ts is not None and t.first_ts is not None:
            ttfb = t.first_ts - t.request_ts
            if slowest_ns is None or ttfb > slowest_ns:
                slowest, slowest_ns = t, ttfb
        if t.ts is not None and (end_ts is None or t.ts > end_ts):
            end_ts = t.ts
    record["http_requests"] = requests + conn.dropped_transactions
    record["http_responses"] = responses
    record["http_errors"] = client_errors + server_errors
    record["http_client_errors"] = client_errors
    record["http_server_errors"] = server_errors
    if first_error is not None:
        record["http_first_error_code"] = first_error.code
        record["http_first_error_request"] = _request_text(first_error)
        record["http_first_error_frame"] = first_error.frame
    record["http_errors_text"] = ", ".join(parts) + (", …" if len(txs) > 20 else "") if parts else None
    record["http_truncated"] = cut
    if first_cut is not None:
        record["http_truncated_received"] = first_cut.body_bytes
        record["http_truncated_expected"] = first_cut.content_length
        record["http_truncated_frame"] = first_cut.first_frame
        record["http_truncated_request"] = _request_text(first_cut)
    if slowest is not None:
        record["http_ttfb_max"] = slowest_ns / 1e9
        record["http_ttfb_request"] = _request_text(slowest)
        record["http_ttfb_request_frame"] = slowest.request_frame
        record["http_ttfb_response_frame"] = slowest.first_frame
        record["http_ttfb_request_time"] = _s(slowest.request_ts)
        if slowest.ts is not None and slowest.first_ts is not None:
            record["http_ttfb_transfer"] = (slowest.ts - slowest.first_ts) / 1e9
    record["http_response_end_time"] = _s(end_ts)


def _tls(record: dict, s, chain, flow) -> None:
    ch, sh = s.client_hello, s.server_hello
    record["tls_client_hello"] = ch is not None
    record["tls_server_hello"] = sh is not None
    record["tls_version"] = _version_name(s.version)
    if ch is not None:
        offered = [v for v in (ch.supported_versions or [ch.version]) if not _grease(v)]
        offered.sort(reverse=True)
        record["tls_offered_versions"] = ", ".join(_version_name(v) for v in offered)
        record["tls_offered_max"] = _version_name(offered[0]) if offered else None
        record["tls_offered_min"] = _version_name(offered[-1]) if offered else None
        record["tls_obsolete_offered"] = any(v in OBSOLETE for v in offered)
        record["tls_ciphers_offered"] = len([c for c in ch.ciphers if not _grease(c)])
        record["tls_sni"] = ch.sni
    record["tls_obsolete_negotiated"] = s.version in OBSOLETE if s.version is not None else None
    record["tls_cipher"] = _cipher_name(s.cipher)
    record["tls_alpn"] = s.alpn
    record["tls_history"] = s.history_text
    client_dir = s.client_direction if s.client_direction is not None else 0
    # the client's first protected record: its Finished in TLS 1.3, its first request in TLS 1.2 — the handshake
    # is over for the client then
    client_first_app = s.first_app_ts[client_dir]
    record["tls_handshake_done"] = sh is not None and client_first_app is not None
    record["tls_alerts"] = len(s.alerts)
    if s.alerts:
        fatal = [a for a in s.alerts if a.level == 2]
        alert = fatal[0] if fatal else s.alerts[0]
        record["tls_alert"] = alert.name
        record["tls_alert_code"] = alert.description
        record["tls_alert_level"] = "encrypted" if alert.encrypted else ("fatal" if alert.level == 2 else "warning")
        client = s.client_direction if s.client_direction is not None else 0
        record["tls_alert_from"] = "client" if alert.direction == client else "server"
        record["tls_alert_frame"] = alert.frame
    certs = s.certificates
    record["tls_cert_visible"] = bool(certs)
    record["tls_chain_length"] = len(certs) if certs else None
    if certs:
        leaf = certs[0]
        record["tls_cert_subject"] = leaf.subject_text
        record["tls_cert_cn"] = leaf.common_name
        record["tls_cert_san"] = ", ".join(leaf.san_dns) if leaf.san_dns else None
        record["tls_cert_issuer"] = leaf.issuer_text
        record["tls_cert_not_before"] = leaf.not_before.timestamp() if leaf.not_before else None
        record["tls_cert_not_after"] = leaf.not_after.timestamp() if leaf.not_after else None
        record["tls_cert_frame"] = s.certificate_frame
        record["tls_self_signed"] = len(certs) == 1 and leaf.subject == leaf.issuer
    if chain is not None:
        record["tls_cert_expired"] = bool(chain.expired)
        record["tls_cert_not_yet_valid"] = bool(chain.not_yet_valid)
        record["tls_hostname_matches"] = chain.hostname_matches
        record["tls_chain_complete"] = chain.complete
        record["tls_chain_verified"] = chain.verified
        record["tls_verify_error"] = chain.verify_error
    record["tls_app_records_client"] = s.app_records[s.client_direction or 0] if s.client_direction is not None \
        else s.app_records[0]
    record["tls_app_records_server"] = s.app_records[1 - (s.client_direction or 0)]
    record["tls_client_hello_time"] = _s(s.client_hello_ts)
    if s.client_hello_ts is not None and client_first_app is not None and sh is not None:
        record["tls_handshake_time"] = (client_first_app - s.client_hello_ts) / 1e9
    record["tls_decrypted"] = bool(s.decrypted)


def _grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def _dns_udp(record: dict, queries: int, responses: int, retransmissions: int, errors: int, time_max_ns: int,
             errors_seen: list | None, unanswered: list | None) -> None:
    """A UDP DNS conversation's facts when they are not the usual ones (add_app_facts sets those itself)."""
    record["app_protocol"] = "dns"
    record["dns_messages"] = queries + responses
    record["dns_queries"] = queries
    record["dns_responses"] = responses
    record["dns_retransmissions"] = retransmissions
    record["dns_errors"] = errors
    if responses:
        record["dns_time_max"] = time_max_ns / 1e9
    if errors_seen:
        seen = sorted(errors_seen, key=lambda item: item[0])
        record["dns_nxdomain"] = sum(1 for _, _, rcode in seen if rcode == 3)
        record["dns_error_rcode"] = seen[0][2]
        record["dns_error_name"] = seen[0][1]
        record["dns_error_frames"] = [frame for frame, _, _ in seen]
        record["dns_error_names"] = sorted({name for _, name, _ in seen if name})
    else:
        record["dns_nxdomain"] = 0
    record["dns_unanswered"] = len(unanswered) if unanswered else 0
    if unanswered:
        frame, name = min(unanswered, key=lambda item: item[0])
        record["dns_unanswered_name"] = name
        record["dns_unanswered_frame"] = frame
        record["dns_unanswered_frames"] = sorted(f for f, _ in unanswered)


def _dns(record: dict, flow) -> None:
    record["dns_messages"] = flow.dns_messages
    unanswered = flow.dns.unanswered()
    record["dns_unanswered"] = len(unanswered)
    if unanswered:
        frame, _ident, name = min(unanswered)
        record["dns_unanswered_name"] = name
        record["dns_unanswered_frame"] = frame
