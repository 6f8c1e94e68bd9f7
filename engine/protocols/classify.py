"""Which application protocol a flow speaks, from the first payload bytes of a direction (ports only break ties).

Content decides, so HTTP on port 8080 or TLS on 9443 is found like on 80/443. The tests are strict enough that
random binary data is not taken for a protocol: a TLS record header with a plausible type, version and length (or an
SSLv2-compatible ClientHello), an HTTP request line with a method Wireshark knows or a status line, the HTTP/2
client preface, and DNS by its registered ports or, elsewhere, by a message that parses cleanly.
"""

from __future__ import annotations

from diagnose.protocols.dns import looks_like_dns
from diagnose.protocols.http import start_kind
from diagnose.protocols.http2 import PREFACE

TLS, HTTP, HTTP2, DNS, MDNS, LLMNR, SSDP = "tls", "http", "http2", "dns", "mdns", "llmnr", "ssdp"

DNS_PORT, MDNS_PORT, LLMNR_PORT, SSDP_PORT = 53, 5353, 5355, 1900
# UDP ports whose protocols have DNS-like messages (NetBIOS names) or are never DNS: no structural guess there.
NOT_DNS_PORTS = frozenset({67, 68, 69, 123, 137, 138, 139, 161, 162, 443, 500, 514, 1900, 2152, 3544, 4500, 4789,
                           5060, 6081})


def tls_start(data: bytes) -> bool:
    """A TLS record header (SSL 3.0 to TLS 1.3 record versions) or an SSLv2-compatible ClientHello."""
    if len(data) >= 5 and 20 <= data[0] <= 23 and data[1] == 3 and data[2] <= 4:
        length = (data[3] << 8) | data[4]
        if not 0 < length <= (1 << 14) + 2048:
            return False
        if data[0] == 22 and len(data) >= 6:
            return data[5] in (1, 2, 11, 12, 4, 14, 16, 20)  # a handshake starts with a known message
        return True
    if len(data) >= 5 and data[0] & 0x80 and data[2] == 1 and data[3] in (0, 3) and data[4] <= 4:
        return ((data[0] & 0x7F) << 8 | data[1]) >= 9  # SSLv2 ClientHello
    return False


def classify_tcp(data: bytes, sport: int, dport: int) -> str | None:
    if not data:
        return None
    if data[:len(PREFACE)] == PREFACE[:len(data)] and len(data) >= 16:
        return HTTP2
    kind = start_kind(data)
    if kind in ("request", "response"):
        return HTTP
    if tls_start(data):
        return TLS
    if len(data) >= 14 and (sport == DNS_PORT or dport == DNS_PORT):
        length = (data[0] << 8) | data[1]
        if length >= 12 and (length + 2 >= len(data) or looks_like_dns(data[2: 2 + length])):
            return DNS
    if len(data) >= 14:
        length = (data[0] << 8) | data[1]
        if length + 2 == len(data) and looks_like_dns(data[2:]):
            return DNS
    return None


def maybe_start(data: bytes) -> bool:
    """Too few bytes to tell, but they could begin an HTTP message or a TLS record."""
    if start_kind(data) == "maybe":
        return True
    return len(data) < 5 and 20 <= data[0] <= 23 and (len(data) < 2 or data[1] == 3)


def classify_udp(data: bytes, sport: int, dport: int) -> str | None:
    if (sport == SSDP_PORT or dport == SSDP_PORT) and start_kind(data) in ("request", "response"):
        return SSDP  # HTTP over UDP (SSDP, UPnP discovery)
    if sport == DNS_PORT or dport == DNS_PORT:
        return DNS
    if sport == MDNS_PORT or dport == MDNS_PORT:
        return MDNS
    if sport == LLMNR_PORT or dport == LLMNR_PORT:
        return LLMNR
    if sport in NOT_DNS_PORTS or dport in NOT_DNS_PORTS:
        return None
    return DNS if looks_like_dns(data) else None
