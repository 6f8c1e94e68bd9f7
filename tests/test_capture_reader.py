"""Reading captures: every container variant the issue names, checked against files built from the spec."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

import pcapbuild as pb
from diagnose.capture import open_capture
from diagnose.errors import CaptureError

FRAME_A = bytes(range(60))
FRAME_B = bytes(range(100, 174))


def read_all(path):
    """(frame columns as dicts, capture info) of every packet."""
    rows = []
    with open_capture(str(path)) as cap:
        for chunk in cap.chunks():
            for r in chunk.table:
                rows.append({"frame": int(r["frame"]), "ts": int(r["ts"]), "caplen": int(r["caplen"]),
                             "wirelen": int(r["wirelen"]), "iface": int(r["iface"]), "linktype": int(r["linktype"]),
                             "bytes": chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes()})
        return rows, cap.info


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path, big_endian, nanoseconds):
    f = tmp_path / "x.pcap"
    f.write_bytes(pb.pcap([(1_700_000_000, 123456, FRAME_A), (1_700_000_001, 999, FRAME_B, 1500)],
                          big_endian=big_endian, nanoseconds=nanoseconds, linktype=113))
    rows, info = read_all(f)
    scale = 1 if nanoseconds else 1000
    assert [r["ts"] for r in rows] == [1_700_000_000_000_000_000 + 123456 * scale,
                                       1_700_000_001_000_000_000 + 999 * scale]
    assert [r["bytes"] for r in rows] == [FRAME_A, FRAME_B]
    assert rows[1]["wirelen"] == 1500 and rows[1]["caplen"] == len(FRAME_B)
    assert {r["linktype"] for r in rows} == {113}
    assert info.format == "pcap" and info.resolution == ("ns" if nanoseconds else "us")


def test_records_spanning_chunk_boundaries(tmp_path):
    """A tiny buffer forces records to straddle refills and the buffer to grow for a big record."""
    frames = [bytes([i % 256]) * (50 + 37 * i) for i in range(40)]
    f = tmp_path / "x.pcap"
    f.write_bytes(pb.pcap([(i, 0, d) for i, d in enumerate(frames)]))
    got = []
    with open_capture(str(f), chunk_bytes=256, max_rows=3) as cap:
        for chunk in cap.chunks():
            got += [chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in chunk.table]
            assert len(chunk.table) <= 3
    assert got == frames


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_blocks(tmp_path, order):
    o = order
    data = (pb.shb(o) + pb.idb(1, o=o, name="eth0")
            + pb.idb(113, o=o, tsresol=9, name="any")  # nanoseconds
            + pb.idb(101, o=o, tsresol=0x80 | 20, tsoffset=10)  # 2^-20 s units, +10 s offset
            + pb.nrb(b"\x0a\x00\x00\x01", "host.example", o)
            + pb.epb(0, 1_700_000_000_123_456, FRAME_A, o, comment="first packet")
            + pb.epb(1, 1_700_000_000_123_456_789, FRAME_B, o)
            + pb.epb(2, 5 << 20 | (1 << 19), FRAME_A, o)  # 5.5 s + 10 s offset
            + pb.opb(0, 1_700_000_001_000_000, FRAME_B, o)
            + pb.spb(FRAME_A, o, wirelen=200)
            + pb.dsb(0x544C534B, b"CLIENT_RANDOM aa bb\n", o)
            + pb.isb(0, 100, 7, o, osdrop=3) + pb.isb(1, 50, 2, o))
    f = tmp_path / "x.pcapng"
    f.write_bytes(data)
    rows, info = read_all(f)
    assert [r["iface"] for r in rows] == [0, 1, 2, 0, 0]
    assert [r["linktype"] for r in rows] == [1, 113, 101, 1, 1]
    assert rows[0]["ts"] == 1_700_000_000_123_456_000
    assert rows[1]["ts"] == 1_700_000_000_123_456_789
    assert rows[2]["ts"] == 15_500_000_000
    assert rows[3]["ts"] == 1_700_000_001_000_000_000
    assert rows[4]["caplen"] == len(FRAME_A) and rows[4]["wirelen"] == 200
    assert [r["bytes"] for r in rows] == [FRAME_A, FRAME_B, FRAME_A, FRAME_B, FRAME_A]
    assert info.comments == {1: ["first packet"]}
    assert [i.name for i in info.interfaces] == ["eth0", "any", None]
    assert info.interfaces[0].stats == {"ifrecv": 100, "ifdrop": 7, "osdrop": 3}
    assert info.interfaces[1].stats["ifdrop"] == 2
    assert info.secrets[0].secret_type == 0x544C534B and info.secrets[0].data == b"CLIENT_RANDOM aa bb\n"
    assert info.name_records == [("ipv4", b"\x0a\x00\x00\x01", ["host.example"])]


def test_pcapng_several_sections_in_both_byte_orders(tmp_path):
    data = (pb.shb("<") + pb.idb(1, o="<") + pb.epb(0, 1_000_000, FRAME_A, "<")
            + pb.shb(">") + pb.idb(113, o=">") + pb.idb(1, o=">") + pb.epb(1, 2_000_000, FRAME_B, ">")
            + pb.epb(0, 3_000_000, FRAME_A, ">"))
    f = tmp_path / "x.pcapng"
    f.write_bytes(data)
    rows, info = read_all(f)
    assert len(info.sections) == 2 and info.sections[1].swapped
    # interface ids are global across sections, like Wireshark's frame.interface_id
    assert [(r["iface"], r["linktype"]) for r in rows] == [(0, 1), (2, 1), (1, 113)]
    assert [r["ts"] for r in rows] == [1_000_000_000, 2_000_000_000, 3_000_000_000]


def test_gzip_and_stdin(tmp_path):
    raw = pb.pcap([(1, 0, FRAME_A), (2, 0, FRAME_B)])
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    rows, info = read_all(gz)
    assert [r["bytes"] for r in rows] == [FRAME_A, FRAME_B] and info.compressed
    code = ("import sys; from diagnose.capture import open_capture\n"
            "with open_capture('-') as c:\n"
            "    print(sum(len(ch.table) for ch in c.chunks()), c.info.compressed)")
    for payload, compressed in ((raw, False), (gzip.compress(raw), True)):
        out = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, check=True)
        assert out.stdout.decode().split() == ["2", str(compressed)]


def test_cut_off_pcap_keeps_complete_packets_and_warns(tmp_path):
    raw = pb.pcap([(1, 0, FRAME_A), (2, 0, FRAME_B), (3, 0, FRAME_A)])
    f = tmp_path / "cut.pcap"
    f.write_bytes(raw[:-10])
    rows, info = read_all(f)
    assert len(rows) == 2 and info.truncated
    assert len(info.warnings) == 1 and "cut short" in info.warnings[0] and str(f) in info.warnings[0]
    assert f"byte {24 + 2 * 16 + len(FRAME_A) + len(FRAME_B)}" in info.warnings[0]


def test_cut_off_pcapng_mid_block(tmp_path):
    raw = pb.shb() + pb.idb() + pb.epb(0, 1, FRAME_A) + pb.epb(0, 2, FRAME_B)
    f = tmp_path / "cut.pcapng"
    f.write_bytes(raw[:-5])
    rows, info = read_all(f)
    assert len(rows) == 1 and info.truncated


def test_pcapng_bad_block_length_is_an_error_with_offset(tmp_path):
    good = pb.shb() + pb.idb() + pb.epb(0, 1, FRAME_A)
    bad = bytearray(pb.epb(0, 2, FRAME_B))
    bad[4:8] = (13).to_bytes(4, "little")  # not a multiple of 4
    f = tmp_path / "bad.pcapng"
    f.write_bytes(good + bytes(bad))
    with pytest.raises(CaptureError) as err:
        read_all(f)
    assert err.value.offset == len(good)
    assert f"byte {len(good)}" in err.value.one_line()


def test_pcapng_trailing_length_mismatch_is_corrupt(tmp_path):
    good = pb.shb() + pb.idb()
    bad = bytearray(pb.epb(0, 2, FRAME_B))
    bad[-4:] = (len(bad) + 4).to_bytes(4, "little")
    f = tmp_path / "bad.pcapng"
    f.write_bytes(good + bytes(bad))
    with pytest.raises(CaptureError) as err:
        read_all(f)
    assert err.value.offset == len(good)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b"hello, this is a text file\n", "not a pcap or pcapng capture"),
    (b"\xd4\xc3\xb2", "not a pcap or pcapng capture"),
    (pb.pcap([])[:20], "capture header cut short"),
])
def test_not_a_capture(tmp_path, content, needle):
    f = tmp_path / "x.pcap"
    f.write_bytes(content)
    with pytest.raises(CaptureError) as err:
        read_all(f)
    assert needle in err.value.one_line() and str(f) in err.value.one_line()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(str(tmp_path / "nope.pcap"))
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(str(tmp_path))


def test_unknown_link_type_is_read_and_warned_once(tmp_path):
    f = tmp_path / "x.pcap"
    f.write_bytes(pb.pcap([(1, 0, FRAME_A), (2, 0, FRAME_B)], linktype=160))
    rows, info = read_all(f)
    assert len(rows) == 2
    assert len(info.warnings) == 1 and "LINKTYPE_160" in info.warnings[0]


def test_record_longer_than_block_and_headroom(tmp_path):
    """A 1.5 MB record (jumbo/TSO captures, or a damaged-but-plausible file) is joined across many refills."""
    big = bytes(range(256)) * 6000
    frames = [FRAME_A, big, FRAME_B]
    f = tmp_path / "big.pcap"
    f.write_bytes(pb.pcap([(i, 0, d) for i, d in enumerate(frames)], snaplen=len(big)))
    got = []
    with open_capture(str(f), chunk_bytes=64 << 10) as cap:
        for chunk in cap.chunks():
            got += [chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in chunk.table]
    assert got == frames


def test_corrupt_offset_is_a_file_offset_after_refills(tmp_path):
    good = pb.shb() + pb.idb() + b"".join(pb.epb(0, i, bytes([i]) * (40 + i)) for i in range(60))
    bad = bytearray(pb.epb(0, 99, FRAME_B))
    bad[4:8] = (7).to_bytes(4, "little")
    f = tmp_path / "bad.pcapng"
    f.write_bytes(good + bytes(bad))
    rows = 0
    with pytest.raises(CaptureError) as err:
        with open_capture(str(f), chunk_bytes=300, max_rows=7) as cap:
            for chunk in cap.chunks():
                rows += len(chunk.table)
    assert rows == 60 and err.value.offset == len(good)
