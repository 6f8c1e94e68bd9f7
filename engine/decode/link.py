"""Entry into a frame by its link type (LINKTYPE_* numbers from the pcap/pcapng header)."""

from __future__ import annotations

from ..jit import inline
from ..packet import ENC_NULL, ENC_SLL, ST_LINK_UNDECODED, ST_NOT_IP, ST_TRUNCATED
from . import layers as L
from .ethernet import ETH_IPV4, ETH_IPV6
from .wire import be16, be32, be48, le32
from .wlan import decode_radiotap

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW as written by some platforms
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ARPHRD_ETHER = 1

# BSD loopback address families: IPv4 is 2 everywhere, IPv6 differs by operating system.
AF_INET = 2
AF_INET6_LINUX = 10
AF_INET6_WINDOWS = 23
AF_INET6_BSD = 24
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30


@inline
def _loopback_family(af, r):
    r.encap |= ENC_NULL
    if af == AF_INET:
        r.eth_type = ETH_IPV4
        return L.IPV4
    if af == AF_INET6_LINUX or af == AF_INET6_BSD or af == AF_INET6_FREEBSD or af == AF_INET6_DARWIN \
            or af == AF_INET6_WINDOWS:
        r.eth_type = ETH_IPV6
        return L.IPV6
    r.status |= ST_NOT_IP
    return L.DONE


@inline
def decode_link(buf, p, end, linktype, r):
    if linktype == LINKTYPE_ETHERNET:
        return L.ETHERNET, p, 0, 0
    if linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_DLT12 or linktype == LINKTYPE_RAW_DLT14:
        return L.IP_BY_VERSION, p, 0, 0
    if linktype == LINKTYPE_IPV4:
        r.eth_type = ETH_IPV4
        return L.IPV4, p, 0, 0
    if linktype == LINKTYPE_IPV6:
        r.eth_type = ETH_IPV6
        return L.IPV6, p, 0, 0
    if linktype == LINKTYPE_LINUX_SLL:
        # packet type, ARPHRD type, address length, 8 address bytes, protocol (an EtherType)
        if p + 16 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p, 0, 0
        r.encap |= ENC_SLL
        if be16(buf, p + 2) == ARPHRD_ETHER and be16(buf, p + 4) == 6:
            r.eth_src = be48(buf, p + 6)
        return L.ETHERTYPE, p + 16, be16(buf, p + 14), 0
    if linktype == LINKTYPE_LINUX_SLL2:
        # protocol, reserved, interface index, ARPHRD type, packet type, address length, 8 address bytes
        if p + 20 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p, 0, 0
        r.encap |= ENC_SLL
        if be16(buf, p + 8) == ARPHRD_ETHER and buf[p + 11] == 6:
            r.eth_src = be48(buf, p + 12)
        return L.ETHERTYPE, p + 20, be16(buf, p), 0
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if p + 4 > end:
            r.status |= ST_TRUNCATED
            return L.DONE, p, 0, 0
        if linktype == LINKTYPE_LOOP:
            af = be32(buf, p)
        else:
            af = le32(buf, p)  # host byte order of the capturing machine: a small value read the wrong way
            if af & 0xFFFF0000:  # has its significant byte on top
                af = be32(buf, p)
        return _loopback_family(af, r), p + 4, 0, 0
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        return decode_radiotap(buf, p, end, r)
    if linktype == LINKTYPE_IEEE802_11:
        return L.WLAN, p, 0, 0
    r.status |= ST_LINK_UNDECODED
    return L.DONE, p, 0, 0
