"""pcapng: sections, interfaces and the other metadata blocks in Python; packet blocks in a kernel.

Packet blocks (enhanced, simple, obsolete) are walked by `walk_blocks` without leaving compiled code; it stops at
any other block so Python can parse it (section header, interface description, statistics, name resolution,
decryption secrets, custom blocks) and then resumes. Interfaces get global indices across sections, like Wireshark's
frame.interface_id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from diagnose.capture.binary import u16, u32
from diagnose.capture.rows import start_row
from diagnose.jit import kernel

SHB = 0x0A0D0D0A
IDB = 0x00000001
OPB = 0x00000002  # obsolete packet block
SPB = 0x00000003
NRB = 0x00000004
ISB = 0x00000005
EPB = 0x00000006
DSB = 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D

# walker status codes (NEED_MORE, TABLE_FULL, CORRUPT as for pcap)
NEED_MORE = 0
TABLE_FULL = 1
CORRUPT = 2
OTHER_BLOCK = 3


@dataclass
class Interface:
    index: int  # global index (frame.interface_id)
    linktype: int
    snaplen: int
    name: str | None = None
    description: str | None = None
    tsresol_units: int = 1_000_000  # timestamp units per second
    tsoffset: int = 0  # seconds added to every timestamp
    filter: str | None = None
    os: str | None = None
    fcslen: int | None = None
    comments: list[str] = field(default_factory=list)
    # latest interface statistics block (counters are cumulative, so the last one counts)
    stats: dict[str, int] = field(default_factory=dict)
    raw_options: bytes = b""  # kept so a pcapng written back keeps every option


@dataclass
class Section:
    swapped: bool
    version: tuple[int, int]
    comments: list[str] = field(default_factory=list)
    hardware: str | None = None
    os: str | None = None
    application: str | None = None
    first_interface: int = 0  # global index of this section's interface 0


@dataclass
class Secret:
    """A decryption-secrets block: type (e.g. 0x544c534b 'TLSK' = TLS key log) and its raw data."""

    secret_type: int
    data: bytes = field(repr=False)


STAT_NAMES = {2: "starttime", 3: "endtime", 4: "ifrecv", 5: "ifdrop", 6: "filteraccept", 7: "osdrop", 8: "usrdeliv"}


def iter_options(body: bytes, order: str):
    """(code, value bytes) of an options area; stops at opt_endofopt or damaged lengths."""
    i = 0
    while i + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, i)
        if code == 0:
            return
        value = body[i + 4 : i + 4 + length]
        if len(value) < length:
            return
        yield code, value
        i += 4 + ((length + 3) & ~3)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").rstrip("\x00")


def tsresol_units(value: int) -> int:
    """if_tsresol: high bit set -> power of 2, else power of 10."""
    exp = value & 0x7F
    return 1 << exp if value & 0x80 else 10**exp


def parse_interface(block: bytes, order: str, index: int) -> Interface:
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", block, 8)
    options = block[16:-4]
    iface = Interface(index=index, linktype=linktype, snaplen=snaplen, raw_options=options)
    for code, value in iter_options(options, order):
        if code == 1:
            iface.comments.append(_text(value))
        elif code == 2:
            iface.name = _text(value)
        elif code == 3:
            iface.description = _text(value)
        elif code == 9 and value:
            iface.tsresol_units = tsresol_units(value[0])
        elif code == 11 and value:
            iface.filter = _text(value[1:])
        elif code == 12:
            iface.os = _text(value)
        elif code == 13 and value:
            iface.fcslen = value[0]
        elif code == 14 and len(value) == 8:
            iface.tsoffset = struct.unpack(order + "q", value)[0]
    return iface


def parse_section(block: bytes, order: str, first_interface: int) -> Section:
    major, minor = struct.unpack_from(order + "HH", block, 12)
    section = Section(swapped=order == ">", version=(major, minor), first_interface=first_interface)
    for code, value in iter_options(block[24:-4], order):
        if code == 1:
            section.comments.append(_text(value))
        elif code == 2:
            section.hardware = _text(value)
        elif code == 3:
            section.os = _text(value)
        elif code == 4:
            section.application = _text(value)
    return section


def parse_statistics(block: bytes, order: str) -> tuple[int, dict[str, int]]:
    (local_if,) = struct.unpack_from(order + "I", block, 8)
    stats: dict[str, int] = {}
    for code, value in iter_options(block[20:-4], order):
        if code in STAT_NAMES and len(value) == 8:
            stats[STAT_NAMES[code]] = struct.unpack(order + "Q", value)[0]
    return local_if, stats


def parse_secrets(block: bytes, order: str) -> Secret:
    secret_type, length = struct.unpack_from(order + "II", block, 8)
    return Secret(secret_type, bytes(block[16 : 16 + length]))


def parse_name_records(block: bytes, order: str) -> list[tuple[str, bytes, list[str]]]:
    """Name resolution records: ('ipv4'|'ipv6', address bytes, names)."""
    out = []
    i, body = 8, block[:-4]
    while i + 4 <= len(body):
        rtype, length = struct.unpack_from(order + "HH", body, i)
        if rtype == 0:
            break
        value = body[i + 4 : i + 4 + length]
        if rtype in (1, 2):
            alen = 4 if rtype == 1 else 16
            names = [_text(n) for n in value[alen:].split(b"\x00") if n]
            out.append(("ipv4" if rtype == 1 else "ipv6", bytes(value[:alen]), names))
        i += 4 + ((length + 3) & ~3)
    return out


def packet_comments(options: bytes, order: str) -> list[str]:
    return [_text(v) for c, v in iter_options(options, order) if c == 1]


@kernel
def _ts_ns(units_ts, units, tsoffset):
    sec = units_ts // units
    frac = units_ts % units
    if units <= 1_000_000_000:
        sub = (frac * 1_000_000_000) // units
    elif units % 1_000_000_000 == 0:
        sub = frac // (units // 1_000_000_000)
    else:
        sub = np.int64(np.float64(frac) * (1e9 / np.float64(units)))
    return (sec + tsoffset) * 1_000_000_000 + sub


@kernel
def walk_blocks(buf, pos, end, swapped, if_base, if_count, if_linktype, if_snaplen, if_units, if_tsoffset,
                table, first_row, frame0, opt_off, opt_len):
    """Fill table rows from the packet blocks at buf[pos:end] until another kind of block, a full table or the end.

    Returns (new_pos, rows_filled, status, bad_offset). Interface ids are local to the section; `if_base` maps them to
    global indices into the if_* arrays. For rows whose block has options, opt_off/opt_len give their place in buf.
    """
    row = first_row
    cap = table.shape[0]
    while True:
        if row >= cap:
            return pos, row - first_row, TABLE_FULL, -1
        if pos + 8 > end:
            return pos, row - first_row, NEED_MORE, -1
        btype = u32(buf, pos, swapped)
        blen = np.int64(u32(buf, pos + 4, swapped))
        if btype == SHB:
            return pos, row - first_row, OTHER_BLOCK, -1
        if blen < 12 or blen % 4 != 0:
            return pos, row - first_row, CORRUPT, pos
        if pos + blen > end:
            return pos, row - first_row, NEED_MORE, -1
        if np.int64(u32(buf, pos + blen - 4, swapped)) != blen:
            return pos, row - first_row, CORRUPT, pos
        if btype == EPB or btype == OPB:
            if blen < 32:
                return pos, row - first_row, CORRUPT, pos
            if btype == EPB:
                local_if = np.int64(u32(buf, pos + 8, swapped))
            else:
                local_if = np.int64(u16(buf, pos + 8, swapped))
            incl = np.int64(u32(buf, pos + 20, swapped))
            orig = np.int64(u32(buf, pos + 24, swapped))
            if local_if >= if_count or 28 + incl + 4 > blen:
                return pos, row - first_row, CORRUPT, pos
            g = if_base + local_if
            units_ts = (np.int64(u32(buf, pos + 12, swapped)) << 32) | np.int64(u32(buf, pos + 16, swapped))
            start_row(table[row], frame0 + (row - first_row), _ts_ns(units_ts, if_units[g], if_tsoffset[g]), incl, orig,
                      g, if_linktype[g], pos + 28)
            ostart = 28 + ((incl + 3) // 4) * 4
            olen = blen - 4 - ostart
            if olen > 0:
                opt_off[row] = pos + ostart
                opt_len[row] = olen
            else:
                opt_len[row] = 0
            row += 1
        elif btype == SPB:
            if blen < 16 or if_count < 1:
                return pos, row - first_row, CORRUPT, pos
            orig = np.int64(u32(buf, pos + 8, swapped))
            incl = min(orig, blen - 16)
            snap = np.int64(if_snaplen[if_base])
            if snap > 0 and incl > snap:
                incl = snap
            # simple packet blocks carry no timestamp
            start_row(table[row], frame0 + (row - first_row), 0, incl, orig, if_base, if_linktype[if_base], pos + 12)
            opt_len[row] = 0
            row += 1
        else:
            return pos, row - first_row, OTHER_BLOCK, -1
        pos += blen
