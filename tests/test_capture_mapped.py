"""The capture reader maps uncompressed files instead of copying them: the same chunks as reading them, bounded RSS.

Every comparison reads a capture twice, once through memory-mapped windows and once with readinto (the path gzip,
standard input and pipes take), and requires the same chunks: frames, frame bytes, table columns, decoded columns,
warnings, errors and progress.
"""

from __future__ import annotations

import gzip
import mmap
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import pcapbuild as pb
from diagnose.capture import open_capture, source
from diagnose.capture.source import ByteSource, FileWindow
from diagnose.decode import FragmentReassembler, decode_chunk
from diagnose.errors import CaptureError
from diagnose.packet import ST_REASSEMBLED

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file())
# offsets that point into the chunk buffer past the frame when a row holds a reassembled datagram: they depend on
# the buffer's length (the datagram is appended behind it), which differs between a read buffer and a window
_REASSEMBLED_OFFSETS = ("l3_off", "l4_off", "payload_off", "outer_l3_off")


def is_mapped(buf: np.ndarray) -> bool:
    base = buf.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def frame_bytes(chunk) -> list[bytes]:
    return [chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in chunk.table]


def comparable(chunk, decoded: bool) -> dict:
    """What a chunk delivers, free of where in its buffer the frames sit."""
    table = chunk.table.copy()
    out = {"first_frame": chunk.first_frame, "frames": frame_bytes(chunk)}
    if decoded:
        reassembled = np.flatnonzero(table["status"] & ST_REASSEMBLED)
        datagrams = []
        for i in reassembled:
            r = table[i]
            start = int(r["data"]) + int(r["l3_off"])
            datagrams.append(chunk.buf[start: start + int(r["ip_len"])].tobytes())
            for name in _REASSEMBLED_OFFSETS:
                table[name][i] = 0
        out["datagrams"] = datagrams
    table["data"] = 0
    out["table"] = {name: table[name].tobytes() for name in table.dtype.names}  # not the padding: stack garbage
    return out


def read(path, *, mapped: bool, decode: bool = False, held: int = 0, **kwargs):
    """(comparable chunks, capture info, final progress, error) of one read."""
    chunks, error = [], None
    with pytest.MonkeyPatch.context() as mp:
        if not mapped:
            mp.setattr(ByteSource, "mappable", lambda self: False)
        reassembler = FragmentReassembler()
        try:
            cap = open_capture(str(path), **kwargs)
        except CaptureError as exc:  # not a capture (a deliberately damaged file): nothing was read yet
            return [], None, None, exc.one_line()
        with cap:
            try:
                for chunk in cap.chunks(held=held):
                    assert is_mapped(chunk.buf) == mapped
                    if decode:
                        chunk.buf = decode_chunk(chunk.buf, chunk.table, reassembler)
                    chunks.append(comparable(chunk, decode))
            except CaptureError as exc:
                error = (exc.offset, exc.one_line())
            info = cap.info
            return chunks, info, cap.progress(), error


def assert_same_reads(path, decode=False, **kwargs):
    got = read(path, mapped=True, decode=decode, **kwargs)
    want = read(path, mapped=False, decode=decode, **kwargs)
    assert got[0] == want[0]
    assert got[1] == want[1]  # CaptureInfo: warnings (offsets), truncation, metadata, packet count
    assert got[2:] == want[2:]  # progress, error and its offset
    return got


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_mapped_chunks_equal_read_chunks_on_every_capture(path):
    chunks, info, _, _ = assert_same_reads(path, decode=True, held=1)
    assert info is None or sum(len(c["frames"]) for c in chunks) == info.packets


@pytest.mark.parametrize("chunk_bytes,max_rows", [(256, 3), (1000, 7), (4096, 50), (70_000, 8192)])
def test_small_blocks_force_records_across_block_boundaries(chunk_bytes, max_rows):
    """Blocks far smaller than the headroom, and than some records, on pcap and pcapng captures with a truncated
    tail, comments, several interfaces and sections."""
    names = ["lab/retransmissions.pcap", "corpus-zeek/pcapng-multi-interface.pcapng",
             "corpus/derived/latest-truncated-midblock.pcapng", "corpus/derived/reassembly-truncated-midrecord.pcap",
             "corpus-zeek/missing_ldap_logs.pcapng"]
    for name in names:
        chunks, info, _, _ = assert_same_reads(DATA / name, decode=True, chunk_bytes=chunk_bytes, max_rows=max_rows)
        assert sum(len(c["frames"]) for c in chunks) == info.packets > 0


