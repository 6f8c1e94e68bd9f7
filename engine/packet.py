"""The packet table: one numpy structured row per packet, filled chunk by chunk by numba kernels.

This is the contract between the capture readers (frame columns), the decoder (link/network/transport columns), the
flow table (stream columns) and everything above (listing, filters, facts). No per-packet Python objects exist on
the hot path: a chunk of packets is one array of PACKET_DTYPE rows.

Conventions
* Offsets (`*_off`) are byte offsets from the start of the frame (`data`), -1 when the layer is absent. They may
  point past `caplen`: a reassembled datagram (ST_REASSEMBLED) is appended to the chunk buffer after the frames.
* Tunnels (GRE incl. ERSPAN, VXLAN, IP-in-IP, Teredo, GTP-U) are decoded to the inner packet: network and transport
  columns describe the innermost IP header and `outer_l3_off` points at the outermost one. Link columns (MACs, VLAN,
  MPLS) describe the outermost link header, the one the capture was taken on (for Cisco FabricPath, whose outer
  addresses are switch ids, the inner frame's, as Wireshark shows them).
* IP fragments (ST_IP_FRAGMENT) get no transport decode. The row whose fragment completes a datagram gets
  ST_REASSEMBLED instead: its IP columns still describe its own header (as Wireshark shows them), while l3_off,
  l4_off, payload_off, l4_len and payload_len describe the reassembled datagram (and, when that datagram is a
  tunnel, all network and transport columns describe its inner packet).
* Addresses are two uint64 halves (`*_hi`, `*_lo`), big-endian order. IPv4 sits in the low 32 bits of `*_lo` with
  `*_hi` = 0 and `ipv` = 4; IPv6 uses all 128 bits with `ipv` = 6.
* Values are as on the wire (raw TCP window, raw sequence numbers); relative numbers and scaling are derived later.
* Times are integer nanoseconds since the Unix epoch (captures with finer resolution are rounded down).
"""

from __future__ import annotations

import numpy as np

# ---- status bits (per packet) -------------------------------------------------------------------------------------
ST_LINK_UNDECODED = 1 << 0  # link type we do not decode: frame counted and listed only
ST_TRUNCATED = 1 << 1  # a header we needed extends past the captured bytes (snaplen or damaged)
ST_MALFORMED = 1 << 2  # a header field is impossible (bad IHL, bad TCP data offset, ...)
ST_IP_FRAGMENT = 1 << 3  # an IP fragment (not the reassembled whole)
ST_REASSEMBLED = 1 << 4  # this row holds the reassembled datagram (set on the last fragment, like Wireshark)
ST_ICMP_ERROR = 1 << 5  # ICMP/ICMPv6 error carrying a quoted packet (q_* columns valid)
ST_NOT_IP = 1 << 6  # decoded link layer but no IP inside (ARP, LLDP, ...)

# ---- encapsulation bits ------------------------------------------------------------------------------------------
ENC_VLAN = 1 << 0  # at least one 802.1Q tag
ENC_QINQ = 1 << 1  # 802.1ad (0x88a8) or stacked tags
ENC_MPLS = 1 << 2
ENC_PPPOE = 1 << 3
ENC_GRE = 1 << 4
ENC_VXLAN = 1 << 5
ENC_IPIP = 1 << 6  # IPv4/IPv6 in IPv4/IPv6 (protocol 4 or 41)
ENC_RADIOTAP = 1 << 7
ENC_WLAN = 1 << 8  # IEEE 802.11 data frame with LLC/SNAP
ENC_SLL = 1 << 9  # Linux cooked capture v1 or v2
ENC_NULL = 1 << 10  # BSD loopback (LINKTYPE_NULL or LINKTYPE_LOOP)
ENC_TEREDO = 1 << 11  # IPv6 in UDP port 3544 (RFC 4380)
ENC_GTP = 1 << 12  # GTPv1-U (UDP port 2152): mobile-network user plane
ENC_FABRICPATH = 1 << 13  # Cisco FabricPath (EtherType 0x8903): an Ethernet frame inside

# ---- TCP option presence bits ------------------------------------------------------------------------------------
OPT_MSS = 1 << 0
OPT_WS = 1 << 1
OPT_SACK_PERM = 1 << 2
OPT_SACK = 1 << 3
OPT_TS = 1 << 4
OPT_MALFORMED = 1 << 7

# ---- TCP flag bits (as in the 12-bit flags field, tcp.flags) -----------------------------------------------------
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG, TH_ECE, TH_CWR, TH_NS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100

MAX_SACK_BLOCKS = 4

