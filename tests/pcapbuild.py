"""Byte-level builders for capture files in tests: written straight from the pcap/pcapng specifications with
struct, independently of diagnose's reader, so reader tests compare against the format itself."""

from __future__ import annotations

import struct


def pcap(records, *, linktype=1, big_endian=False, nanoseconds=False, snaplen=65535) -> bytes:
    """records: iterable of (ts_sec, ts_frac, data) or (ts_sec, ts_frac, data, wirelen)."""
    o = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for rec in records:
        sec, frac, data = rec[:3]
        wire = rec[3] if len(rec) > 3 else len(data)
        out += struct.pack(o + "IIII", sec, frac, len(data), wire) + data
    return out


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def option(code: int, value: bytes, o: str = "<") -> bytes:
    return struct.pack(o + "HH", code, len(value)) + _pad(value)


def end_of_options(o: str = "<") -> bytes:
    return struct.pack(o + "HH", 0, 0)


def block(btype: int, body: bytes, o: str = "<") -> bytes:
    total = 12 + len(body)
    return struct.pack(o + "II", btype, total) + body + struct.pack(o + "I", total)


def shb(o: str = "<", options: bytes = b"") -> bytes:
    return block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options, o)


def idb(linktype: int = 1, snaplen: int = 65535, o: str = "<", tsresol: int | None = None, name: str | None = None,
        tsoffset: int | None = None) -> bytes:
    opts = b""
    if name:
        opts += option(2, name.encode(), o)
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), o)
    if tsoffset is not None:
        opts += option(14, struct.pack(o + "q", tsoffset), o)
    if opts:
        opts += end_of_options(o)
    return block(1, struct.pack(o + "HHI", linktype, 0, snaplen) + opts, o)


def epb(iface: int, ts_units: int, data: bytes, o: str = "<", wirelen: int | None = None,
        comment: str | None = None) -> bytes:
    opts = option(1, comment.encode(), o) + end_of_options(o) if comment else b""
    body = struct.pack(o + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data),
                       len(data) if wirelen is None else wirelen)
    return block(6, body + _pad(data) + opts, o)


def spb(data: bytes, o: str = "<", wirelen: int | None = None) -> bytes:
    return block(3, struct.pack(o + "I", len(data) if wirelen is None else wirelen) + _pad(data), o)


def opb(iface: int, ts_units: int, data: bytes, o: str = "<") -> bytes:
    body = struct.pack(o + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return block(2, body + _pad(data), o)


def isb(iface: int, ifrecv: int, ifdrop: int, o: str = "<", osdrop: int | None = None) -> bytes:
    opts = option(4, struct.pack(o + "Q", ifrecv), o) + option(5, struct.pack(o + "Q", ifdrop), o)
    if osdrop is not None:
        opts += option(7, struct.pack(o + "Q", osdrop), o)
    return block(5, struct.pack(o + "III", iface, 0, 0) + opts + end_of_options(o), o)


def dsb(secret_type: int, data: bytes, o: str = "<") -> bytes:
    return block(10, struct.pack(o + "II", secret_type, len(data)) + _pad(data), o)


def nrb(ipv4: bytes, name: str, o: str = "<") -> bytes:
    rec = ipv4 + name.encode() + b"\x00"
    return block(4, struct.pack(o + "HH", 1, len(rec)) + _pad(rec) + struct.pack(o + "HH", 0, 0), o)
