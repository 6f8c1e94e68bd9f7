"""Zeek's `likely_server_ports`: the ports that make Zeek swap originator and responder of a connection.

Zeek fills the set from the well-known ports of every protocol script it loads (plus the tunnel ports of its packet
protocols, always loaded). When the first packet of a connection is not a pure SYN, a source port in this set and a
destination port outside it means the first packet came from the server, so Zeek flips the roles (history '^').
The table below holds those ports per Zeek script (Zeek 8/9 defaults), so a run can mimic Zeek with its default
scripts (the product default) or with only some scripts loaded (bare mode `zeek -b`, used by Zeek's own tests).
"""

from __future__ import annotations

import numpy as np

# Ports registered as server ports by each base/protocols script (`Analyzer::register_for_ports`).
PROTOCOL_SERVER_PORTS: dict[str, dict[str, tuple[int, ...]]] = {
    "dce-rpc": {"tcp": (135,)},
    "dhcp": {"udp": (67, 4011)},
    "dnp3": {"tcp": (20000,), "udp": (20000,)},
    "dns": {"tcp": (53,), "udp": (53, 137, 5353, 5355)},
    "finger": {"tcp": (79,)},
    "ftp": {"tcp": (21, 2811)},
    "http": {"tcp": (80, 81, 631, 1080, 3128, 8000, 8080, 8888)},
    "imap": {"tcp": (143,)},
    "irc": {"tcp": (6666, 6667, 6668, 6669)},
    "krb": {"tcp": (88,), "udp": (88,)},
    "ldap": {"tcp": (389, 3268), "udp": (389,)},
    "modbus": {"tcp": (502,)},
    "mqtt": {"tcp": (1883,)},
    "mysql": {"tcp": (1434, 3306)},
    "ntp": {"udp": (123,)},
    "postgresql": {"tcp": (5432,)},
    "quic": {"udp": (443,)},
    "radius": {"udp": (1812,)},
    "rdp": {"tcp": (3389,), "udp": (3389,)},
    "redis": {"tcp": (6379,)},
    "sip": {"udp": (5060,)},
    "smb": {"tcp": (139, 445)},
    "smtp": {"tcp": (25, 587)},
    "snmp": {"udp": (161, 162)},
    "socks": {"tcp": (1080,)},
    "ssh": {"tcp": (22,)},
    "ssl": {"tcp": (443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223), "udp": (443,)},
    "syslog": {"tcp": (514,), "udp": (514,)},
    "xmpp": {"tcp": (5222, 5269)},
}

# Tunnel ports of base/packet-protocols (loaded even in bare mode).
TUNNEL_SERVER_PORTS: dict[str, tuple[int, ...]] = {"udp": (5072, 6081, 4754, 2152, 2123, 3544, 4789)}


def likely_server_ports(protocols: list[str] | None = None) -> np.ndarray:
    """Zeek's port knowledge for the given protocol scripts, as a 3 x 65536 boolean table:
    row 0/1 = likely_server_ports for TCP/UDP; row 2 = UDP ports where Zeek attaches its DNS analyzer (whose
    session timer ends a quiet UDP DNS connection after 10 s).

    None means Zeek's default scripts (every protocol above); [] means bare mode with no protocol script.
    """
    table = np.zeros((3, 65536), np.bool_)
    names = list(PROTOCOL_SERVER_PORTS) if protocols is None else protocols
    for name in names:
        for proto, ports in PROTOCOL_SERVER_PORTS.get(name, {}).items():
            table[0 if proto == "tcp" else 1, list(ports)] = True
    table[1, list(TUNNEL_SERVER_PORTS["udp"])] = True
    if "dns" in names:
        table[2, list(PROTOCOL_SERVER_PORTS["dns"]["udp"])] = True
    return table
