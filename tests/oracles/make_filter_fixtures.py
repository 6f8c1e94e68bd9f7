#!/usr/bin/env python3
"""Regenerate the filter oracle fixtures under tests/data/fixtures/filters/ (developer tool, not run by tests).

Needs tshark 4.0.17, tcpdump 4.99.3 (libpcap 1.10.3) and scapy. Writes:

* encapsulations.pcap, null_big_endian.pcap: small captures built here with scapy for the cases the real captures
  lack (VLAN/QinQ/MPLS/PPPoE, IPv6 fragment and hop-by-hop headers, IPv4 fragments and options, ICMP errors, ARP,
  802.3/LLC, broadcast and multicast, snaplen cuts, a DLT_NULL file written big-endian).
* cases.json.gz: (capture, filter, language, expected frames or the tool's error) for display filters (tshark -Y)
  and capture filters (tcpdump); frames are stored as ranges "1-5,9" (gzip, mtime 0: the JSON is 2 MB).
* libpcap_programs.json: libpcap's own program (`tcpdump -ddd`) for every (link type, file byte order, filter) the
  BPF cases use, run by the tests' BPF interpreter next to ours.

    python3 tests/oracles/make_filter_fixtures.py            # everything
    python3 tests/oracles/make_filter_fixtures.py --captures  # only rebuild the scapy captures
    python3 tests/oracles/make_filter_fixtures.py --programs  # only redo libpcap_programs.json from the cases

Frame numbers of a tcpdump run: tcpdump numbers only the packets it prints, so the script writes the matches with
`tcpdump -r F -w out FILTER` and aligns each written record (time, lengths, bytes) with an unfiltered copy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "fixtures" / "filters"

# ---- which captures and filters ----------------------------------------------------------------------------------

LAB = ["lab/" + p.name for p in sorted((DATA / "lab").glob("*.pcap"))]
CORPUS = ["corpus/" + p.relative_to(DATA / "corpus").as_posix() for p in sorted((DATA / "corpus").rglob("*"))
          if p.suffix in (".pcap", ".pcapng", ".gz") and "badmagic" not in p.name]
BUILT = ["fixtures/filters/encapsulations.pcap", "fixtures/filters/null_big_endian.pcap"]
# Display filters run on the lab captures, these corpus captures (their own oracles cover the rest) and the built ones.
DISPLAY_CORPUS = ["corpus/" + name for name in (
    "zeek/icmp_dot1q.pcap", "zeek/mixed-vlan-mpls.pcap", "tcpdump/802.1ad_QinQ.pcap", "zeek/fragmented-3.pcap",
    "zeek/ipv6-http-atomic-frag.pcap", "zeek/ipv6-fragmented-dns.pcap", "ja4/latest.pcapng",
    "zeek/linuxsll-arp.pcap", "tcpdump/tcp-handshake-nano.pcap", "illustrated-tls13/capture.pcap",
    "zeek/truncated-header.pcap", "zeek/dns-edns-ecs.pcap", "zeek/http-vlan-0.pcap", "zeek/5-pings.pcap",
    "tcpdump/LINKTYPE_RAW_ipv4.pcap", "zeek/linux_dlt_sll2.pcap", "scapy/http_chunk.pcap.gz",
    "zeek/pcapng-multi-interface.pcapng", "zeek/vlan-pcp-dei.pcapng", "zeek/get.pcap", "zeek/syn-then-rst.pcap")]

# Display filters for every capture (X = the capture's most common IPv4 address, as in the corpus oracles).
DISPLAY_EVERYWHERE = [
    "tcp", "udp", "icmp", "icmpv6", "arp", "ip", "ipv6", "eth", "vlan",
    "tcp.port == 80", "tcp.port == 8080", "tcp.srcport == 80", "udp.port == 53",
    "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.flags.syn == 1 and tcp.flags.ack == 1",
    "tcp.flags.reset == 1", "tcp.flags.fin == 1", "tcp.flags & 0x02", "tcp.flags & 0x12 == 0x12",
    "tcp.flags == 0x018", "tcp.len > 0", "frame.len > 1000", "frame.len <= 60", "frame.cap_len < frame.len",
    "ip.ttl < 64", "ip.flags.df == 1", "ip.flags.mf == 1 || ip.frag_offset > 0",
    "ip.addr == X", "ip.addr != X", "ip.addr !== X", "ip.dst != X", "not ip.dst == X",
    "not ip.dst or ip.dst != X", "ip.src == X && tcp.flags.reset == 1", "ip.addr == 10.0.0.0/8",
    "tcp.window_size_value == 0", "tcp.options.wscale.shift", "!tcp.options.wscale.shift && tcp.flags.syn == 1",
    "tcp.stream eq 0", "tcp.port in {80, 443, 8080..8090}", "frame.number in {1..3, 7}",
    "frame.time_relative <= 0.001", "frame.time_delta > 0.5", "!(tcp.port == 443) && ip",
    "not tcp.port == 80 and udp", "not (tcp.port == 80 and udp)", "tcp or udp and not icmp",
    "tcp.port == 80 or tcp.port == 53 and udp", "frame contains \"GET\"", "frame matches \"get\"",
    "frame contains \"get\"", "frame matches \"(?-i)get\"", "tcp contains \"HTTP/1.1\"",
    "frame[12:2] == 08:00", "frame[12] == 08", "eth.dst == ff:ff:ff:ff:ff:ff", "eth.type == 0x86dd",
    "len(tcp) > 20", "count(ip.addr) == 2", "string(ip.src) contains \"10.99\"", "tcp.srcport > tcp.dstport",
    "frame[100-199]", "frame[100-199] contains \"a\"", "icmp.type == 3", "udp.length > 100", "ip.hdr_len > 20",
    "ipv6.nxt == 44", "tcp.hdr_len == 40", "all tcp.port > 1024", "any tcp.port > 1024", "tcp.port === 80",
    "tcp.port !== 80", "ip.addr#2", "tcp.port - 1 == 79", "tcp.srcport <= 35", "string(tcp.srcport) <= \"35\"",
    "ip.src[0:2] == 0a:63", "eth.src[0:3] == 02:99:01",
    # application layer (kept for later: the tests use those whose fields exist)
    "dns", "dns.flags.rcode == 3", "http.request", "http.response.code >= 400", "tls.handshake.type == 1",
    "tls.alert_message", "tcp.analysis.retransmission", "tcp.analysis.zero_window",
]

# Extra display filters for the built capture (its addresses and encapsulations are known).
DISPLAY_BUILT = [
    "vlan.id == 100", "vlan.id == 200", "vlan.id#2 == 200", "vlan.id#1 == 200", "count(vlan.id) == 2",
    "ip.ttl == 1", "icmp", "icmp.type == 3 && tcp", "tcp.srcport == 8080", "ip.src#2 == 10.0.0.2",
    "ip.addr#1 == 10.0.0.9", "ip.addr#[1-2] == 10.0.0.2", "ip.src#-1 == 10.0.0.2", "ip.hdr_len == 24",
    "ipv6.addr == 2001:db8::1", "ipv6.src == 2001:db8::/32", "ipv6.nxt == 0", "arp.opcode == 2",
    "arp.src.proto_ipv4 == 10.0.0.1", "ip.dst == 224.0.0.251", "eth.dst[0] & 1", "eth.addr == 01:00:5e:00:00:fb",
    "tcp.flags.urg == 1", "tcp.flags.ece == 1 || tcp.flags.cwr == 1", "tcp.flags.push == 1",
    "frame.cap_len < frame.len", "tcp.len", "tcp.flags", "udp.port == 53 and ip.flags.mf == 1",
    "frame contains 47:45:54", "frame matches \"host: example\\\\.com\"", "frame contains \"Host: example.com\"",
    "eth.type == 0x8100", "eth.type == 0x88a8", "ip.proto == 17", "ip.proto == \"UDP\"",
    "tcp.window_size_value < 1000", "ip.addr in {10.0.0.1, 10.0.0.2}", "ip.addr in {10.0.0.3 .. 10.0.0.9}",
    "ip.id == 0x1234", "udp.srcport in {53, 5353}", "tcp.options.mss_val == 1460", "tcp.options.sack_perm",
    "ip.dsfield.dscp == 46", "frame.len in {60 .. 70}",
]

BPF_EVERYWHERE = [
    "tcp", "udp", "icmp", "icmp6", "ip", "ip6", "arp", "host X", "src host X", "dst host X", "net 10.0.0.0/8",
    "net 10.99", "src net 10.99.1.0 mask 255.255.255.0", "port 80", "port 8080", "tcp port 8080", "udp port 53",
    "src port 53", "dst port 8080", "portrange 1-1024", "tcp portrange 50000-65535", "port http", "port domain",
    "tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-rst) != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[13] & 2 != 0", "tcp[13] = 0x12", "tcp[13] != 2", "not tcp[13] = 2", "tcp[tcpflags] & tcp-fin != 0",
    "ip[6:2] & 0x1fff = 0", "ip[6:2] & 0x1fff != 0", "ip[8] < 64", "ip[2:2] > 1000",
    "icmp[icmptype] = icmp-echo", "icmp[icmptype] = icmp-unreach", "icmp[icmpcode] = 3", "less 60",
    "greater 1000", "len <= 60", "len = 54", "ether broadcast", "ether multicast", "ip multicast",
    "ether host ff:ff:ff:ff:ff:ff", "vlan", "vlan and tcp", "tcp or udp and port 53", "tcp or (udp and port 53)",
    "not host X and tcp", "host X and not port 22", "ip proto \\tcp", "ip6 proto 58", "proto \\udp",
    "ether proto \\arp", "ether proto 0x86dd", "tcp and udp", "ip6 and tcp[0] = 1",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "ip[0] & 0xf != 5", "len % 2 = 0", "len - 14 > 1000",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 100", "ip host X or ip6", "src host X and dst port 8080 or 8082",
    "host X and (port 80 or 8080)", "icmp6[icmp6type] = icmp6-echo", "udp[8:2] = 0", "ip and not tcp",
    "!tcp && !udp || icmp", "len ^ 1 | 2 = 0",
]

BPF_BUILT = [
    "vlan 100", "vlan 200", "vlan 100 and vlan 200", "vlan and vlan and tcp", "vlan and ip host 10.0.0.2",
    "mpls", "mpls and ip", "mpls and tcp", "mpls 16 and mpls and tcp", "mpls and mpls 17 and ip",
    "pppoes", "pppoes and ip6", "pppoes 4660 and udp port 53", "pppoed", "ip6 and tcp", "ip6 and udp",
    "ip6 protochain 6", "ether src 02:00:00:00:00:01", "ether dst 01:00:5e:00:00:fb", "arp host 10.0.0.1",
    "host 10.0.0.1", "host 10.0.0.2 and 10.0.0.9", "not host 10.0.0.2 and 10.0.0.9", "host fe80::1",
    "net 2001:db8::/32", "ip6 multicast", "stp", "ether proto 0x88cc", "ip[0] & 0xf > 5", "udp and ip[6] & 0x20 != 0",
    "port 53 and ip[6:2] & 0x1fff != 0", "udp port 53", "tcp[100] = 1 or udp", "udp or tcp[100] = 1",
    "icmp and icmp[8] = 0x45", "less 40", "greater 100 and tcp", "ip broadcast",
]

X_FALLBACK = "10.99.1.2"


# ---- built captures ----------------------------------------------------------------------------------------------

def build_captures() -> None:
    from scapy.all import (ARP, DNS, DNSQR, GRE, ICMP, IP, LLC, STP, TCP, UDP, Dot1AD, Dot1Q, Ether,
                           ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, PPPoE, PPP, Raw, fragment)
    from scapy.contrib.mpls import MPLS

    a, b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    http = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
    frames = [
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2", id=0x1234, flags="DF") /
        TCP(sport=40000, dport=8080, flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        Ether(src=b, dst=a) / IP(src="10.0.0.2", dst="10.0.0.1", ttl=63) / TCP(sport=8080, dport=40000, flags="SA"),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=8080, flags="PA") / http,
        Ether(src=b, dst=a) / IP(src="10.0.0.2", dst="10.0.0.1", tos=0xB8) / TCP(sport=8080, dport=40000, flags="RA",
                                                                                   window=0),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40001, dport=80, flags="UA", urgptr=1),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40002, dport=80, flags="SEC"),
        Ether(src=a, dst=b) / Dot1Q(vlan=100) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40003, dport=80),
        Ether(src=a, dst=b) / Dot1Q(vlan=100) / Dot1Q(vlan=200) / IP(src="10.0.0.9", dst="10.0.0.2") /
        TCP(sport=40004, dport=80, flags="S"),
        Ether(src=a, dst=b, type=0x88A8) / Dot1AD(vlan=300) / Dot1Q(vlan=200) / IP(src="10.0.0.1", dst="10.0.0.2") /
        UDP(sport=5353, dport=53) / DNS(qd=DNSQR(qname="example.com")),
        Ether(src=a, dst=b) / MPLS(label=16, s=1) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40005, dport=80),
        Ether(src=a, dst=b) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / IP(src="10.0.0.1", dst="10.0.0.2") /
        TCP(sport=40006, dport=80, flags="F"),
        Ether(src=a, dst=b) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021) / IP(src="10.0.0.1", dst="10.0.0.2") /
        UDP(sport=5353, dport=53) / DNS(qd=DNSQR(qname="a.example")),
        Ether(src=a, dst=b) / PPPoE(sessionid=0x1234) / PPP(proto=0x0057) / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / TCP(sport=40007, dport=443, flags="S"),
        Ether(src=a, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2", hwsrc=a),
        Ether(src=b, dst=a) / ARP(op=2, psrc="10.0.0.2", pdst="10.0.0.1", hwsrc=b, hwdst=a),
        Ether(src=a, dst=b) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40008, dport=80, flags="S"),
        Ether(src=a, dst=b) / IPv6(src="fe80::1", dst="ff02::1") / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(),
        Ether(src=a, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::fb") /
        UDP(sport=5353, dport=5353) / DNS(qd=DNSQR(qname="x.local")),
        Ether(src=a, dst=b) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=7, m=1, offset=0) /
        UDP(sport=5353, dport=53) / Raw(b"x" * 24),
        Ether(src=a, dst=b) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=7, m=0, offset=4) /
        Raw(b"y" * 16),
        Ether(src=a, dst="01:00:5e:00:00:fb") / IP(src="10.0.0.1", dst="224.0.0.251", ttl=1) /
        UDP(sport=5353, dport=5353) / DNS(qd=DNSQR(qname="m.local")),
        Ether(src=a, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=68, dport=67),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x94\x04\x00\x00") /
        TCP(sport=40009, dport=80, flags="S"),
        Ether(src=b, dst=a) / IP(src="10.0.0.9", dst="10.0.0.1") / ICMP(type=3, code=3) /
        IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40010, dport=8080, flags="S"),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1, seq=1) / Raw(b"ping"),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / GRE() / IP(src="192.168.0.1", dst="192.168.0.2") /
        UDP(sport=1000, dport=53) / Raw(b"q"),
        Ether(src=a, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP(),
        Ether(src=a, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + bytes(6) + b"\x00\x00"),
    ]
    big_udp = Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2", id=0x4321) / UDP(sport=5353, dport=53) / \
        Raw(b"z" * 1600)
    frames += fragment(big_udp, fragsize=1000)
    records = []
    t = 1_600_000_000
    for i, pkt in enumerate(frames):
        records.append((t + i, 0, bytes(pkt), None))
    # snaplen cuts: TCP header cut after the ports, and an HTTP request cut in its payload
    cut = bytes(frames[2])
    records.append((t + 100, 0, cut[:38], len(cut)))
    records.append((t + 101, 0, cut[:80], len(cut)))
    _write_pcap(OUT / "encapsulations.pcap", records, linktype=1)

    # DLT_NULL written by a big-endian machine: the address family is big-endian too
    ip4 = bytes(IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=1, dport=2, flags="S"))
    ip6 = bytes(IPv6(src="::1", dst="::1") / UDP(sport=1, dport=53) / Raw(b"q"))
    null_records = [(t, 0, struct.pack(">I", 2) + ip4, None), (t + 1, 0, struct.pack(">I", 30) + ip6, None),
                    (t + 2, 0, struct.pack(">I", 24) + ip6, None), (t + 3, 0, struct.pack("<I", 2) + ip4, None)]
    _write_pcap(OUT / "null_big_endian.pcap", null_records, linktype=0, big_endian=True)


def _write_pcap(path: Path, records, *, linktype: int, big_endian: bool = False) -> None:
    o = ">" if big_endian else "<"
    out = struct.pack(o + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for sec, usec, data, wire in records:
        out += struct.pack(o + "IIII", sec, usec, len(data), wire or len(data)) + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)


# ---- tools -------------------------------------------------------------------------------------------------------

class Tools:
    def __init__(self) -> None:
        self.config = tempfile.TemporaryDirectory(prefix="wireshark-defaults-")
        self.env = dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8", WIRESHARK_CONFIG_DIR=self.config.name)
        self.tmp = tempfile.TemporaryDirectory(prefix="filter-fixtures-")
        self.versions = {
            "tshark": self.run(["tshark", "--version"])[0].splitlines()[0],
            "tcpdump": self.run(["tcpdump", "--version"])[0].splitlines()[0],
            "libpcap": self.run(["tcpdump", "--version"])[0].splitlines()[1],
        }

    def run(self, argv):
        done = subprocess.run(argv, cwd=DATA, env=self.env, capture_output=True)
        err = done.stderr.decode("utf-8", "replace")
        err = "\n".join(line for line in err.splitlines()
                        if not line.startswith(("Running as user", "reading from file", "Warning: interface")))
        return done.stdout.decode("utf-8", "replace"), err.strip(), done.returncode

    def tshark(self, capture: str, flt: str):
        out, err, code = self.run(["tshark", "-n", "-r", capture, "-Y", flt, "-T", "fields", "-e", "frame.number"])
        if code != 0 and not out.strip():
            return err.splitlines()[0] if err else f"exit {code}"
        return [int(x) for x in out.split()]

    def all_records(self, capture: str):
        path = Path(self.tmp.name) / (capture.replace("/", "_") + ".all.pcap")
        if not path.exists():
            self.run(["tcpdump", "-r", capture, "-w", str(path)])
        return _read_pcap(path) if path.exists() else None

    def tcpdump(self, capture: str, flt: str, index: int):
        everything = self.all_records(capture)
        path = Path(self.tmp.name) / f"out{index}.pcap"
        _, err, code = self.run(["tcpdump", "-r", capture, "-w", str(path), flt])
        if code != 0 or not path.exists():
            return err.splitlines()[-1] if err else f"exit {code}"
        matched = _read_pcap(path)
        frames, j = [], 0
        for number, record in enumerate(everything or [], start=1):
            if j < len(matched) and matched[j] == record:
                frames.append(number)
                j += 1
        path.unlink()
        if j != len(matched):
            raise RuntimeError(f"could not align tcpdump output of {flt!r} on {capture}")
        return frames

    def program(self, capture: str, flt: str):
        out, err, code = self.run(["tcpdump", "-r", capture, "-ddd", flt])
        if code != 0:
            return None
        numbers = [list(map(int, line.split())) for line in out.strip().splitlines()[1:]]
        return numbers


def _read_pcap(path: Path):
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    o = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos, records = 24, []
    while pos + 16 <= len(data):
        sec, frac, caplen, wirelen = struct.unpack_from(o + "IIII", data, pos)
        records.append((sec, frac, wirelen, data[pos + 16: pos + 16 + caplen]))
        pos += 16 + caplen
    return records


LINKTYPES = {"EN10MB": 1, "NULL": 0, "LOOP": 108, "RAW": 101, "IPV4": 228, "IPV6": 229, "LINUX_SLL": 113,
             "LINUX_SLL2": 276}


def _linktype_and_order(tools: Tools, capture: str) -> tuple[int, str]:
    """(LINKTYPE number from tcpdump's own report, byte order of a classic pcap file header)."""
    done = subprocess.run(["tcpdump", "-r", capture, "-c", "1"], cwd=DATA, capture_output=True, env=tools.env)
    text = done.stderr.decode("utf-8", "replace")
    linktype = -1
    if "link-type " in text:
        name = text.split("link-type ", 1)[1].split()[0]
        linktype = LINKTYPES.get(name, -1)
    head = (DATA / capture).read_bytes()[:4]
    order = "big" if head in (bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b23c4d")) else "little"
    return linktype, order


def _ranges(frames: list[int]) -> str:
    parts, i = [], 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)


def _most_common_ipv4(tools: Tools, capture: str) -> str:
    out, _, _ = tools.run(["tshark", "-n", "-r", capture, "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                           "-E", "occurrence=f"])
    counts: dict[str, int] = {}
    for line in out.split("\n"):
        for value in line.split("\t"):
            if value:
                counts[value] = counts.get(value, 0) + 1
    if not counts:
        return X_FALLBACK
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", action="store_true", help="only rebuild the scapy captures")
    parser.add_argument("--programs", action="store_true", help="only redo libpcap_programs.json from the cases")
    args = parser.parse_args()
    if args.programs:
        tools = Tools()
        cases = json.loads(gzip.decompress((OUT / "cases.json.gz").read_bytes()))["cases"]
        write_programs(tools, cases, LAB + CORPUS + BUILT)
        return
    build_captures()
    if args.captures:
        return
    tools = Tools()
    captures = LAB + CORPUS + BUILT
    jobs = []
    for capture in captures:
        x = _most_common_ipv4(tools, capture)
        display = [] if capture in CORPUS and capture not in DISPLAY_CORPUS else \
            DISPLAY_EVERYWHERE + (DISPLAY_BUILT if capture in BUILT else [])
        bpf = BPF_EVERYWHERE + (BPF_BUILT if capture in BUILT else [])
        jobs += [(capture, "display", f.replace("X", x) if "X" in f else f) for f in display]
        jobs += [(capture, "bpf", f.replace("X", x)) for f in bpf]

    def run(job_index):
        index, (capture, language, flt) = job_index
        result = tools.tshark(capture, flt) if language == "display" else tools.tcpdump(capture, flt, index)
        return capture, language, flt, result

    for capture in captures:
        tools.all_records(capture)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, enumerate(jobs)))
    cases = []
    for capture, language, flt, result in results:
        case = {"capture": capture, "language": language, "filter": flt}
        if isinstance(result, str):
            case["error"] = result
        else:
            case["frames"] = _ranges(result)
        cases.append(case)

    OUT.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"tools": tools.versions, "cases": cases}, indent=0, sort_keys=True) + "\n"
    (OUT / "cases.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    write_programs(tools, cases, captures)


def write_programs(tools: Tools, cases: list[dict], captures: list[str]) -> None:
    programs: dict[str, dict] = {}
    for capture in captures:
        linktype, order = _linktype_and_order(tools, capture)
        if linktype < 0:
            continue
        known = programs.setdefault(f"{linktype}/{order}", {})
        for flt in sorted({c["filter"] for c in cases if c["capture"] == capture and c["language"] == "bpf"}):
            if flt not in known:
                program = tools.program(capture, flt)
                if program is not None:
                    known[flt] = program

    (OUT / "libpcap_programs.json").write_text(json.dumps({"tools": tools.versions, "programs": programs},
                                                          sort_keys=True) + "\n")
    print(f"{len(cases)} cases, {sum(len(p) for p in programs.values())} libpcap programs", file=sys.stderr)


if __name__ == "__main__":
    main()
