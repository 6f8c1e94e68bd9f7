#!/usr/bin/env python3
"""Store what `tcpdump -n` prints for the test captures, so tests/test_listing.py can compare `diagnose list` with it.

Developer script: it needs tcpdump on PATH and is never run by the test suite (tests only read the stored text).
Run it from anywhere after the captures changed:

    python tests/oracles/make_tcpdump_fixtures.py

Output: tests/data/fixtures/tcpdump/<capture path relative to tests/data, without extension>.<variant>.txt, where
variant is the tcpdump time/dump option set below. Large outputs are gzip-compressed (.txt.gz) to keep the repo small.
Every command runs with TZ=UTC so the wall-clock variants do not depend on the machine's time zone.
"""

from __future__ import annotations

import gzip
import os
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
    captures = sorted((TESTS_DATA / "lab").glob("*.pcap")) + [TESTS_DATA / rel for rel in CORPUS]
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
        small = default.count("\n") < SMALL
        for variant, options in TIME_VARIANTS.items():
            if variant != "default" and not small:
                continue
            text = default if variant == "default" else tcpdump(capture, options)
            store(OUT / rel.parent / f"{rel.stem}.{variant}.txt", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
