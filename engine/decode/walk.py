"""The walk over one frame, layer by layer, and the chunk kernels that run it for every row of a packet table."""

from __future__ import annotations

import numpy as np

from ..jit import kernel
from ..jit import inline
from ..packet import ENC_IPIP, ST_IP_FRAGMENT, ST_NOT_IP, ST_REASSEMBLED, ST_TRUNCATED
from . import layers as L
from .arp import decode_arp
from .ethernet import ETH_IPV4, ETH_IPV6, decode_ethernet, decode_ethertype
from .icmp import decode_icmp
from .ip import decode_ipv4, decode_ipv6
from .link import decode_link
from .transport import decode_tcp, decode_udp
from .tunnel import decode_gre, decode_udp_tunnel
from .wlan import decode_wlan

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58


@inline
def clear_upper(r):
    """Transport columns to 'absent' (on every row, and again when a tunnel leads to an inner IP header)."""
    r.l4_off = -1
    r.l4_len = 0
    r.sport = 0
    r.dport = 0
    r.tcp_seq = 0
    r.tcp_ack = 0
    r.tcp_flags = 0
    r.tcp_hlen = 0
    r.tcp_win = 0
    r.tcp_urp = 0
    r.tcp_csum = 0
    r.tcp_opts = 0
    r.opt_mss = 0
    r.opt_ws = 0
    r.opt_ts_val = 0
    r.opt_ts_ecr = 0
    r.sack_count = 0
    for k in range(r.sack_left.shape[0]):
        r.sack_left[k] = 0
        r.sack_right[k] = 0
    r.udp_len = 0
    r.udp_csum = 0
    r.icmp_type = -1
    r.icmp_code = -1
    r.icmp_id = 0
    r.icmp_seq = 0
    r.payload_off = -1
    r.payload_len = 0
    r.q_ipv = 0
    r.q_src_hi = 0
    r.q_src_lo = 0
    r.q_dst_hi = 0
    r.q_dst_lo = 0
    r.q_proto = 0
    r.q_sport = 0
    r.q_dport = 0
    r.q_tcp_seq = 0


@inline
def reset_row(r):
    """Every decode column to 'absent', so a reused table never shows a previous chunk's values."""
    r.status = 0
    r.encap = 0
    r.eth_src = 0
    r.eth_dst = 0
    r.eth_type = 0
    r.vlan_id = -1
    r.vlan_count = 0
    r.mpls_label = -1
    r.outer_l3_off = -1
    r.l3_off = -1
    r.ipv = 0
    r.src_hi = 0
    r.src_lo = 0
    r.dst_hi = 0
    r.dst_lo = 0
    r.ip_hl = 0
    r.ip_tos = 0
    r.ip_len = 0
    r.ip_id = 0
    r.ip_flags = 0
    r.frag_off = 0
    r.ip_ttl = 0
    r.ip_proto = 0
    r.ip_csum = 0
    r.arp_op = 0
    r.arp_spa = 0
    r.arp_tpa = 0
    clear_upper(r)


@inline
def decode_upper(buf, base, p, end, proto, limit, r):
    """The payload of an IP datagram: a transport header (walk ends) or a tunnel (walk goes on)."""
    if proto == IPPROTO_TCP:
        decode_tcp(buf, base, p, end, limit, r)
    elif proto == IPPROTO_UDP:
        decode_udp(buf, base, p, end, limit, r)
        if r.payload_off >= 0:
            return decode_udp_tunnel(buf, p + 8, end, np.int64(r.sport), np.int64(r.dport), r)
    elif proto == IPPROTO_ICMP:
        decode_icmp(buf, base, p, end, limit, False, r)
    elif proto == IPPROTO_ICMPV6:
        decode_icmp(buf, base, p, end, limit, True, r)
    elif proto == IPPROTO_IPIP:
        r.encap |= ENC_IPIP
        return L.IPV4, p, 0, 0
    elif proto == IPPROTO_IPV6:
        r.encap |= ENC_IPIP
        return L.IPV6, p, 0, 0
    else:
        r.l4_off = p - base
        r.l4_len = limit - p
        if proto == IPPROTO_GRE:
            return decode_gre(buf, p, end, r)
    return L.DONE, p, 0, 0


