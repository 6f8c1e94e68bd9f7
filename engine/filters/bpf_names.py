"""Names a capture filter may use: ports, IP protocols, EtherTypes and the named offsets/constants of pcap-filter(7).

Port and protocol names come from /etc/services and /etc/protocols when the system has them (libpcap asks the system
too), with a built-in table of the common ones as a fallback.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# pcap-filter(7) named constants (offsets and values usable in arithmetic)
CONSTANTS = {
    "icmptype": 0, "icmpcode": 1, "icmp6type": 0, "icmp6code": 1, "tcpflags": 13,
    "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08, "tcp-ack": 0x10, "tcp-urg": 0x20,
    "tcp-ece": 0x40, "tcp-cwr": 0x80,
    "icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5, "icmp-echo": 8,
    "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11, "icmp-paramprob": 12,
    "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15, "icmp-ireqreply": 16, "icmp-maskreq": 17,
    "icmp-maskreply": 18,
    "icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
    "icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
    "icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
    "icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
    "icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137, "icmp6-routerrenum": 138,
    "icmp6-nodeinformationquery": 139, "icmp6-nodeinformationresponse": 140,
    "icmp6-ineighbordiscoverysolicit": 141, "icmp6-ineighbordiscoveryadvert": 142,
    "icmp6-multicastlistenerreportv2": 143, "icmp6-homeagentdiscoveryrequest": 144,
    "icmp6-homeagentdiscoveryreply": 145, "icmp6-mobileprefixsolicit": 146, "icmp6-mobileprefixadvert": 147,
    "icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149, "icmp6-multicastrouteradvert": 151,
    "icmp6-multicastroutersolicit": 152, "icmp6-multicastrouterterm": 153,
}

# IP protocol numbers of the protocol keywords
IPPROTO = {"icmp": 1, "igmp": 2, "tcp": 6, "igrp": 9, "udp": 17, "esp": 50, "ah": 51, "icmp6": 58, "pim": 103,
           "vrrp": 112, "carp": 112, "sctp": 132}

# EtherTypes (libpcap's pcap_nametoeproto table) and LLC SAPs (pcap_nametollc)
ETHERTYPES = {"pup": 0x0200, "xns": 0x0600, "ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "rarp": 0x8035,
              "sprite": 0x0500, "mopdl": 0x6001, "moprc": 0x6002, "decnet": 0x6003, "lat": 0x6004, "sca": 0x6007,
              "lanbridge": 0x8038, "vexp": 0x805B, "vprod": 0x805C, "atalk": 0x809B, "atalkarp": 0x80F3,
              "aarp": 0x80F3, "ipx": 0x8137, "loopback": 0x9000, "decdts": 0x803E, "decdns": 0x803C}
LLC_SAPS = {"iso": 0xFE, "stp": 0x42, "ipx": 0xE0, "netbeui": 0xF0}

_FALLBACK_SERVICES = {
    "echo": (7, True, True), "discard": (9, True, True), "daytime": (13, True, True), "ftp-data": (20, True, False),
    "ftp": (21, True, False), "ssh": (22, True, False), "telnet": (23, True, False), "smtp": (25, True, False),
    "domain": (53, True, True), "bootps": (67, False, True), "bootpc": (68, False, True), "tftp": (69, False, True),
    "http": (80, True, False), "kerberos": (88, True, True), "pop3": (110, True, False),
    "sunrpc": (111, True, True), "ntp": (123, False, True), "netbios-ns": (137, False, True),
    "netbios-dgm": (138, False, True), "netbios-ssn": (139, True, False), "imap2": (143, True, False),
    "snmp": (161, True, True), "snmp-trap": (162, True, True), "bgp": (179, True, False), "ldap": (389, True, True),
    "https": (443, True, True), "microsoft-ds": (445, True, False), "isakmp": (500, False, True),
    "syslog": (514, False, True), "submission": (587, True, False), "ldaps": (636, True, True),
    "imaps": (993, True, False), "pop3s": (995, True, False), "openvpn": (1194, True, True),
    "ms-sql-s": (1433, True, False), "radius": (1812, True, True), "nfs": (2049, True, True),
    "mysql": (3306, True, False), "ms-wbt-server": (3389, True, False), "sip": (5060, True, True),
    "mdns": (5353, False, True), "postgresql": (5432, True, False), "redis": (6379, True, False),
    "http-alt": (8080, True, False),
}

_FALLBACK_PROTOCOLS = {"ip": 0, "icmp": 1, "igmp": 2, "ipencap": 4, "tcp": 6, "egp": 8, "igp": 9, "udp": 17,
                       "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "gre": 47, "esp": 50, "ah": 51,
                       "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "pim": 103, "vrrp": 112,
                       "sctp": 132}


@lru_cache(maxsize=1)
def _services() -> dict[str, tuple[int, bool, bool]]:
    """name -> (port, has tcp, has udp)."""
    table: dict[str, list] = {}
    try:
        lines = Path("/etc/services").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return dict(_FALLBACK_SERVICES)
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or "/" not in fields[1]:
            continue
        port_text, proto = fields[1].split("/", 1)
        if not port_text.isdigit() or proto not in ("tcp", "udp"):
            continue
        for name in [fields[0], *fields[2:]]:
            entry = table.setdefault(name, [int(port_text), False, False])
            if entry[0] == int(port_text):
                entry[1 if proto == "tcp" else 2] = True
    return {name: tuple(v) for name, v in table.items()} or dict(_FALLBACK_SERVICES)


def service(name: str) -> tuple[int, bool, bool] | None:
    """(port, defined for tcp, defined for udp) of a service name, or None."""
    return _services().get(name)


@lru_cache(maxsize=1)
def _protocols() -> dict[str, int]:
    table = dict(_FALLBACK_PROTOCOLS)
    try:
        lines = Path("/etc/protocols").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return table
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[1].isdigit():
            for name in [fields[0], *fields[2:]]:
                table.setdefault(name, int(fields[1]))
    return table


def ip_protocol(name: str) -> int | None:
    return _protocols().get(name)
