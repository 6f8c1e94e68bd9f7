"""Derive the capture-quality test captures from real lab captures (pure Python, no tshark; run from this folder).

dup_frames_bulk.pcap: the first 800 frames of lab/healthy_bulk_rtt50.pcap (a clean 50 ms RTT download) with every
    25th frame after the handshake written twice, the copy 20 µs after the original — what a SPAN port or a bridge
    that copies packets twice produces. Every copy is byte-identical, so a tool must call the "retransmissions"
    and "duplicate ACKs" they cause a capture artefact, not loss.

Everything but the inserted copies is the real capture.
"""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAB = HERE.parent / "lab"


def records(data: bytes):
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        yield endian, sec, frac, incl, orig, data[pos + 16: pos + 16 + incl]
        pos += 16 + incl


def make_dup_frames(source: Path, out: Path, frames: int = 800, every: int = 25, after: int = 10) -> int:
    data = source.read_bytes()
    header = data[:24]
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    step = 20_000 if nano else 20  # 20 µs
    chunks = [header]
    copies = 0
    for i, (endian, sec, frac, incl, orig, body) in enumerate(records(data), start=1):
        if i > frames:
            break
        chunks.append(struct.pack(endian + "IIII", sec, frac, incl, orig) + body)
        if i > after and i % every == 0:
            frac2, sec2 = frac + step, sec
            limit = 1_000_000_000 if nano else 1_000_000
            if frac2 >= limit:
                frac2 -= limit
                sec2 += 1
            chunks.append(struct.pack(endian + "IIII", sec2, frac2, incl, orig) + body)
            copies += 1
    out.write_bytes(b"".join(chunks))
    return copies


if __name__ == "__main__":
    n = make_dup_frames(LAB / "healthy_bulk_rtt50.pcap", HERE / "dup_frames_bulk.pcap")
    print(f"dup_frames_bulk.pcap: {n} duplicated frames")
