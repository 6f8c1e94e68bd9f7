"""dns.*, http.*, http2.*, tls.* and x509*: per-frame application fields with Wireshark's names and meanings.

Fields are data: (name, type, description, kind of PDU, getter, options). A getter maps one PDU object (a DnsMessage,
an HttpMessage, an HTTP/2 Frame, a TLS Record) to the list of values it shows; a frame's occurrences are the values
of the PDUs it completed, in order (two TLS records in one frame give two tls.record.version values).

The values exist per chunk in `AppChunk` (what `AppLayer.update` returned); the field registry reads them from
`ctx.extra["app"]`, so the pipeline only has to put the chunk's AppChunk there. `frame_values` gives the same values
without the registry (tests, reports).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import numpy as np

from diagnose.protocols import dns as D
from diagnose.protocols import http2 as H2
from diagnose.protocols import tls as T

STRING, UINT, INT, BOOL, RELTIME, IPV4, IPV6, BYTES, NONE = ("string", "uint", "int", "bool", "reltime", "ipv4",
                                                             "ipv6", "bytes", "none")
PRESENT = b""  # the value of a protocol/marker field (Wireshark: FT_NONE/FT_PROTOCOL)


def _resp(getter):
    """Only in responses (Wireshark shows these flags in responses only)."""
    return lambda m: getter(m) if m.response else []


def _records(m: D.DnsMessage, rtype: int):
    return [r.data for r in m.records if r.type == rtype]


def _opt(getter):
    return lambda m: [getter(m.opt)] if m.opt is not None else []


def _ecs(index: int, family: int | None = None):
    def get(m):
        if m.opt is None:
            return []
        out = []
        for code, value in m.opt.options:
            if code == 8 and isinstance(value, tuple) and (family is None or value[0] == family):
                out.append(value[index])
        return out
    return get


def _flag(bit: int):
    return lambda m: [bool(m.flags & bit)]


DNS_FIELDS = [
    ("dns", NONE, "Domain Name System (port 53, or a DNS message found by its structure)", "dns",
     lambda m: [PRESENT] if m.protocol == "dns" else [], {}),
    ("mdns", NONE, "Multicast DNS (port 5353)", "dns", lambda m: [PRESENT] if m.protocol == "mdns" else [], {}),
    ("llmnr", NONE, "Link-local Multicast Name Resolution (port 5355)", "dns",
     lambda m: [PRESENT] if m.protocol == "llmnr" else [], {}),
    ("dns.id", UINT, "Transaction ID", "dns", lambda m: [m.id] if m.length >= 2 else [], {"bits": 16, "base": "hex"}),
    ("dns.flags", UINT, "Flags", "dns", lambda m: [m.flags] if m.length >= 4 else [], {"bits": 16, "base": "hex"}),
    ("dns.flags.response", BOOL, "Message is a response", "dns", lambda m: [m.response] if m.length >= 4 else [], {}),
    ("dns.flags.opcode", UINT, "Opcode (0 standard query)", "dns", lambda m: [m.opcode] if m.length >= 4 else [],
     {"bits": 4}),
    ("dns.flags.authoritative", BOOL, "Server is an authority for the domain", "dns", _resp(_flag(D.F_AUTHORITATIVE)),
     {}),
    ("dns.flags.truncated", BOOL, "Message is truncated (TC)", "dns", _flag(D.F_TRUNCATED), {}),
    ("dns.flags.recdesired", BOOL, "Recursion desired", "dns", _flag(D.F_RECDESIRED), {}),
    ("dns.flags.recavail", BOOL, "Recursion available", "dns", _resp(_flag(D.F_RECAVAIL)), {}),
    ("dns.flags.z", BOOL, "Reserved bit", "dns", _flag(D.F_Z), {}),
    ("dns.flags.authenticated", BOOL, "Answer authenticated (AD)", "dns", _resp(_flag(D.F_AUTHENTICATED)), {}),
    ("dns.flags.checkdisable", BOOL, "Non-authenticated data acceptable (CD)", "dns", _flag(D.F_CHECKDISABLE), {}),
    ("dns.flags.rcode", UINT, "Reply code (3 = NXDOMAIN, No such name)", "dns",
     _resp(lambda m: [m.flags & 0xF]), {"bits": 4, "value_names": D.RCODE_NAMES}),
    ("dns.count.queries", UINT, "Questions", "dns", lambda m: [m.qdcount] if m.length >= 12 else [], {"bits": 16}),
    ("dns.count.answers", UINT, "Answer RRs", "dns", lambda m: [m.ancount] if m.length >= 12 else [], {"bits": 16}),
    ("dns.count.auth_rr", UINT, "Authority RRs", "dns", lambda m: [m.nscount] if m.length >= 12 else [],
     {"bits": 16}),
    ("dns.count.add_rr", UINT, "Additional RRs", "dns", lambda m: [m.arcount] if m.length >= 12 else [],
     {"bits": 16}),
    ("dns.qry.name", STRING, "Queried name", "dns", lambda m: [q[0] for q in m.questions], {}),
    ("dns.qry.name.len", UINT, "Queried name length", "dns",
     lambda m: [0 if q[0] == "<Root>" else len(q[0]) for q in m.questions], {"bits": 16}),
    ("dns.count.labels", UINT, "Labels in the queried name", "dns",
     lambda m: [0 if q[0] == "<Root>" else q[0].count(".") + 1 for q in m.questions], {"bits": 16}),
    ("dns.qry.type", UINT, "Query type (1 A, 28 AAAA, 5 CNAME, ...)", "dns", lambda m: [q[1] for q in m.questions],
     {"bits": 16, "value_names": D.TYPE_NAMES}),
    ("dns.qry.class", UINT, "Query class", "dns", lambda m: [q[2] for q in m.questions], {"bits": 16, "base": "hex"}),
    ("dns.resp.name", STRING, "Record owner name", "dns", lambda m: [r.name for r in m.records], {}),
    ("dns.resp.type", UINT, "Record type", "dns", lambda m: [r.type for r in m.records],
     {"bits": 16, "value_names": D.TYPE_NAMES}),
    ("dns.resp.class", UINT, "Record class", "dns", lambda m: [r.cls for r in m.records if r.type != D.T_OPT],
     {"bits": 16, "base": "hex"}),
    ("dns.resp.ttl", UINT, "Record time to live (seconds)", "dns",
     lambda m: [r.ttl for r in m.records if r.type != D.T_OPT], {"bits": 32}),
    ("dns.resp.len", UINT, "Record data length", "dns", lambda m: [r.rdlength for r in m.records], {"bits": 16}),
    ("dns.a", IPV4, "IPv4 address (A record)", "dns", lambda m: _records(m, D.T_A), {}),
    ("dns.aaaa", IPV6, "IPv6 address (AAAA record)", "dns", lambda m: _records(m, D.T_AAAA), {}),
    ("dns.cname", STRING, "Canonical name (CNAME record)", "dns", lambda m: _records(m, D.T_CNAME), {}),
    ("dns.ns", STRING, "Name server (NS record)", "dns", lambda m: _records(m, D.T_NS), {}),
    ("dns.ptr.domain_name", STRING, "Domain name (PTR record)", "dns", lambda m: _records(m, D.T_PTR), {}),
    ("dns.dname", STRING, "Target (DNAME record)", "dns", lambda m: _records(m, D.T_DNAME), {}),
    ("dns.mx.preference", UINT, "MX preference", "dns", lambda m: [v[0] for v in _records(m, D.T_MX)], {"bits": 16}),
    ("dns.mx.mail_exchange", STRING, "Mail exchange (MX record)", "dns", lambda m: [v[1] for v in _records(m, D.T_MX)],
     {}),
    ("dns.txt", STRING, "TXT record string", "dns", lambda m: [s for v in _records(m, D.T_TXT) for s in v], {}),
    ("dns.soa.mname", STRING, "Primary name server (SOA)", "dns", lambda m: [v[0] for v in _records(m, D.T_SOA)], {}),
    ("dns.soa.rname", STRING, "Responsible authority's mailbox (SOA)", "dns",
     lambda m: [v[1] for v in _records(m, D.T_SOA)], {}),
    ("dns.soa.serial_number", UINT, "Serial number (SOA)", "dns", lambda m: [v[2] for v in _records(m, D.T_SOA)],
     {"bits": 32}),
    ("dns.soa.refresh_interval", UINT, "Refresh interval (SOA)", "dns",
     lambda m: [v[3] for v in _records(m, D.T_SOA)], {"bits": 32}),
    ("dns.soa.retry_interval", UINT, "Retry interval (SOA)", "dns", lambda m: [v[4] for v in _records(m, D.T_SOA)],
     {"bits": 32}),
    ("dns.soa.expire_limit", UINT, "Expire limit (SOA)", "dns", lambda m: [v[5] for v in _records(m, D.T_SOA)],
     {"bits": 32}),
    ("dns.soa.minimum_ttl", UINT, "Minimum TTL (SOA)", "dns", lambda m: [v[6] for v in _records(m, D.T_SOA)],
     {"bits": 32}),
    ("dns.srv.priority", UINT, "Priority (SRV)", "dns", lambda m: [v[0] for v in _records(m, D.T_SRV)], {"bits": 16}),
    ("dns.srv.weight", UINT, "Weight (SRV)", "dns", lambda m: [v[1] for v in _records(m, D.T_SRV)], {"bits": 16}),
    ("dns.srv.port", UINT, "Port (SRV)", "dns", lambda m: [v[2] for v in _records(m, D.T_SRV)], {"bits": 16}),
    ("dns.srv.target", STRING, "Target (SRV)", "dns", lambda m: [v[3] for v in _records(m, D.T_SRV)], {}),
    ("dns.svcb.svcpriority", UINT, "SvcPriority (SVCB/HTTPS)", "dns",
     lambda m: [r.data[0] for r in m.records if r.type in (D.T_SVCB, D.T_HTTPS)], {"bits": 16}),
    ("dns.svcb.targetname", STRING, "TargetName (SVCB/HTTPS)", "dns",
     lambda m: [r.data[1] for r in m.records if r.type in (D.T_SVCB, D.T_HTTPS)], {}),
    ("dns.rr.udp_payload_size", UINT, "EDNS UDP payload size", "dns", _opt(lambda o: o.udp_payload_size),
     {"bits": 16}),
    ("dns.resp.ext_rcode", UINT, "EDNS extended rcode (high bits)", "dns", _opt(lambda o: o.ext_rcode), {"bits": 8}),
    ("dns.resp.edns0_version", UINT, "EDNS version", "dns", _opt(lambda o: o.version), {"bits": 8}),
    ("dns.resp.z.do", BOOL, "DNSSEC OK (EDNS DO bit)", "dns", _opt(lambda o: o.do), {}),
    ("dns.opt.code", UINT, "EDNS option code", "dns", lambda m: [c for c, _ in m.opt.options] if m.opt else [],
     {"bits": 16}),
    ("dns.opt.client.family", UINT, "EDNS client subnet: family", "dns", _ecs(0), {"bits": 16}),
    ("dns.opt.client.netmask", UINT, "EDNS client subnet: source netmask", "dns", _ecs(1), {"bits": 8}),
    ("dns.opt.client.scope", UINT, "EDNS client subnet: scope netmask", "dns", _ecs(2), {"bits": 8}),
    ("dns.opt.client.addr4", IPV4, "EDNS client subnet: IPv4 address", "dns", _ecs(3, 1), {}),
    ("dns.opt.client.addr6", IPV6, "EDNS client subnet: IPv6 address", "dns", _ecs(3, 2), {}),
    ("dns.time", RELTIME, "Time between the query and this response", "dns",
     lambda m: [m.time_ns] if m.time_ns is not None else [], {}),
    ("dns.response_to", UINT, "Frame of the query this response answers", "dns",
     lambda m: [m.response_to] if m.response_to is not None else [], {"bits": 32}),
    ("dns.retransmission", BOOL, "A query or response repeated with the same ID", "dns",
     lambda m: [True] if m.retransmission else [], {}),
    ("dns.retransmit_request_in", UINT, "Frame of the query this one repeats", "dns",
     lambda m: [m.retransmit_of] if m.retransmission and not m.response else [], {"bits": 32}),
    ("dns.retransmit_response_in", UINT, "Frame of the response this one repeats", "dns",
     lambda m: [m.retransmit_of] if m.retransmission and m.response else [], {"bits": 32}),
    ("dns.unsolicited", BOOL, "A response with no query seen", "dns", lambda m: [True] if m.unsolicited else [], {}),
]


def _req(getter):
    return lambda m: getter(m) if m.is_request else []


def _rsp(getter):
    return lambda m: getter(m) if not m.is_request else []


def _hdr(name: str):
    def get(m):
        return [v for k, v in m.headers if k == name]
    return get


def _full_uri(m) -> list[str]:
    if m.uri is None:
        return []
    if "://" in m.uri:
        return [m.uri]
    host = m.host
    return [f"http://{host}{m.uri}"] if host else []


def _content_length(m) -> list[int]:
    return [m.content_length] if m.content_length is not None else []


HTTP_HEADERS = [
    ("http.host", "host", "Host header"), ("http.user_agent", "user-agent", "User-Agent header"),
    ("http.accept", "accept", "Accept header"), ("http.accept_encoding", "accept-encoding", "Accept-Encoding header"),
    ("http.accept_language", "accept-language", "Accept-Language header"), ("http.referer", "referer", "Referer"),
    ("http.cookie", "cookie", "Cookie header"), ("http.authorization", "authorization", "Authorization header"),
    ("http.connection", "connection", "Connection header"), ("http.content_type", "content-type", "Content-Type"),
    ("http.content_length_header", "content-length", "Content-Length header as written"),
    ("http.content_encoding", "content-encoding", "Content-Encoding header"),
    ("http.transfer_encoding", "transfer-encoding", "Transfer-Encoding header"),
    ("http.server", "server", "Server header"), ("http.location", "location", "Location header"),
    ("http.set_cookie", "set-cookie", "Set-Cookie header"), ("http.cache_control", "cache-control", "Cache-Control"),
    ("http.date", "date", "Date header"), ("http.last_modified", "last-modified", "Last-Modified header"),
    ("http.x_forwarded_for", "x-forwarded-for", "X-Forwarded-For header"),
    ("http.upgrade", "upgrade", "Upgrade header"), ("http.www_authenticate", "www-authenticate", "WWW-Authenticate"),
]

HTTP_FIELDS = [
    ("http", NONE, "Hypertext Transfer Protocol (HTTP/1.x message, found by content on any port)", "http",
     lambda m: [PRESENT] if m.protocol == "http" else [], {}),
    ("ssdp", NONE, "Simple Service Discovery Protocol (HTTP over UDP port 1900)", "http",
     lambda m: [PRESENT] if m.protocol == "ssdp" else [], {}),
    ("http.request", BOOL, "The message is a request", "http", lambda m: [True] if m.is_request else [], {}),
    ("http.response", BOOL, "The message is a response", "http", lambda m: [] if m.is_request else [True], {}),
    ("http.request.method", STRING, "Request method", "http", _req(lambda m: [m.method]), {}),
    ("http.request.uri", STRING, "Request URI (as written in the request line)", "http",
     _req(lambda m: [m.uri] if m.uri is not None else []), {}),
    ("http.request.version", STRING, "Request version", "http", _req(lambda m: [m.version] if m.version else []), {}),
    ("http.request.full_uri", STRING, "Full request URI (scheme, Host and URI)", "http", _req(_full_uri), {}),
    ("http.request.line", STRING, "A request header line", "http", _req(lambda m: list(m.lines)), {}),
    ("http.request_number", UINT, "Request number in the connection", "http", _req(lambda m: [m.number]),
     {"bits": 32}),
    ("http.response.version", STRING, "Response version", "http", _rsp(lambda m: [m.version]), {}),
    ("http.response.code", UINT, "Status code", "http", lambda m: [] if m.is_request else [m.code], {"bits": 16}),
    ("http.response.phrase", STRING, "Reason phrase", "http", _rsp(lambda m: [m.phrase]), {}),
    ("http.response.line", STRING, "A response header line", "http", _rsp(lambda m: list(m.lines)), {}),
    ("http.response_number", UINT, "Response number in the connection", "http", _rsp(lambda m: [m.number]),
     {"bits": 32}),
    ("http.content_length", UINT, "Content-Length (bytes)", "http", _content_length, {"bits": 64}),
    ("http.time", RELTIME, "Time since the request (response completed - request completed)", "http",
     _rsp(lambda m: [m.time_ns] if m.time_ns is not None else []), {}),
    ("http.request_in", UINT, "Frame of the request this response answers", "http",
     _rsp(lambda m: [m.request.frame] if m.request is not None else []), {"bits": 32}),
    ("http.response_for.uri", STRING, "Full URI of the request this response answers", "http",
     _rsp(lambda m: _full_uri(m.request) if m.request is not None else []), {}),
] + [(name, STRING, description, "http", _hdr(header), {}) for name, header, description in HTTP_HEADERS]


def _h2(getter):
    return lambda f: getter(f) if f.type >= 0 else []


def _h2hdr(name: str):
    return lambda f: [v for k, v in f.headers or () if k == name]


HTTP2_FIELDS = [
    ("http2", NONE, "HTTP/2", "http2", lambda f: [PRESENT], {}),
    ("http2.magic", STRING, "Client connection preface", "http2",
     lambda f: [H2.PREFACE.decode()] if f.type == -1 else [], {}),
    ("http2.type", UINT, "Frame type (0 DATA, 1 HEADERS, 3 RST_STREAM, 4 SETTINGS, 7 GOAWAY, ...)", "http2",
     _h2(lambda f: [f.type]), {"bits": 8}),
    ("http2.flags", UINT, "Frame flags", "http2", _h2(lambda f: [f.flags]), {"bits": 8, "base": "hex"}),
    ("http2.streamid", UINT, "Stream identifier", "http2", _h2(lambda f: [f.stream_id]), {"bits": 31}),
    ("http2.length", UINT, "Frame payload length", "http2", _h2(lambda f: [f.length]), {"bits": 24}),
    ("http2.header.name", STRING, "Header name (HPACK-decoded)", "http2", lambda f: [k for k, _ in f.headers or ()],
     {}),
    ("http2.header.value", STRING, "Header value (HPACK-decoded)", "http2", lambda f: [v for _, v in f.headers or ()],
     {}),
    ("http2.headers.method", STRING, ":method pseudo-header", "http2", _h2hdr(":method"), {}),
    ("http2.headers.path", STRING, ":path pseudo-header", "http2", _h2hdr(":path"), {}),
    ("http2.headers.authority", STRING, ":authority pseudo-header", "http2", _h2hdr(":authority"), {}),
    ("http2.headers.scheme", STRING, ":scheme pseudo-header", "http2", _h2hdr(":scheme"), {}),
    ("http2.headers.status", STRING, ":status pseudo-header", "http2", _h2hdr(":status"), {}),
    ("http2.rst_stream.error", UINT, "RST_STREAM error code", "http2",
     lambda f: [f.error_code] if f.type == H2.T_RST_STREAM and f.error_code is not None else [],
     {"bits": 32, "value_names": H2.ERROR_NAMES}),
    ("http2.goaway.error", UINT, "GOAWAY error code", "http2",
     lambda f: [f.error_code] if f.type == H2.T_GOAWAY and f.error_code is not None else [],
     {"bits": 32, "value_names": H2.ERROR_NAMES}),
    ("http2.goaway.last_stream_id", UINT, "GOAWAY last stream id", "http2",
     lambda f: [f.last_stream_id] if f.last_stream_id is not None else [], {"bits": 31}),
    ("http2.window_update.window_size_increment", UINT, "WINDOW_UPDATE increment", "http2",
     lambda f: [f.window_increment] if f.window_increment is not None else [], {"bits": 31}),
]


def _messages(rec: T.Record):
    return rec.messages


def _msgs(htype: int | tuple, getter):
    types = htype if isinstance(htype, tuple) else (htype,)
    return lambda rec: [v for m in rec.messages if m.type in types for v in getter(m)]


def _hello(getter):
    return _msgs((T.HS_CLIENT_HELLO, T.HS_SERVER_HELLO), getter)


def _ch(getter):
    return _msgs(T.HS_CLIENT_HELLO, lambda m: getter(m) if not m.sslv2 else [])


def _sh(getter):
    return _msgs(T.HS_SERVER_HELLO, getter)


def _certs(rec: T.Record):
    """Certificates a record shows: Certificate messages and the signer certificates of stapled OCSP responses."""
    return [c for m in rec.messages if m.type in (T.HS_CERTIFICATE, T.HS_CERTIFICATE_STATUS) for c in m.certs]


def _flat(name: str):
    return lambda rec: [v for c in _certs(rec) for k, v in c.flat if k == name]


TLS_FIELDS = [
    ("tls", NONE, "Transport Layer Security (a record completed in this frame; found by content on any port)", "tls",
     lambda r: [PRESENT], {}),
    ("tls.record", NONE, "A TLS record", "tls", lambda r: [PRESENT], {}),
    ("tls.record.content_type", UINT, "Record content type (20 CCS, 21 alert, 22 handshake, 23 data)", "tls",
     lambda r: [r.content_type] if not r.sslv2 else [], {"bits": 8}),
    ("tls.record.version", UINT, "Record layer version", "tls", lambda r: [r.version], {"bits": 16, "base": "hex"}),
    ("tls.record.length", UINT, "Record length", "tls", lambda r: [r.length], {"bits": 16}),
    ("tls.change_cipher_spec", NONE, "ChangeCipherSpec record", "tls",
     lambda r: [PRESENT] if r.content_type == T.CT_CCS else [], {}),
    ("tls.app_data", BYTES, "Application data (encrypted)", "tls",
     lambda r: [PRESENT] if r.content_type == T.CT_APPDATA and r.encrypted else [], {}),
    ("tls.alert_message", NONE, "An alert record (encrypted ones included; TLS 1.3 ones once decrypted)", "tls",
     lambda r: [PRESENT] if r.content_type == T.CT_ALERT or r.alert is not None else [], {}),
    ("tls.alert_message.level", UINT, "Alert level (1 warning, 2 fatal)", "tls",
     lambda r: [r.alert[0]] if r.alert else [], {"bits": 8}),
    ("tls.alert_message.desc", UINT, "Alert description (40 handshake_failure, 42 bad_certificate, 45 expired, ...)",
     "tls", lambda r: [r.alert[1]] if r.alert else [], {"bits": 8, "value_names": T.ALERT_NAMES}),
    ("tls.handshake", NONE, "A handshake record (encrypted ones included)", "tls",
     lambda r: [PRESENT] if r.content_type == T.CT_HANDSHAKE or r.messages else [], {}),
    ("tls.handshake.type", UINT, "Handshake message type (1 ClientHello, 2 ServerHello, 11 Certificate, ...)", "tls",
     lambda r: [m.type for m in r.messages], {"bits": 8, "value_names": T.HANDSHAKE_NAMES}),
    ("tls.handshake.length", UINT, "Handshake message length", "tls", lambda r: [m.length for m in r.messages],
     {"bits": 24}),
    ("tls.handshake.version", UINT, "Hello version (legacy_version)", "tls", _hello(lambda m: [m.version]),
     {"bits": 16, "base": "hex"}),
    ("tls.handshake.random", BYTES, "Hello random", "tls", _hello(lambda m: [m.random]), {}),
    ("tls.handshake.session_id_length", UINT, "Session ID length", "tls",
     _hello(lambda m: [len(m.session_id)]), {"bits": 8}),
    ("tls.handshake.session_id", BYTES, "Session ID", "tls",
     _hello(lambda m: [m.session_id] if m.session_id else []), {}),
    ("tls.handshake.cipher_suites_length", UINT, "Cipher suites length", "tls", _ch(lambda m: [2 * len(m.ciphers)]),
     {"bits": 16}),
    ("tls.handshake.ciphersuite", UINT, "Cipher suite (offered by the client, chosen by the server)", "tls",
     lambda r: [c for m in r.messages if m.type == T.HS_CLIENT_HELLO and not m.sslv2 for c in m.ciphers]
     + [m.cipher for m in r.messages if m.type == T.HS_SERVER_HELLO and m.cipher is not None],
     {"bits": 16, "base": "hex"}),
    ("tls.handshake.cipherspec", UINT, "SSLv2 cipher spec", "tls",
     _msgs(T.HS_CLIENT_HELLO, lambda m: m.ciphers if m.sslv2 else []), {"bits": 24, "base": "hex"}),
    ("tls.handshake.comp_method", UINT, "Compression method", "tls",
     lambda r: [c for m in r.messages if m.type == T.HS_CLIENT_HELLO and not m.sslv2 for c in m.compression]
     + [m.compression for m in r.messages if m.type == T.HS_SERVER_HELLO], {"bits": 8}),
    ("tls.handshake.extension.type", UINT, "Extension type", "tls", _hello(lambda m: [t for t, _ in m.extensions]),
     {"bits": 16}),
    ("tls.handshake.extension.len", UINT, "Extension length", "tls", _hello(lambda m: [n for _, n in m.extensions]),
     {"bits": 16}),
    ("tls.handshake.extensions_server_name", STRING, "Server Name Indication (SNI)", "tls",
     _ch(lambda m: [m.sni] if m.sni is not None else []), {}),
    ("tls.handshake.extensions_alpn_str", STRING, "ALPN protocol (offered, or chosen by the server)", "tls",
     _hello(lambda m: m.alpn), {}),
    ("tls.handshake.extensions.supported_version", UINT, "supported_versions entry", "tls",
     _hello(lambda m: m.supported_versions), {"bits": 16, "base": "hex"}),
    ("tls.handshake.extensions_supported_group", UINT, "Supported group (named curve)", "tls",
     _ch(lambda m: m.groups), {"bits": 16, "base": "hex"}),
    ("tls.handshake.extensions_ec_point_format", UINT, "EC point format", "tls", _hello(lambda m: m.point_formats),
     {"bits": 8}),
    ("tls.handshake.sig_hash_alg", UINT, "Signature algorithm", "tls", _ch(lambda m: m.sig_algs),
     {"bits": 16, "base": "hex"}),
    ("tls.handshake.extensions_key_share_group", UINT, "Key share group", "tls",
     _hello(lambda m: m.key_share_groups), {"bits": 16}),
    ("tls.handshake.ja3_full", STRING, "JA3 fingerprint string", "tls", _ch(lambda m: [m.ja3_full]), {}),
    ("tls.handshake.ja3", STRING, "JA3 fingerprint (MD5)", "tls", _ch(lambda m: [m.ja3]), {}),
    ("tls.handshake.ja4", STRING, "JA4 fingerprint", "tls", _ch(lambda m: [m.ja4]), {}),
    ("tls.handshake.ja4_r", STRING, "JA4 fingerprint (raw)", "tls", _ch(lambda m: [m.ja4_r]), {}),
    ("tls.handshake.ja3s_full", STRING, "JA3S fingerprint string", "tls",
     _sh(lambda m: [m.ja3s_full] if not m.hrr else []), {}),
    ("tls.handshake.ja3s", STRING, "JA3S fingerprint (MD5)", "tls", _sh(lambda m: [m.ja3s] if not m.hrr else []),
     {}),
    ("tls.handshake.certificate_length", UINT, "Certificate length", "tls",
     lambda r: [len(c.der) for c in _certs(r)], {"bits": 24}),
    ("tls.handshake.certificate", BYTES, "Certificate (DER)", "tls", lambda r: [c.der for c in _certs(r)], {}),
    ("tls.handshake.session_ticket_lifetime_hint", UINT, "Session ticket lifetime hint (s)", "tls",
     _msgs(T.HS_NEW_SESSION_TICKET, lambda m: [m.lifetime]), {"bits": 32}),
    ("tls.handshake.session_ticket_length", UINT, "Session ticket length", "tls",
     _msgs(T.HS_NEW_SESSION_TICKET, lambda m: [m.ticket_length]), {"bits": 16}),
    ("tls.handshake.cert_type", UINT, "Certificate type requested", "tls",
     _msgs(T.HS_CERTIFICATE_REQUEST, lambda m: m.cert_types), {"bits": 8}),
]

X509_FIELDS = [
    ("x509af.serialNumber", BYTES, "Certificate serial number", "tls",
     lambda r: [bytes.fromhex(c.serial_hex) for c in _certs(r) if c.serial_hex], {}),
    ("x509af.utcTime", STRING, "Validity time (UTCTime, as Wireshark prints it)", "tls", _flat("x509af.utcTime"), {}),
    ("x509af.generalizedTime", STRING, "Validity time (GeneralizedTime, dates from 2050)", "tls",
     _flat("x509af.generalizedTime"), {}),
    ("x509sat.printableString", STRING, "Name attribute (PrintableString)", "tls", _flat("x509sat.printableString"),
     {}),
    ("x509sat.uTF8String", STRING, "Name attribute (UTF8String)", "tls", _flat("x509sat.uTF8String"), {}),
    ("x509sat.IA5String", STRING, "Name attribute (IA5String)", "tls", _flat("x509sat.IA5String"), {}),
    ("x509sat.teletexString", STRING, "Name attribute (TeletexString)", "tls", _flat("x509sat.teletexString"), {}),
    ("x509sat.bMPString", STRING, "Name attribute (BMPString)", "tls", _flat("x509sat.bMPString"), {}),
    ("x509sat.CountryName", STRING, "Country name attribute", "tls", _flat("x509sat.CountryName"), {}),
    ("x509ce.dNSName", STRING, "Subject alternative name: DNS name", "tls", _flat("x509ce.dNSName"), {}),
    ("x509ce.iPAddress", STRING, "Subject alternative name: IP address", "tls", _flat("x509ce.iPAddress"), {}),
    ("x509ce.uniformResourceIdentifier", STRING, "A URI in an extension (CRL distribution point, AIA)", "tls",
     _flat("x509ce.uniformResourceIdentifier"), {}),
    ("x509ce.rfc822Name", STRING, "An e-mail address in an extension", "tls", _flat("x509ce.rfc822Name"), {}),
]

ALL_FIELDS = DNS_FIELDS + HTTP_FIELDS + HTTP2_FIELDS + TLS_FIELDS + X509_FIELDS
BY_NAME: dict[str, tuple] = {row[0]: row for row in ALL_FIELDS}


PROTOCOL_FIELDS = {"dns", "mdns", "llmnr", "http", "ssdp", "http2", "tls"}


def frame_values(chunk, name: str) -> dict[int, list]:
    """{row: [values]} of one field over an AppChunk (rows without the field are absent).

    A protocol field (dns, http, tls, ...) occurs once per frame that shows the protocol. `tls` is also shown by a
    frame that starts a record it does not complete (Wireshark's TLS dissector ran on it and asked for more)."""
    _, _, _, kind, getter, _ = BY_NAME[name]
    if name in PROTOCOL_FIELDS:
        rows = {row for row, obj in _pdus(chunk, kind) if getter(obj)}
        if name == "tls":
            rows.update(row for row, _ in _pdus(chunk, "tls_start"))
        return {row: [PRESENT] for row in sorted(rows)}
    out: dict[int, list] = {}
    for row, values in _pdu_values(chunk, kind, getter):
        out.setdefault(row, []).extend(values)
    return out


def _pdus(chunk, kind: str):
    """(row, PDU) pairs of one kind in an AppChunk (or a test's stand-in with an `items` dict)."""
    return chunk.rows(kind) if hasattr(chunk, "rows") else chunk.items.get(kind, ())


def _pdu_values(chunk, kind: str, getter):
    """(row, values) of the PDUs of one kind that have values for a field, in PDU order."""
    for row, obj in _pdus(chunk, kind):
        try:
            values = getter(obj)
        except (AttributeError, TypeError, IndexError):  # a PDU too damaged to have this field
            continue
        if values:
            yield row, values


def _convert(ftype: str, value):
    """A Python value as the registry's value arrays hold it."""
    if ftype == IPV4:
        return int(ipaddress.IPv4Address(value))
    if ftype == IPV6:
        v = int(ipaddress.IPv6Address(value))
        return (v >> 64, v & ((1 << 64) - 1))
    return value


def _empty_values(ftype: str, n: int) -> np.ndarray:
    if ftype in (UINT, INT, RELTIME, IPV4):
        return np.zeros(n, np.int64)
    if ftype == BOOL:
        return np.zeros(n, bool)
    if ftype == IPV6:
        return np.zeros((n, 2), np.uint64)
    return np.empty(n, object)


def _value_array(ftype: str, values: list) -> np.ndarray:
    """Python values as one array of the registry's representation (converted once, assigned by row index)."""
    if ftype in (IPV4, IPV6):
        values = [_convert(ftype, v) for v in values]
    if ftype in (UINT, INT, RELTIME, IPV4):
        return np.array(values, np.int64)
    if ftype == BOOL:
        return np.array(values, bool)
    if ftype == IPV6:
        return np.array(values, np.uint64).reshape(-1, 2)
    out = np.empty(len(values), object)  # element by element: a tuple or list value must stay one object
    for i, value in enumerate(values):
        out[i] = value
    return out


def occurrences(chunk, name: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, present) arrays per occurrence over n rows: the k-th value of each row in the k-th occurrence."""
    _, ftype, _, kind, getter, _ = BY_NAME[name]
    if name in PROTOCOL_FIELDS:
        return _occurrences_of(ftype, frame_values(chunk, name), n)
    # the rows and values in one loop over the chunk's PDUs (no dict per row): a few hundred PDUs per chunk against
    # thousands of rows, so the arrays are filled by index
    rows: list[int] = []
    flat: list = []
    many = False  # a PDU with several values, or a frame completing several PDUs
    last = -1
    for row, obj in _pdus(chunk, kind):  # _pdu_values written out: this loop runs for every PDU of every chunk
        try:
            values = getter(obj)
        except (AttributeError, TypeError, IndexError):  # a PDU too damaged to have this field
            continue
        if values:
            if len(values) != 1 or row == last:
                many = True
            rows.append(row)
            flat.append(values)
            last = row
    if not rows:
        return []
    if many or len(set(rows)) != len(rows):
        per_row: dict[int, list] = {}
        for row, values in zip(rows, flat):
            per_row.setdefault(row, []).extend(values)
        return _occurrences_of(ftype, per_row, n)
    at = np.array(rows, np.int64)
    present = np.zeros(n, bool)
    present[at] = True
    values = _empty_values(ftype, n)
    values[at] = _value_array(ftype, [v[0] for v in flat])
    return [(values, present)]


def _occurrences_of(ftype: str, per_row: dict[int, list], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    depth = max((len(v) for v in per_row.values()), default=0)
    out = []
    for k in range(depth):
        rows = [row for row, vals in per_row.items() if k < len(vals)]
        at = np.array(rows, np.int64)
        present = np.zeros(n, bool)
        present[at] = True
        values = _empty_values(ftype, n)
        values[at] = _value_array(ftype, [per_row[row][k] for row in rows])
        out.append((values, present))
    return out


def register_all() -> None:
    """Register every field with the field registry (engine/fields); extractors read ctx.extra["app"]."""
    from diagnose.fields.registry import Field, lookup, register
    from diagnose.fields.values import FieldType, Occurrence

    def make(name: str) -> Callable:
        def extract(ctx) -> list:
            chunk = ctx.extra.get("app")
            if chunk is None:
                return []
            return [Occurrence(values, present) for values, present in occurrences(chunk, name, ctx.n)]
        return extract

    for name, ftype, description, kind, _, options in ALL_FIELDS:
        if lookup(name) is not None:
            continue
        register(Field(name, FieldType(ftype), description, make(name), protocol=name.split(".")[0], **options))


try:  # imported by the registry (FIELD_MODULES) or by anything else: register when the registry exists
    import diagnose.fields.registry  # noqa: F401
except ImportError:  # pragma: no cover - the registry is part of the package; this only guards partial checkouts
    pass
else:
    register_all()