def test_records_longer_than_block_and_headroom(tmp_path):
    big = bytes(range(256)) * 6000  # 1.5 MB: longer than the 256 KB headroom and than the blocks
    frames = [FRAME_A, big, FRAME_B, big[:300_000], FRAME_A]
    f = tmp_path / "big.pcap"
    f.write_bytes(pb.pcap([(i, 0, d) for i, d in enumerate(frames)], snaplen=len(big)))
    for block in (64 << 10, 300 << 10, 4 << 20):
        chunks, _, _, _ = assert_same_reads(f, chunk_bytes=block)
        assert [b for c in chunks for b in c["frames"]] == frames


FRAME_A = bytes(range(60))
FRAME_B = bytes(range(100, 174))


def test_truncated_capture_warns_at_the_same_byte(tmp_path):
    records = [(i, 0, bytes([i]) * (40 + 13 * i)) for i in range(200)]
    raw = pb.pcap(records)
    for cut in (len(raw) - 10, len(raw) - 100, 5000, 4096 + 7):
        f = tmp_path / f"cut{cut}.pcap"
        f.write_bytes(raw[:cut])
        for block in (512, 4096, 1 << 20):
            _, info, _, _ = assert_same_reads(f, chunk_bytes=block, max_rows=11)
            assert info.truncated and "cut short" in info.warnings[0]


def test_corrupt_block_is_the_same_error_at_the_same_offset(tmp_path):
    good = pb.shb() + pb.idb() + b"".join(pb.epb(0, i, bytes([i]) * (40 + i)) for i in range(60))
    bad = bytearray(pb.epb(0, 99, FRAME_B))
    bad[4:8] = (7).to_bytes(4, "little")
    f = tmp_path / "bad.pcapng"
    f.write_bytes(good + bytes(bad) + pb.epb(0, 100, FRAME_A))
    for block in (300, 4096, 1 << 20):
        _, _, _, error = assert_same_reads(f, chunk_bytes=block, max_rows=7)
        assert error[0] == len(good)


def test_file_size_a_multiple_of_the_block(tmp_path):
    frame = bytes(4096 - 16)
    raw = pb.pcap([(i, 0, frame) for i in range(7)])[24:]  # whole records only: 7 x 4096 bytes
    f = tmp_path / "even.pcap"
    f.write_bytes(pb.pcap([])[:24] + raw[:-24])  # header + records = 7 x 4096 bytes, the last record cut
    for block in (4096, 8192, 7 * 4096):
        _, info, progress, _ = assert_same_reads(f, chunk_bytes=block)
        assert info.truncated and progress == (7 * 4096, 7 * 4096)


def test_growing_file_is_read_to_its_end(tmp_path):
    """A capture still being written: bytes added after opening are read, as reading to EOF reads them."""
    records = [(i, 0, bytes([i]) * 500) for i in range(100)]
    raw = pb.pcap(records)
    for mapped in (True, False):
        f = tmp_path / f"grow{mapped}.pcap"
        f.write_bytes(raw[:3000])
        with pytest.MonkeyPatch.context() as mp:
            if not mapped:
                mp.setattr(ByteSource, "mappable", lambda self: False)
            with open_capture(str(f), chunk_bytes=4096) as cap:
                with open(f, "ab") as w:
                    w.write(raw[3000:])
                frames = [b for chunk in cap.chunks() for b in frame_bytes(chunk)]
        assert frames == [d for _, _, d in records]


def test_windows_that_cannot_be_mapped_are_read(tmp_path, monkeypatch):
    """A mapping that fails part-way (address space, a file system without mmap) costs a copy, not the read."""
    real_map, calls = source._map, []

    def flaky_map(fd, lo, end):
        calls.append(lo)
        if len(calls) % 3 == 0:
            raise OSError(12, "Cannot allocate memory")
        return real_map(fd, lo, end)

    monkeypatch.setattr(source, "_map", flaky_map)
    path = DATA / "lab/retransmissions.pcap"
    got = [c for c in _plain_chunks(path, chunk_bytes=100_000)]
    monkeypatch.setattr(ByteSource, "mappable", lambda self: False)
    assert got == [c for c in _plain_chunks(path, chunk_bytes=100_000)] and len(calls) > 6


def _plain_chunks(path, **kwargs):
    with open_capture(str(path), **kwargs) as cap:
        for chunk in cap.chunks():
            yield comparable(chunk, False)


def test_without_madvise_the_mapping_still_reads_the_same(monkeypatch):
    """Windows and macOS builds may lack madvise or MADV_POPULATE_READ: pages are touched instead, and go with
    the mapping."""
    monkeypatch.setattr(FileWindow, "_populate_works", False)
    monkeypatch.delattr(mmap, "MADV_DONTNEED")
    assert_same_reads(DATA / "lab/retransmissions.pcap", decode=True, chunk_bytes=200_000, held=1)


