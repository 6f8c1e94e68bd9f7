"""UDP in a tcpdump-style line: `UDP, length N`, or a summary of the few protocols worth naming by port."""

from __future__ import annotations

import struct

from diagnose.listing import dns as listing_dns
from diagnose.listing import text as listing_text
from diagnose.listing.common import Context, Truncated, mac_text

DNS_PORT, MDNS_PORT, BOOTPS, BOOTPC, NTP_PORT, VXLAN_PORT, SIP_PORT = 53, 5353, 67, 68, 123, 4789, 5060
_NTP_MODES = ("unspecified", "symmetric active", "symmetric passive", "Client", "Server", "Broadcast",
              "Control Message", "Reserved")


def print_udp(out: list[str], pkt: bytes, off: int, length: int, ctx: Context, src: str | None,
              dst: str | None, fragmented: bool = False) -> None:
    """`fragmented`: the first fragment of an IP datagram, whose UDP length covers more than this packet."""
    if off + 4 > len(pkt):
        if src is not None:
            out.append(f"{src} > {dst}:")
        raise Truncated("udp")
    sport, dport = struct.unpack_from(">HH", pkt, off)
    out.append(f"{src}.{sport} > {dst}.{dport}: " if src is not None else f"{sport} > {dport}: ")
    if off + 6 > len(pkt):
        raise Truncated("udp")
    ulen = struct.unpack_from(">H", pkt, off + 4)[0]
    if ulen < 8:
        out.append(f"truncated-udplength {ulen}")
        return
    if ulen > length and not fragmented:
        out.append(f"UDP, bad length {ulen - 8} > {length - 8}")
        return
    size = min(ulen, length) - 8
    data = pkt[off + 8 : off + 8 + size]
    ports = (sport, dport)
    if BOOTPS in ports or BOOTPC in ports:
        _bootp(out, data, size)
    elif NTP_PORT in ports and data:
        out.append(f"NTPv{(data[0] >> 3) & 7}, {_NTP_MODES[data[0] & 7]}, length {size}")
    elif DNS_PORT in ports:
        listing_dns.print_dns(out, data, size, is_mdns=False)
    elif MDNS_PORT in ports:
        listing_dns.print_dns(out, data, size, is_mdns=True)
    elif VXLAN_PORT in ports and len(data) >= 8:
        flags = data[0]
        vni = int.from_bytes(data[4:7], "big")
        out.append(f"VXLAN, flags [{'I' if flags & 0x08 else 'none'}] (0x{flags:02x}), vni {vni}\n")
        from diagnose.listing.link import print_ethernet  # the inner frame: a link layer again

        print_ethernet(out, pkt, off + 16, size - 8, ctx)
    elif SIP_PORT in ports and data:
        listing_text.text_protocol(out, data, size, "SIP", "sip", listing_text.SIP_METHODS, code_second=True)
    else:
        out.append(f"UDP, length {ulen - 8}")  # the UDP header's length even for a first fragment


def _bootp(out: list[str], data: bytes, size: int) -> None:
    if not data:
        raise Truncated("bootp")
    if data[0] == 1:
        if len(data) < 34:
            out.append("BOOTP/DHCP, Request")
            raise Truncated("bootp")
        who = f" from {mac_text(data, 28)}" if data[1] == 1 and data[2] == 6 else ""
        out.append(f"BOOTP/DHCP, Request{who}, length {size}")
    elif data[0] == 2:
        out.append(f"BOOTP/DHCP, Reply, length {size}")
    else:
        out.append(f"BOOTP/DHCP, op-#{data[0]}, length {size}")