PACKET_DTYPE = np.dtype(
    [
        # frame (filled by the capture reader)
        ("frame", np.int64),  # 1-based frame number in the capture
        ("ts", np.int64),  # ns since epoch
        ("caplen", np.int32),  # captured bytes
        ("wirelen", np.int32),  # original length on the wire
        ("iface", np.int32),  # interface index (pcapng IDB order; 0 for pcap)
        ("linktype", np.int32),  # LINKTYPE_* of the interface
        ("data", np.int64),  # offset of the frame bytes in the chunk buffer
        # decode results
        ("status", np.uint16),
        ("encap", np.uint16),
        ("eth_src", np.uint64),  # 48-bit MAC, 0 when absent
        ("eth_dst", np.uint64),
        ("eth_type", np.uint16),  # protocol of the innermost network layer (0x0800, 0x86dd, 0x0806, ...) after
        #                           VLAN/MPLS/PPPoE/LLC, whatever the link type (also set for SLL, NULL, RAW, 802.11)
        ("vlan_id", np.int16),  # outermost VLAN id, -1 when untagged
        ("vlan_count", np.uint8),
        ("mpls_label", np.int32),  # outermost MPLS label, -1 when none
        ("outer_l3_off", np.int32),  # outermost IP header when a tunnel was decoded, else -1
        ("l3_off", np.int32),  # innermost network header (IPv4, IPv6 or ARP)
        ("ipv", np.uint8),  # 4, 6, or 0 (not IP)
        ("src_hi", np.uint64),
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("ip_hl", np.uint8),  # IPv4 header length in bytes; IPv6: 40 + extension headers up to the upper layer
        #                       (or up to the fragment's data after a fragment header), saturating at 255
        ("ip_tos", np.uint8),  # DSCP+ECN (IPv6 traffic class)
        ("ip_len", np.int32),  # IPv4 total length / IPv6 payload length + 40
        ("ip_id", np.uint32),  # IPv4 identification / IPv6 fragment identification
        ("ip_flags", np.uint8),  # IPv4: 0x4 reserved 0x2 DF 0x1 MF (bits as in the header >> 13); IPv6: 0x1 M
        ("frag_off", np.uint16),  # fragment offset in 8-byte units
        ("ip_ttl", np.uint8),  # TTL / hop limit
        ("ip_proto", np.uint8),  # upper-layer protocol (after IPv6 extension headers)
        ("ip_csum", np.uint16),  # IPv4 header checksum as in the packet
        ("l4_off", np.int32),
        ("l4_len", np.int32),  # transport bytes by IP length (header + payload), not limited by caplen
        ("sport", np.uint16),
        ("dport", np.uint16),
        ("tcp_seq", np.uint32),
        ("tcp_ack", np.uint32),
        ("tcp_flags", np.uint16),  # 12 bits: NS CWR ECE URG ACK PSH RST SYN FIN (+ reserved bits)
        ("tcp_hlen", np.uint8),  # data offset in bytes
        ("tcp_win", np.uint16),  # raw window field (tcp.window_size_value)
        ("tcp_urp", np.uint16),
        ("tcp_csum", np.uint16),
        ("tcp_opts", np.uint8),  # OPT_* presence bits
        ("opt_mss", np.uint16),
        ("opt_ws", np.uint8),  # shift count
        ("opt_ts_val", np.uint32),
        ("opt_ts_ecr", np.uint32),
        ("sack_count", np.uint8),
        ("sack_left", np.uint32, (MAX_SACK_BLOCKS,)),
        ("sack_right", np.uint32, (MAX_SACK_BLOCKS,)),
        ("udp_len", np.uint16),
        ("udp_csum", np.uint16),
        ("icmp_type", np.int16),  # -1 when not ICMP/ICMPv6
        ("icmp_code", np.int16),
        ("icmp_id", np.uint16),  # echo id / seq (also useful for ICMP flows)
        ("icmp_seq", np.uint16),
        ("arp_op", np.uint16),  # ARP: opcode, sender/target protocol addresses (IPv4)
        ("arp_spa", np.uint32),
        ("arp_tpa", np.uint32),
        ("payload_off", np.int32),  # first byte of the transport payload, -1 when none
        ("payload_len", np.int32),  # payload bytes by IP length (tcp.len / udp payload), may exceed captured bytes
        # quoted packet inside an ICMP error (ST_ICMP_ERROR)
        ("q_ipv", np.uint8),
        ("q_src_hi", np.uint64),
        ("q_src_lo", np.uint64),
        ("q_dst_hi", np.uint64),
        ("q_dst_lo", np.uint64),
        ("q_proto", np.uint8),
        ("q_sport", np.uint16),
        ("q_dport", np.uint16),
        ("q_tcp_seq", np.uint32),
        # flow table results
        ("conv", np.int32),  # conversation index (all protocols), -1 when none
        ("stream", np.int32),  # tcp.stream or udp.stream of the (innermost) packet, -1 when none
        ("dir", np.int8),  # 0 = sent by endpoint A of the conversation (its first sender), 1 = by endpoint B
        ("outer_stream", np.int32),  # udp.stream of the outer UDP flow of a UDP tunnel (VXLAN, GTP, Teredo), or -1
    ],
    align=True,
)


def new_table(n: int) -> np.ndarray:
    """An empty packet table of n rows with 'absent' defaults."""
    t = np.zeros(n, dtype=PACKET_DTYPE)
    for name in ("vlan_id", "mpls_label", "outer_l3_off", "l3_off", "l4_off", "payload_off", "icmp_type",
                 "icmp_code", "conv", "stream", "outer_stream"):
        t[name] = -1
    return t