def test_gzip_stdin_and_pipes_are_read_not_mapped(tmp_path):
    raw = pb.pcap([(1, 0, FRAME_A), (2, 0, FRAME_B)])
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    with open_capture(str(gz)) as cap:
        assert [is_mapped(c.buf) for c in cap.chunks()] == [False]
    plain = tmp_path / "x.pcap"
    plain.write_bytes(raw)
    with open_capture(str(plain)) as cap:
        assert [is_mapped(c.buf) for c in cap.chunks()] == [True]

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(raw,))
    writer.start()
    with open_capture(str(fifo)) as cap:
        assert [(is_mapped(c.buf), frame_bytes(c)) for c in cap.chunks()] == [(False, [FRAME_A, FRAME_B])]
    writer.join()

    code = ("import mmap; from diagnose.capture import open_capture\n"
            "with open_capture('-') as c:\n"
            "    print([isinstance(getattr(ch.buf.base, 'obj', None), mmap.mmap) for ch in c.chunks()])")
    with open(plain, "rb") as stdin:  # standard input redirected from a regular file
        out = subprocess.run([sys.executable, "-c", code], stdin=stdin, capture_output=True, check=True)
    assert out.stdout.decode().strip() == "[False]"


def _present(buf: np.ndarray, lo: int, hi: int) -> list[bool]:
    """Whether each page of buf[lo:hi] is mapped in this process's page table (Linux pagemap, bit 63)."""
    page = mmap.PAGESIZE
    first, last = (buf.ctypes.data + lo) // page, (buf.ctypes.data + hi - 1) // page
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = struct.unpack(f"<{last - first + 1}Q", f.read(8 * (last - first + 1)))
    return [bool(e >> 63) for e in entries]


def _span(chunk) -> tuple[int, int]:
    t = chunk.table
    return int(t["data"][0]), int(t["data"][-1] + t["caplen"][-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/pagemap")
@pytest.mark.parametrize("held", [1, 2])
def test_held_chunks_keep_their_pages_and_passed_ones_are_dropped(tmp_path, held):
    records = [(i, 0, bytes([i % 251]) * (300 + 7 * (i % 50))) for i in range(12_000)]
    f = tmp_path / "x.pcap"
    f.write_bytes(pb.pcap(records))
    seen = []
    with open_capture(str(f), chunk_bytes=256 << 10, max_rows=700) as cap:
        for chunk in cap.chunks(held=held):
            seen.append((chunk, _span(chunk)))  # tables are reused: where the frames were, noted now
            for old, (lo, hi) in seen[-1 - held:-1]:  # the caller may still use these: nothing was given back
                assert all(_present(old.buf, lo, hi))
                t = old.table
                assert [old.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in t] == \
                    [records[int(r["frame"]) - 1][2] for r in t]
    assert len({id(c.buf) for c, _ in seen}) > 10  # many windows
    kept = {id(c.buf) for c, _ in seen[-held:]}
    passed = [(c, span) for c, span in seen if id(c.buf) not in kept]
    assert passed and not any(any(_present(c.buf, *span)) for c, span in passed)


RSS_PROBE = """
import sys
from diagnose.capture import open_capture
def rss_kb():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
stale, peak, start = [], 0, None
with open_capture(sys.argv[1], chunk_bytes=2 << 20) as cap:
    for chunk in cap.chunks(held=1):
        t = chunk.table
        total = int(chunk.buf[int(t['data'][0]): int(t['data'][-1] + t['caplen'][-1])].sum())  # every page read
        stale.append(chunk.buf)  # a careless caller keeps references: the pages must go all the same
        start = rss_kb() if start is None else start
        peak = max(peak, rss_kb())
    assert all(getattr(b.base, 'obj', None) is not None for b in stale)  # mapped, not read
print(peak - start, cap.info.packets)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmRSS from /proc")
def test_rss_stays_bounded_reading_a_long_capture(tmp_path):
    """200 MB read through 2 MB windows: the pages of passed chunks are given back, so RSS grows by a few windows,
    not by the file (mapped file pages count in RSS)."""
    frame_len, count = 1400, 143_000
    header = np.zeros((count, 4), "<u4")
    header[:, 0] = np.arange(count)
    header[:, 2] = header[:, 3] = frame_len
    records = np.empty((count, 16 + frame_len), np.uint8)
    records[:, :16] = header.view(np.uint8).reshape(count, 16)
    records[:, 16:] = (np.arange(count, dtype=np.uint32) % 251)[:, None].astype(np.uint8)
    f = tmp_path / "long.pcap"
    with open(f, "wb") as out:
        out.write(pb.pcap([])[:24])
        out.write(records.tobytes())
    del records
    assert f.stat().st_size > 200_000_000
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(f)], capture_output=True, text=True, check=True)
    grew_kb, packets = map(int, out.stdout.split())
    assert packets == count
    assert grew_kb < 24 << 10, f"RSS grew by {grew_kb} KB reading {f.stat().st_size >> 20} MB"