@inline
def walk(buf, base, end, wend, layer, p, sel, limit, r):
    """Decode from `layer` at absolute position p until a layer says DONE.

    end bounds every read (captured bytes); wend is where the bytes on the wire (or the enclosing datagram) end.
    """
    for _ in range(L.MAX_LAYERS):
        if layer == L.DONE:
            return
        if layer == L.ETHERNET:
            if sel > 0:  # an encapsulated frame that ends with its own FCS
                end = max(p, end - sel)
                wend = max(p, wend - sel)
            layer, p, sel, limit = decode_ethernet(buf, p, end, r)
        elif layer == L.ETHERTYPE:
            layer, p, sel, limit = decode_ethertype(buf, p, end, sel, r)
        elif layer == L.IP_BY_VERSION:
            if p >= end:
                r.status |= ST_TRUNCATED
                return
            version = buf[p] >> 4
            if version == 4:
                layer = L.IPV4
            elif version == 6:
                layer = L.IPV6
            else:
                r.status |= ST_NOT_IP
                return
        elif layer == L.IPV4 or layer == L.IPV6:
            if r.ipv != 0:  # an inner header: the tunnel's outermost header stays reachable
                if r.outer_l3_off < 0:
                    r.outer_l3_off = r.l3_off
                clear_upper(r)
            if layer == L.IPV4:
                r.eth_type = ETH_IPV4
                layer, p, sel, limit = decode_ipv4(buf, base, p, end, wend, r)
            else:
                r.eth_type = ETH_IPV6
                layer, p, sel, limit = decode_ipv6(buf, base, p, end, wend, r)
        elif layer == L.UPPER:
            wend = limit  # a tunnelled datagram cannot outlast the one carrying it
            layer, p, sel, limit = decode_upper(buf, base, p, end, sel, limit, r)
        elif layer == L.ARP:
            decode_arp(buf, base, p, end, r)
            return
        elif layer == L.WLAN:
            layer, p, sel, limit = decode_wlan(buf, p, end, sel, r)
        else:
            return


@kernel
def decode_rows(buf, table, rows, starts, header_lens, totals, protos):
    """Fill the decode columns of every row from its frame bytes; returns how many rows are IP fragments.

    With a non-empty `rows`, decode instead the upper layer of the reassembled datagrams appended to buf: row
    rows[j]'s datagram starts at absolute position starts[j], has an IP header of header_lens[j] bytes, totals[j]
    bytes in all, and carries protocol protos[j]. (One kernel for both, so the inlined walk is compiled once.)
    """
    n = buf.shape[0]
    reassembled = rows.shape[0] > 0
    count = rows.shape[0] if reassembled else table.shape[0]
    fragments = 0
    for j in range(count):
        if reassembled:
            r = table[rows[j]]
            base = np.int64(r.data)
            p3 = starts[j]
            r.status = (r.status & ~np.uint16(ST_IP_FRAGMENT)) | ST_REASSEMBLED
            r.l3_off = p3 - base
            end = p3 + totals[j]
            wend = end
            layer, p, sel, limit = L.UPPER, p3 + header_lens[j], protos[j], end
        else:
            r = table[j]
            reset_row(r)
            base = np.int64(r.data)
            cap = np.int64(r.caplen)
            if base < 0 or cap < 0 or base > n:
                cap = 0
            elif base + cap > n:
                cap = n - base  # never read past the buffer, whatever the reader claims
            end = base + cap
            wend = base + max(np.int64(r.wirelen), cap)
            layer, p, sel, limit = decode_link(buf, base, end, np.int64(r.linktype), r)
        walk(buf, base, end, wend, layer, p, sel, limit, r)
        if r.status & ST_IP_FRAGMENT:
            fragments += 1
    return fragments
