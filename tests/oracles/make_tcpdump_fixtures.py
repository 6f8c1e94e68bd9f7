#!/usr/bin/env python3
"""Store what `tcpdump -n` prints for the test captures, so tests/test_listing.py can compare `diagnose list` with it.

Developer script: it needs tcpdump on PATH and is never run by the test suite (tests only read the stored text).
Run it with the project venv (scapy builds the crafted captures) after the captures changed:

    /work/venv/bin/python tests/oracles/make_tcpdump_fixtures.py

Output: tests/data/fixtures/tcpdump/<capture path relative to tests/data, without extension>.<variant>.txt, where
variant is the tcpdump time/dump option set below. Large outputs are gzip-compressed (.txt.gz) to keep the repo small.
Besides the lab and corpus captures it writes small crafted captures (tests/data/fixtures/tcpdump/crafted/*.pcap,
built with scapy, fixed time stamps) for cases those lack: TCP flags/options/odd headers, tcpdump's relative sequence
numbers, ICMP/ICMPv6 messages, ARP and link layers, IP fragments/tunnels/extension headers, DNS, time stamps.
Every command runs with TZ=UTC so the wall-clock variants do not depend on the machine's time zone.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

TESTS_DATA = Path(__file__).resolve().parent.parent / "data"
OUT = TESTS_DATA / "fixtures" / "tcpdump"

# variant name -> extra tcpdump options (always with -n -r FILE)
TIME_VARIANTS = {
    "default": [],  # HH:MM:SS.ffffff (local time; UTC here)
    "tt": ["-tt"],  # seconds since the epoch
    "ttt": ["-ttt"],  # delta to the previous packet
    "tttt": ["-tttt"],  # date and time
    "ttttt": ["-ttttt"],  # delta to the first packet
    "X": ["-X"],  # hex + ASCII dump of each packet (from the network layer)
}
SMALL = 50  # captures with fewer packets get every variant; larger ones only "default"
GZIP_ABOVE = 64 * 1024

# Corpus captures chosen for link types and protocols the lab captures lack.
CORPUS = [
    "corpus/tcpdump/tcp-handshake-nano.pcap",  # Linux SLL, nanosecond pcap
    "corpus/zeek/linuxsll-arp.pcap",  # Linux SLL, ARP
    "corpus/zeek/linux_dlt_sll2.pcap",  # Linux SLL2: ICMP, ICMPv6, ARP, RARP
    "corpus/ja4/tls-alpn-h2.pcap",  # BSD NULL, IPv6 TCP
    "corpus/illustrated-tls13/capture.pcap",  # BSD NULL, IPv4 TCP
    "corpus/zeek/icmp_dot1q.pcap",  # 802.1Q VLAN, ARP, ICMP echo
    "corpus/zeek/5-pings.pcap",  # ICMP echo
    "corpus/zeek/dns-two-responses.pcap",  # DNS: EDNS, CNAME chain, RRSIG
    "corpus/tcpdump/dns-uri.pcap",  # DNS: URI records, NXDomain, no RD
    "corpus/tcpdump/dns_udp.pcap",  # DNS query/response
    "corpus/zeek/dns-edns-ecs.pcap",  # DNS over IPv4 and IPv6, EDNS client subnet
    "corpus/zeek/ipv6-fragmented-dns.pcap",  # IPv6 fragments
    "corpus/zeek/fragmented-3.pcap",  # IPv4 fragments
    "corpus/tcpdump/LINKTYPE_RAW_ipv4.pcap",  # raw IP link type
    "corpus/tcpdump/802.1ad_QinQ.pcap",  # 802.1ad, ARP
    "corpus-zeek/q-in-q.pcap",  # stacked VLAN tags, UDP
    "corpus-zeek/mpls-in-vlan.pcap",  # MPLS label stacks
    "corpus/zeek/http-vlan-0.pcap",  # VLAN 0, HTTP on port 80
    "corpus/zeek/get.pcap",  # HTTP GET/200
    "corpus-zeek/ipv6.pcap",  # IPv6 TCP (FTP)
    "corpus/zeek/handshake-reorder.pcap",  # reordered handshake: relative sequence numbers
    "corpus-zeek/missing-syn.pcap",  # connection without its SYN
    "corpus-zeek/syn-then-rst.pcap",
    "corpus/zeek/fin_retransmission.pcap",
    "corpus/tcpdump/tcp_rst_data.pcap",  # RST carrying data
    "corpus/zeek/pcapng-multi-interface.pcapng",  # pcapng, several interfaces
    "corpus/tcpdump/unsupported-link-type-160.pcap",  # link type tcpdump does not decode
]


def crafted_captures() -> dict[str, list]:
    """Small captures built with scapy, fixed time stamps, for listing cases the lab and corpus captures lack."""
    from scapy.all import (ARP, BOOTP, DHCP, DNS, DNSQR, DNSRR, DNSRRMX, DNSRROPT, DNSRRSOA, DNSRRSRV, ESP, GRE, ICMP,
                           IP, NTP, TCP, UDP, VXLAN, Dot1Q, Ether, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                           IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw, PPPoE, PPP)
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6MLDone,
                                    ICMPv6MLQuery, ICMPv6MLReport, ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS,
                                    ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr,
                                    ICMPv6PacketTooBig, ICMPv6ParamProblem, ICMPv6TimeExceeded)
    from scapy.contrib.igmp import IGMP

    E = Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb")
    I = IP(src="10.0.0.1", dst="10.0.0.2")
    I6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    caps: dict[str, list] = {}

    # ---- TCP: flags, options, payload summaries ----
    p = []
    for fl in ["", "F", "S", "R", "P", "A", "U", "E", "C", "SAEC", "FPU", 0x100, 0xFFF]:
        p.append(E / I / TCP(sport=1000, dport=2000, flags=fl, seq=5, ack=7, urgptr=3))
    opt = lambda o: E / I / TCP(sport=1, dport=2, flags="S", options=o)
    p.append(opt([("MSS", 1460), ("NOP", None), ("WScale", 14), ("SAckOK", b""), ("Timestamp", (1, 2)), ("EOL", None)]))
    p.append(opt([(34, b""), (34, b"abcdefgh"), (28, b"\x80\x10"), (99, b"xyz"), (19, b"0123456789abcdef")]))
    p.append(opt([(254, b"\xf9\x89abcd"), (254, b"\x12\x34"), (5, b"abc")]))
    p.append(opt([("EOL", None), ("NOP", None), ("NOP", None), ("NOP", None)]))
    p.append(opt([("NOP", None), ("EOL", None), ("MSS", 5), ("NOP", None)]))
    p.append(opt([(2, b"\x05")]))
    p.append(opt([(3, b"")]))
    p.append(opt([(8, b"\x00" * 8), (1, b""), (77, b"")]))
    for payload in [b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n", b"GET /x HTTP/1.0", b"get /x HTTP/1.0\r\n",
                    b"FOO /x HTTP/1.0\r\n", b"PATCH /x HTTP/1.1\r\n", b"CCM_POST / HTTP/1.1\r\n", b"FOO 200 bar\r\n",
                    b"GET\r\n", b"GET \r\n", b"GET\t/x\r\n", b"  GET /x\r\n", b"GET /x\rHTTP\r\n", b"GET /\xc3x\r\n",
                    b"GET /x HTTP/1.1\r", b"HTTP/1.1 2000 OK\r\n", b"HTTP/1.1 200\r\n", b"\r\n",
                    b"A" * 200 + b" 200 OK\r\n", b"GET /" + b"a" * 150 + b" HTTP/1.1\r\n"]:
        p.append(E / I / TCP(sport=1, dport=80, flags="PA") / payload)
    for sport, payload in [(80, b"HTTP/1.1 200 OK\r\n"), (80, b"HTTP/1.1 200 O\x01K\r\n"),
                           (80, b"HTTP/1.1 404 Not Found\nfoo\r\n"), (8080, b"HTTP/1.1 500 Oops\r\n")]:
        p.append(E / I / TCP(sport=sport, dport=1, flags="PA") / payload)
    p.append(E / I / TCP(sport=1, dport=3128, flags="PA") / b"GET /x HTTP/1.0\r\n")
    p.append(E / I / TCP(sport=1, dport=443, flags="PA") / b"\x16\x03\x01\x00\x05hello")
    p.append(E / I / TCP(sport=1, dport=22, flags="PA") / b"SSH-2.0-OpenSSH_8.0\r\n")
    p.append(E / I / TCP(sport=1, dport=22, flags="PA") / b"SSH-2.0-x")
    p.append(E / I / TCP(sport=1, dport=21, flags="PA") / b"USER x\r\n")
    p.append(E / I / TCP(sport=25, dport=2, flags="PA") / b"220 hi\r\n")
    p.append(E / I / TCP(sport=554, dport=2, flags="PA") / b"RTSP/1.0 200 OK\r\n")
    p.append(E / I / TCP(sport=2, dport=554, flags="PA") / b"DESCRIBE rtsp://x RTSP/1.0\r\n")
    p.append(E / I / TCP(sport=1, dport=80, flags="RA") / b"GET /x HTTP/1.0\r\n")
    p.append(E / I / TCP(sport=1, dport=1234, flags="R") / b"hello")
    dns = bytes(DNS(id=12, rd=1, qd=DNSQR(qname="a.example.")))
    p.append(E / I / TCP(sport=1, dport=53, flags="PA") / (struct.pack(">H", len(dns)) + dns))
    p.append(E / I / TCP(sport=53, dport=1, flags="PA") / (struct.pack(">H", len(dns)) + dns[:10]))
    p.append(E / I / TCP(sport=1, dport=2, dataofs=3))
    p.append(E / I / TCP(sport=1, dport=2, dataofs=15))
    caps["tcp"] = p

    # ---- TCP relative sequence numbers (tcpdump's conversation table) ----
    p = []
    c, s = IP(src="192.0.2.10", dst="192.0.2.1"), IP(src="192.0.2.1", dst="192.0.2.10")
    c6, s6 = IPv6(src="2001:db8::10", dst="2001:db8::1"), IPv6(src="2001:db8::1", dst="2001:db8::10")
    for ipc, ips in ((c, s), (c6, s6)):
        for isn_c, isn_s in ((1000, 5000), (4294967000, 90)):  # second round reuses the 4-tuple, seq wraps
            w = lambda n: n & 0xFFFFFFFF
            p.append(E / ipc / TCP(sport=40000, dport=80, flags="S", seq=isn_c))
            p.append(E / ips / TCP(sport=80, dport=40000, flags="SA", seq=isn_s, ack=w(isn_c + 1)))
            p.append(E / ipc / TCP(sport=40000, dport=80, flags="A", seq=w(isn_c + 1), ack=isn_s + 1))
            p.append(E / ipc / TCP(sport=40000, dport=80, flags="PA", seq=w(isn_c + 1), ack=isn_s + 1) / (b"x" * 500))
            p.append(E / ips / TCP(sport=80, dport=40000, flags="A", seq=isn_s + 1, ack=w(isn_c + 101),
                                   options=[("NOP", None), ("NOP", None),
                                            ("SAck", (w(isn_c + 201), w(isn_c + 301)))]))
            p.append(E / ips / TCP(sport=80, dport=40000, flags="R", seq=isn_s + 1))
            p.append(E / ipc / TCP(sport=40000, dport=80, flags="FA", seq=w(isn_c + 501), ack=isn_s + 1))
    # joined mid-stream: the first packet with ACK sets the bases
    m1, m2 = IP(src="198.51.100.7", dst="198.51.100.3"), IP(src="198.51.100.3", dst="198.51.100.7")
    p.append(E / m1 / TCP(sport=5555, dport=6666, flags="PA", seq=777, ack=888) / (b"y" * 10))
    p.append(E / m2 / TCP(sport=6666, dport=5555, flags="A", seq=888, ack=787))
    p.append(E / m1 / TCP(sport=5555, dport=6666, flags="PA", seq=787, ack=888) / (b"y" * 10))
    p.append(E / m2 / TCP(sport=6666, dport=5555, flags="SA", seq=100, ack=50))  # SYN+ACK resets the bases
    p.append(E / m1 / TCP(sport=5555, dport=6666, flags="A", seq=50, ack=101))
    # both ends on one host and port
    h = IP(src="127.0.0.1", dst="127.0.0.1")
    p.append(E / h / TCP(sport=7, dport=7, flags="A", seq=10, ack=20))
    p.append(E / h / TCP(sport=7, dport=7, flags="A", seq=30, ack=40))
    caps["tcp_relative"] = p

    # ---- ICMP and ICMPv6 ----
    p = []
    q = IP(src="10.0.0.2", dst="10.9.9.9") / UDP(sport=5, dport=53)
    for t, code in [(3, c) for c in range(16)] + [(11, 0), (11, 1), (5, 0), (5, 1), (5, 2), (5, 3), (12, 0), (4, 0)]:
        kw = {"nexthopmtu": 1400} if (t, code) == (3, 4) else {"gw": "10.1.1.1"} if t == 5 else {}
        p.append(E / I / ICMP(type=t, code=code, **kw) / q)
    p.append(E / I / ICMP(type=3, code=4) / q)
    p.append(E / I / ICMP(type=3, code=3) / IP(src="10.0.0.2", dst="10.9.9.9") / TCP(sport=5, dport=80))
    p.append(E / I / ICMP(type=3, code=2) / IP(src="10.0.0.2", dst="10.9.9.9", proto=47))
    for t in [0, 8, 13, 15, 16, 17, 18, 10, 30, 99]:
        p.append(E / I / ICMP(type=t, id=7, seq=9) / b"abcd")
    p.append(E / I / ICMP(type=14, id=7, seq=9, ts_ori=1000, ts_rx=3723004, ts_tx=86399999))
    p.append(E / I6 / ICMPv6EchoRequest(id=1, seq=2) / b"xx")
    p.append(E / I6 / ICMPv6EchoReply(id=1, seq=2))
    p.append(E / I6 / ICMPv6ND_NS(tgt="fe80::1") / ICMPv6NDOptSrcLLAddr(lladdr="00:11:22:33:44:55"))
    p.append(E / I6 / ICMPv6ND_NA(tgt="fe80::1", R=1, S=1, O=1))
    p.append(E / I6 / ICMPv6ND_RS())
    p.append(E / I6 / ICMPv6ND_RA())
    p.append(E / I6 / ICMPv6ND_Redirect(tgt="fe80::1", dst="2001:db8::9"))
    inner = IPv6(src="2001:db8::2", dst="2001:db8::9")
    p.append(E / I6 / ICMPv6DestUnreach(code=4) / inner / UDP(sport=5, dport=53))
    for code in (0, 1, 2, 3, 4):
        p.append(E / I6 / ICMPv6DestUnreach(code=code) / inner / TCP(sport=5, dport=443))
    p.append(E / I6 / ICMPv6PacketTooBig(mtu=1280) / inner / UDP(sport=5, dport=53))
    p.append(E / I6 / ICMPv6TimeExceeded(code=0) / inner / UDP(sport=5, dport=53))
    for code in (0, 1, 2):
        p.append(E / I6 / ICMPv6ParamProblem(code=code, ptr=40) / inner / UDP(sport=5, dport=53))
    p.append(E / I6 / ICMPv6MLReport2())
    p.append(E / I6 / ICMPv6MLQuery())
    p.append(E / I6 / ICMPv6MLReport())
    p.append(E / I6 / ICMPv6MLDone())
    p.append(E / I6 / IPv6ExtHdrHopByHop() / ICMPv6MLReport2())
    caps["icmp"] = p

    # ---- link layers and ARP ----
    p = []
    p.append(E / ARP(op=1, psrc="1.1.1.1", pdst="1.1.1.2", hwsrc="00:11:22:33:44:55"))
    p.append(E / ARP(op=1, psrc="1.1.1.1", pdst="1.1.1.2", hwdst="00:aa:00:00:00:01"))
    p.append(E / ARP(op=2, psrc="1.1.1.1", pdst="1.1.1.2", hwsrc="00:11:22:33:44:55"))
    for op in (3, 4, 8, 9):
        p.append(E / ARP(op=op, hwsrc="02:00:00:00:00:01", psrc="192.0.2.2", hwdst="02:00:00:00:00:02",
                         pdst="192.0.2.3"))
    p.append(E / ARP(op=1, ptype=0x86DD, plen=16) / (b"\x00" * 20))
    p.append(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb", type=0x88CC) / (b"\x02\x07\x04" + b"\x00" * 50))
    p.append(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb", type=0x1234) / (b"\x02\x07\x04" + b"\x00" * 50))
    p.append(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / Dot1Q(vlan=5, type=0x1234) / (b"\x01" * 20))
    p.append(E / Dot1Q(vlan=5) / ARP(psrc="192.0.2.2", pdst="192.0.2.1"))
    p.append(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb", type=0x88A8) / Dot1Q(vlan=5) / Dot1Q(vlan=6)
             / IP(src="10.1.1.1", dst="10.1.1.2") / UDP(sport=1, dport=2) / b"abc")
    p.append(E / MPLS(label=16, s=0, ttl=9) / MPLS(label=17, cos=3, s=1, ttl=8) / IP(src="10.1.1.1", dst="10.1.1.2")
             / UDP(sport=1, dport=2))
    p.append(E / PPPoE(sessionid=0x11) / PPP(proto=0x0021) / IP(src="10.1.1.1", dst="10.1.1.2") / UDP(sport=1, dport=2))
    p.append(Raw(b"\x00\x11\x22\x33\x44\x55\x66"))  # shorter than an Ethernet header
    caps["link"] = p

    # ---- IP layer: fragments, extension headers, tunnels, odd lengths ----
    p = []
    p.append(E / I6 / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2) / b"x")
    p.append(E / I6 / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2))
    p.append(E / I6 / IPv6ExtHdrRouting(addresses=["2001:db8::5", "2001:db8::6"]) / UDP(sport=1, dport=2))
    p.append(E / I6 / IPv6ExtHdrFragment(offset=0, m=1, id=5) / UDP(sport=1, dport=2, len=100) / (b"x" * 16))
    p.append(E / I6 / IPv6ExtHdrFragment(offset=3, m=0, id=5) / (b"x" * 16))
    p.append(E / I6 / UDP(sport=1, dport=2) / b"x")
    p.append(E / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59))
    p.append(E / IPv6(src="::", dst="::ffff:1.2.3.4", nh=200) / b"zz")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", proto=253) / b"abcdef")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / UDP(sport=1, dport=53, len=200) / (b"x" * 40))
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / UDP(sport=1, dport=9, len=200) / (b"x" * 40))
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", flags=0, frag=6, proto=17) / (b"x" * 40))
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / ICMP() / (b"x" * 40))
    p.append(E / I / ESP(spi=0x1234, seq=5) / b"abcdefgh")
    p.append(E / IP(src="10.0.0.1", dst="224.0.0.22") / IGMP(type=0x16, gaddr="239.1.1.1"))
    p.append(E / IP(src="10.0.0.1", dst="224.0.0.22") / IGMP(type=0x17, gaddr="239.1.1.1"))
    p.append(E / IP(src="10.0.0.1", dst="224.0.0.1") / IGMP(type=0x11, gaddr="0.0.0.0"))
    p.append(E / I / GRE() / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1, dport=2))
    p.append(E / I / GRE(key_present=1, key=5, seqnum_present=1, seqence_number=7) / IP(src="1.1.1.1", dst="2.2.2.2")
             / ICMP())
    p.append(E / I / GRE(proto=0x6558) / Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / ICMP())
    p.append(E / I / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1, dport=2))
    p.append(E / I / IPv6(src="::1", dst="::2") / UDP(sport=1, dport=2))
    p.append(E / I6 / IP(src="1.1.1.1", dst="2.2.2.2") / ICMP())
    p.append(E / I / UDP(sport=1, dport=4789) / VXLAN(vni=10) / E / IP(src="1.1.1.1", dst="2.2.2.2")
             / UDP(sport=1, dport=2))
    p.append(E / I / UDP(sport=1, dport=2, len=100) / b"x")
    p.append(E / I / UDP(sport=1, dport=2, len=4) / b"x")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", len=30) / UDP(sport=1, dport=2) / b"xxxxxxxx")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", len=300) / UDP(sport=1, dport=2) / b"xxxxxxxx")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", ihl=3) / UDP(sport=1, dport=2) / b"xxxxxxxx")
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", len=10))
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", version=5))
    p.append(E / IP(src="10.0.0.1", dst="10.0.0.2", proto=6))
    p.append(E / I / UDP(sport=68, dport=67) / BOOTP(chaddr=b"\x00\x11\x22\x33\x44\x55")
             / DHCP(options=[("message-type", "discover"), "end"]))
    p.append(E / I / UDP(sport=67, dport=68) / BOOTP(op=2) / DHCP(options=[("message-type", "offer"), "end"]))
    p.append(E / I / UDP(sport=123, dport=123) / NTP())
    p.append(E / I / UDP(sport=1, dport=5060) / b"INVITE sip:x SIP/2.0\r\n")
    p.append(E / I / UDP(sport=5060, dport=1) / b"SIP/2.0 200 OK\r\n")
    p.append(E / I6 / UDP(sport=5, dport=53) / DNS(qd=DNSQR(qname="x.")))
    caps["ip"] = p

    # ---- DNS ----
    p = []
    U, R = UDP(sport=1234, dport=53), UDP(sport=53, dport=1234)
    p.append(E / I / U / DNS(id=1, rd=1, qd=DNSQR(qname="a.example.", qtype="MX")))
    p.append(E / I / U / DNS(id=2, rd=0, cd=1, ad=1, qd=DNSQR(qname="a.example.", qtype="TXT", qclass="CH")))
    p.append(E / I / U / DNS(id=3, rd=1, qd=[DNSQR(qname="a.example."), DNSQR(qname="b.example.", qtype="AAAA")],
                             qdcount=2))
    p.append(E / I / U / DNS(id=4, rd=1, opcode=5, qd=DNSQR(qname="a.example.")))
    p.append(E / I / U / DNS(id=5, rd=1, z=1, qd=DNSQR(qname=".")))
    p.append(E / I / U / DNS(id=6, rd=1, qd=DNSQR(qname=b"a\x01b.ex\xe9mple."), ar=DNSRROPT(rclass=4096)))
    for i, t in enumerate((0, 13, 41, 49, 99, 104, 249, 255, 256, 257, 65535)):
        p.append(E / I / U / DNS(id=100 + i, rd=1, qd=DNSQR(qname="t.example.", qtype=t)))
    for cls in (0, 3, 4, 255, 256):
        p.append(E / I / U / DNS(id=200 + cls, rd=1, qd=DNSQR(qname="c.example.", qclass=cls)))
    an = [DNSRR(rrname="a.example.", type="A", rdata="1.2.3.4"), DNSRR(rrname="a.example.", type="AAAA", rdata="::1"),
          DNSRR(rrname="a.example.", type="CNAME", rdata="c.example."),
          DNSRR(rrname="a.example.", type="NS", rdata="ns.example."),
          DNSRR(rrname="a.example.", type="PTR", rdata="p.example."),
          DNSRRMX(rrname="a.example.", preference=10, exchange="mx.example."),
          DNSRR(rrname="a.example.", type="TXT", rdata=["hello world", 'x"y']),
          DNSRRSRV(rrname="a.example.", priority=1, weight=2, port=3, target="t.example."),
          DNSRRSOA(rrname="example.", mname="ns.example.", rname="h.example."),
          DNSRR(rrname="a.example.", type=99, rdata=b"abc"),
          DNSRR(rrname="a.example.", type="HINFO", rdata=b"\x01a\x01b"),
          DNSRR(rrname="a.example.", type="A", rclass=3, rdata="1.2.3.4")]
    p.append(E / I / R / DNS(id=7, qr=1, aa=1, ra=1, rd=1, qd=DNSQR(qname="a.example."), an=an))
    for rc in range(16):
        p.append(E / I / R / DNS(id=8, qr=1, rcode=rc, rd=1, ra=1, qd=DNSQR(qname="a.example.")))
    p.append(E / I / R / DNS(id=9, qr=1, tc=1, ad=1, cd=1, ra=0, rd=0, qd=DNSQR(qname="a.example.")))
    p.append(E / I / R / DNS(id=10, qr=1, ra=1, rd=1, qd=DNSQR(qname="a.example."), ns=DNSRRSOA(rrname="example."),
                             ar=DNSRROPT(rclass=1232)))
    p.append(E / I / R / DNS(id=11, qr=1, ra=1, qd=None, qdcount=0, an=DNSRR(rrname="x.", rdata="1.1.1.1")))
    p.append(E / I / UDP(sport=5353, dport=5353) / DNS(id=0, qr=0, qd=DNSQR(qname="_x._tcp.local.", qtype="PTR",
                                                                          unicastresponse=1)))
    flush = DNSRR(rrname="_x._tcp.local.", type="PTR", rdata="y._x._tcp.local.")
    flush.rclass = 0x8001
    p.append(E / I / UDP(sport=5353, dport=5353) / DNS(id=0, qr=1, aa=1, an=flush))
    d = bytes(DNS(id=12, rd=1, qd=DNSQR(qname="a.example.")))
    p.append(E / I / R / Raw(d[:20]))
    p.append(E / I / R / Raw(d[:5]))
    p.append(E / I / R / Raw(bytes.fromhex("000d8180000100010000000001610000010001c00c00010001000000050004")
                             + b"\x01\x02\x03\x04"))  # answer name is a compression pointer
    p.append(E / I / R / Raw(bytes.fromhex("000e8180000100010000000001610000010001c01e00010001000000050004")
                             + b"\x01\x02\x03\x04"))  # pointer forward: refused
    p.append(E / I / R / DNS(id=14, qr=1, qd=DNSQR(qname="a.example."),
                             an=[DNSRR(rrname="a.example.", type="A", rdata="1.2.3.4")] * 3))
    caps["dns"] = p

    # ---- time stamps: out of order and more than a day apart ----
    p = []
    for _ in range(5):
        p.append(E / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=9, dport=9))
    caps["times"] = p

    base = 1_700_000_000.0
    for name, packets in caps.items():
        for i, pkt in enumerate(packets):
            pkt.time = base + i * 0.000125
    stamps = [base + 0.5, base + 0.25, base + 0.25 + 86400 * 2 + 3661.000001, base + 5.0, base + 0.0]
    for pkt, t in zip(caps["times"], stamps):
        pkt.time = t
    return caps


def write_crafted() -> list[Path]:
    from scapy.all import wrpcap

    folder = OUT / "crafted"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, packets in crafted_captures().items():
        path = folder / f"{name}.pcap"
        wrpcap(str(path), packets, linktype=1)
        paths.append(path)
    return paths


def tcpdump(capture: Path, options: list[str]) -> str:
    env = dict(os.environ, TZ="UTC")
    run = subprocess.run(["tcpdump", "-n", *options, "-r", str(capture)], env=env, capture_output=True, check=True)
    return run.stdout.decode("utf-8", errors="surrogateescape")


def store(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8", errors="surrogateescape")
    for stale in (path, path.with_name(path.name + ".gz")):
        stale.unlink(missing_ok=True)
    if len(data) > GZIP_ABOVE:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    print(f"  {path.relative_to(TESTS_DATA)} ({len(data)} bytes)")


def main() -> int:
    crafted = write_crafted()
    captures = sorted((TESTS_DATA / "lab").glob("*.pcap")) + [TESTS_DATA / rel for rel in CORPUS] + crafted
    missing = [str(c) for c in captures if not c.exists()]
    if missing:
        print("missing captures:", *missing, sep="\n  ", file=sys.stderr)
        return 1
    version = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True).stdout.strip()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "VERSION.txt").write_text(version + "\n")
    for capture in captures:
        rel = capture.relative_to(TESTS_DATA)
        print(rel)
        default = tcpdump(capture, [])
        small = default.count("\n") < SMALL or capture in crafted
        for variant, options in TIME_VARIANTS.items():
            if variant != "default" and not small:
                continue
            text = default if variant == "default" else tcpdump(capture, options)
            folder = capture.parent if capture in crafted else OUT / rel.parent
            store(folder / f"{rel.stem}.{variant}.txt", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
