"""diagnose follow: the text equals tshark's `-q -z follow,tcp,<format>,N` (stored fixtures and recorded output)."""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, Ether, Raw, wrpcap

from diagnose.report.follow import follow, follow_stream, render
from oracles.fixtures import data_path, load_tshark

LAB_WITH_FOLLOW = ["healthy_http.pcap", "http_404_and_500.pcap", "slow_ttfb.pcap", "mid_stream_rst.pcap"]


@pytest.mark.parametrize("name", LAB_WITH_FOLLOW)
def test_lab_http_follow_ascii_equals_tshark(name):
    stored = load_tshark("lab", name)["follow"]
    assert stored, "the fixture holds tshark's follow output"
    for stream, text in stored.items():
        assert follow(str(data_path("lab", name)), int(stream), "ascii") == text


def _capture(path):
    """A connection with a retransmission, out-of-order segments, a hole the client acknowledges past, old data
    resent at the end, and bytes that are not printable (TAB, NUL, 0x01)."""
    client, server = ("10.0.0.1", 40000), ("10.0.0.2", 80)

    def c(seq, ack, flags, payload=b""):
        return Ether() / IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], seq=seq, ack=ack,
                                                                flags=flags) / Raw(payload)

    def s(seq, ack, flags, payload=b""):
        return Ether() / IP(src=server[0], dst=client[0]) / TCP(sport=server[1], dport=client[1], seq=seq, ack=ack,
                                                                flags=flags) / Raw(payload)

    hello = b"hello\tworld\r\n\x00\x01\x02ABCDEFGHIJKLMNOPQRSTUVWXYZ "
    packets = [c(100, 0, "S"), s(500, 101, "SA"), c(101, 501, "A"), c(101, 501, "PA", hello),
               c(101, 501, "PA", hello),  # retransmission: shown once
               s(501, 133, "PA", b"0123456789"), s(521, 133, "PA", b"klmnopqrst"),  # 511..520 comes next
               s(511, 133, "PA", b"abcdefghij"),
               s(541, 133, "PA", b"after a hole"), c(133, 553, "A"),  # the client acknowledges past 531..540
               c(133, 553, "PA", b"bye\n")]  # below the client's next byte (144): old data, not shown
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i / 1000
    wrpcap(str(path), packets)
    return str(path)


# Recorded from TShark 4.0.17: tshark -n -q -r f.pcap -z follow,tcp,<format>,0 on the capture above.
HEAD = ("\n===================================================================\nFollow: tcp,{}\nFilter: tcp.stream eq 0\n"
        "Node 0: 10.0.0.1:40000\nNode 1: 10.0.0.2:80\n")
TAIL = "===================================================================\n"
EXPECTED = {
    "ascii": HEAD.format("ascii") + (
        "43\nhello.world\r\n...ABCDEFGHIJKLMNOPQRSTUVWXYZ \n\t10\n0123456789\n\t10\nabcdefghij\n\t10\nklmnopqrst\n"
        "\t35\n[10 bytes missing in capture file].\n\t12\nafter a hole\n") + TAIL,
    "hex": HEAD.format("hex") + (
        "00000000  68 65 6c 6c 6f 09 77 6f  72 6c 64 0d 0a 00 01 02  hello.wo rld.....\n"
        "00000010  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  ABCDEFGH IJKLMNOP\n"
        "00000020  51 52 53 54 55 56 57 58  59 5a 20                 QRSTUVWX YZ\n"
        "\t00000000  30 31 32 33 34 35 36 37  38 39                    01234567 89\n"
        "\t0000000A  61 62 63 64 65 66 67 68  69 6a                    abcdefgh ij\n"
        "\t00000014  6b 6c 6d 6e 6f 70 71 72  73 74                    klmnopqr st\n"
        "\t0000001E  5b 31 30 20 62 79 74 65  73 20 6d 69 73 73 69 6e  [10 byte s missin\n"
        "\t0000002E  67 20 69 6e 20 63 61 70  74 75 72 65 20 66 69 6c  g in cap ture fil\n"
        "\t0000003E  65 5d 00                                          e].\n"
        "\t00000041  61 66 74 65 72 20 61 20  68 6f 6c 65              after a  hole\n") + TAIL,
    "raw": HEAD.format("raw") + (
        "68656c6c6f09776f726c640d0a0001024142434445464748494a4b4c4d4e4f505152535455565758595a20\n"
        "\t30313233343536373839\n\t6162636465666768696a\n\t6b6c6d6e6f7071727374\n"
        "\t5b3130206279746573206d697373696e6720696e20636170747572652066696c655d00\n"
        "\t6166746572206120686f6c65\n") + TAIL,
}


