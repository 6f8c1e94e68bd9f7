"""LINKTYPE_* numbers we know by name (tcpdump.org/linktypes.html), for messages and `diagnose info`."""

from __future__ import annotations

NULL = 0
ETHERNET = 1
RAW_BSD12 = 12  # DLT_RAW on some BSDs
RAW_BSD14 = 14
RAW = 101
IEEE802_11 = 105
LOOP = 108
LINUX_SLL = 113
IEEE802_11_RADIOTAP = 127
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276

NAMES = {
    NULL: ("NULL", "BSD loopback"),
    ETHERNET: ("EN10MB", "Ethernet"),
    RAW_BSD12: ("RAW", "Raw IP"),
    RAW_BSD14: ("RAW", "Raw IP"),
    RAW: ("RAW", "Raw IP"),
    IEEE802_11: ("IEEE802_11", "IEEE 802.11 wireless"),
    LOOP: ("LOOP", "OpenBSD loopback"),
    LINUX_SLL: ("LINUX_SLL", "Linux cooked capture v1"),
    IEEE802_11_RADIOTAP: ("IEEE802_11_RADIO", "IEEE 802.11 plus radiotap header"),
    IPV4: ("IPV4", "Raw IPv4"),
    IPV6: ("IPV6", "Raw IPv6"),
    LINUX_SLL2: ("LINUX_SLL2", "Linux cooked capture v2"),
}

DECODED = frozenset(NAMES)


def name(linktype: int) -> str:
    """Short DLT-style name, e.g. EN10MB, or LINKTYPE_160 for ones we do not know."""
    return NAMES.get(linktype, (f"LINKTYPE_{linktype}", ""))[0]


def describe(linktype: int) -> str:
    short, long = NAMES.get(linktype, (f"LINKTYPE_{linktype}", ""))
    return f"{short} ({long})" if long else short