@pytest.mark.parametrize("fmt", ["ascii", "hex", "raw"])
def test_reordered_retransmitted_and_missing_data_like_tshark(tmp_path, fmt):
    path = _capture(tmp_path / "f.pcap")
    assert follow(path, 0, fmt) == EXPECTED[fmt]


def test_hex_lines_end_like_tshark(tmp_path):
    """tshark's hex view drops one trailing space from a line (recorded from TShark 4.0.17)."""
    payloads = [b"ABCDEFGHIJKLMNO ", b"ABCDEFG ", b"AB ", b"ABCDEFGHIJ ", b"ABCDEFGHIJKLMN  ", b"ABCDEFG  ", b" "]
    packets = [Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=1000, dport=80, flags="S", seq=0)]
    seq = 1
    for p in payloads:
        packets.append(Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=1000, dport=80, flags="PA", seq=seq,
                                                                        ack=1) / Raw(p))
        seq += len(p)
    wrpcap(str(tmp_path / "t.pcap"), packets)
    lines = follow(str(tmp_path / "t.pcap"), 0, "hex").splitlines()[6:-1]
    assert lines == [
        "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 20  ABCDEFGH IJKLMNO",
        "00000010  41 42 43 44 45 46 47 20                           ABCDEFG ",
        "00000018  41 42 20                                          AB",
        "0000001B  41 42 43 44 45 46 47 48  49 4a 20                 ABCDEFGH IJ",
        "00000026  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 20 20  ABCDEFGH IJKLMN ",
        "00000036  41 42 43 44 45 46 47 20  20                       ABCDEFG  ",
        "0000003F  20" + " " * 48,
    ]


def test_stream_without_packets_prints_tshark_header():
    text = follow(str(data_path("lab", "healthy_http.pcap")), 99)
    assert text == ("\n===================================================================\nFollow: tcp,ascii\n"
                    "Filter: tcp.stream eq 99\nNode 0: :0\nNode 1: :0\n"
                    "===================================================================\n")


def test_json_form(tmp_path):
    data = follow(_capture(tmp_path / "f.pcap"), 0, as_json=True)
    assert data["nodes"] == ["10.0.0.1:40000", "10.0.0.2:80"]
    assert [(c["node"], c["length"], c["missing"]) for c in data["chunks"]] == [
        (0, 43, 0), (1, 10, 0), (1, 10, 0), (1, 10, 0), (1, 35, 10), (1, 12, 0)]
    assert data["chunks"][0]["hex"].startswith("68656c6c6f") and data["bytes"] == [43, 42]
    assert data["chunks"][2]["frame"] == 8  # 511..520 made 521..530 readable too, both in frame 8
    assert data["chunks"][3]["frame"] == 8


def test_ipv6_nodes_in_brackets():
    result = follow_stream(str(data_path("corpus", "zeek", "ipv6-http-atomic-frag.pcap")), 0)
    assert result.nodes == ["[2001:db8:1::1]:80", "[2001:db8:1::2]:36951"]
    assert render(result).splitlines()[4] == "Node 0: [2001:db8:1::1]:80"


def test_unknown_format():
    with pytest.raises(ValueError):
        render(follow_stream(str(data_path("lab", "healthy_http.pcap")), 0), "xml")
