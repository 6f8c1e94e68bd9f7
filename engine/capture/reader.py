"""Read a capture in chunks: a reused byte buffer plus a reused packet table, one `Chunk` at a time.

Memory stays O(chunk): the buffer holds a few MB of the file, the table a bounded number of rows, and only metadata
(interfaces, sections, secrets, comments) is kept for the whole file. A record cut off by the end of the file is a
warning (the packets before it are all delivered); a block or record whose lengths cannot be right is a
CaptureError with its byte offset.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from diagnose.capture import linktypes, pcap, pcapng
from diagnose.capture.pcapng import Interface, Secret, Section
from diagnose.capture.source import ByteSource
from diagnose.errors import CaptureError
from diagnose.packet import PACKET_DTYPE

# Bytes read per refill and rows per chunk: small enough that the whole process stays far below 200 MB,
# large enough that per-chunk Python overhead is noise (a 750 MB capture is ~190 refills).
CHUNK_BYTES = 2 << 20  # two of them: one is read while the other is decoded
MAX_ROWS = 8192


@dataclass
class Chunk:
    """Packets of one chunk. `buf` and `table` are reused: use them before asking for the next chunk."""

    buf: np.ndarray
    table: np.ndarray
    first_frame: int
    extra: dict = field(default_factory=dict)  # per-chunk results of work done ahead (diagnose.pipeline.Pass)


@dataclass
class CaptureInfo:
    path: str
    format: str  # "pcap" or "pcapng"
    compressed: bool
    resolution: str  # "us", "ns" (pcap) or "per interface" (pcapng)
    version: tuple[int, int]
    interfaces: list[Interface] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    name_records: list[tuple[str, bytes, list[str]]] = field(default_factory=list)
    comments: dict[int, list[str]] = field(default_factory=dict)  # frame number -> packet comments
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    big_endian: bool = False  # byte order the file (first section) was written in: DLT_NULL headers use it
    packets: int = 0  # packets delivered so far (all of them once reading finished)
    size: int | None = None  # bytes on disk


class Capture:
    """An open capture. Use as a context manager; iterate `chunks()` once."""

    def __init__(self, path: str, *, chunk_bytes: int = CHUNK_BYTES, max_rows: int = MAX_ROWS):
        self.path = path
        self._source = ByteSource(path)
        self._chunk_bytes = chunk_bytes
        self._max_rows = max_rows
        head = self._source.head
        size = None if path == "-" else os.path.getsize(path)
        if not head:
            self._source.close()
            raise CaptureError(path, "empty file, not a capture")
        magic = pcap.magic_of(head)
        if magic is not None:
            fmt, resolution = "pcap", magic[1]
        elif len(head) >= 4 and struct.unpack("<I", head[:4])[0] == pcapng.SHB:
            fmt, resolution = "pcapng", "per interface"
        else:
            self._source.close()
            raise CaptureError(path, f"not a pcap or pcapng capture (starts with {_show(head)})")
        self.info = CaptureInfo(path, fmt, self._source.compressed, resolution, (0, 0), size=size)
        self._warned_links: set[int] = set()
        self._iter_started = False

    # -- context manager ------------------------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    def progress(self) -> tuple[int, int | None]:
        """(bytes of the file read so far, file size or None)."""
        return self._source.disk_position(), self.info.size

    # -- reading --------------------------------------------------------------------------------------------------
    def chunks(self, held: int = 0) -> Iterator[Chunk]:
        """The packets, a chunk at a time. Buffers and tables are reused: by default a chunk is valid until the next
        one is asked for; with `held` = k the caller may still use the k chunks before the current one (they get
        buffers and tables of their own)."""
        if self._iter_started:
            raise RuntimeError("a capture can be read once")
        self._iter_started = True
        # Zeroed, not new_table's 'absent' defaults: every row handed out was started by the walker (capture.rows) and
        # a decoded one reset by the decoder, so the defaults were never read, and writing them made all 2.6 MB of a
        # table resident where a chunk of large packets uses a third of its rows.
        tables = [np.zeros(self._max_rows, PACKET_DTYPE) for _ in range(1 + held)]
        opt_off = np.zeros(self._max_rows, np.int64)
        opt_len = np.zeros(self._max_rows, np.int64)
        with _Prefetcher(self._source, self._chunk_bytes, held) as reader:
            yield from self._walk(reader, tables, opt_off, opt_len)

    def _walk(self, reader: _Prefetcher, tables, opt_off, opt_len) -> Iterator[Chunk]:
        buf, pos, filled, eof = reader.first()
        base = -pos  # file offset of buf[0]
        frame = 1
        info = self.info
        if info.format == "pcap":
            if filled - pos < pcap.HEADER_LEN:
                raise CaptureError(self.path, f"capture header cut short ({filled - pos} of {pcap.HEADER_LEN} bytes)")
            header = pcap.parse_header(bytes(buf[pos : pos + pcap.HEADER_LEN]))
            info.version = header.version
            info.big_endian = header.swapped
            self._add_interface(Interface(0, header.linktype, header.snaplen,
                                          tsresol_units=1_000_000 if header.resolution == "us" else 1_000_000_000))
            ns_per_unit = 1000 if header.resolution == "us" else 1
            pos += pcap.HEADER_LEN
        else:
            swapped = False
            if_arrays = self._interface_arrays()
            if_base = if_count = 0

        turn = 0  # chunks handed out: each takes the next table of the ring
        while True:
            table = tables[turn % len(tables)]
            row = 0
            while True:
                if info.format == "pcap":
                    pos, n, status, bad = pcap.walk_records(
                        buf, pos, filled, header.swapped, ns_per_unit, header.record_header_len, header.linktype,
                        table, row, frame)
                else:
                    pos, n, status, bad = pcapng.walk_blocks(
                        buf, pos, filled, swapped, if_base, if_count, *if_arrays,
                        table, row, frame, opt_off, opt_len)
                    if n:
                        self._collect_comments(buf, table, opt_off, opt_len, row, row + n, swapped)
                row += n
                frame += n
                if status == pcapng.OTHER_BLOCK:
                    block = self._whole_block(buf, pos, filled, swapped)
                    if block is None:
                        status = pcap.NEED_MORE
                        break
                    order, blen = block
                    try:
                        swapped, if_base, if_count = self._metadata_block(
                            bytes(buf[pos : pos + blen]), order, swapped, if_base, if_count)
                    except struct.error:
                        status, bad = pcap.CORRUPT, pos
                        break
                    if_arrays = self._interface_arrays()
                    pos += blen
                    continue
                break
            info.packets += row
            if row:
                reader.handed_out(buf)
                turn += 1
                yield Chunk(buf, table[:row], frame - row)
            if status == pcap.CORRUPT:
                raise CaptureError(self.path, "corrupt data: impossible record or block length", offset=base + bad)
            if status == pcap.TABLE_FULL:
                continue
            # NEED_MORE: the next record is incomplete in the buffer
            if eof:
                if pos < filled:
                    info.truncated = True
                    self._warn(f"{self.path}: capture cut short in the middle of a packet at byte {base + pos}; "
                               f"{info.packets} complete packets read")
                if self._source.gzip_error:
                    info.truncated = True
                    self._warn(f"{self.path}: gzip data ends early ({self._source.gzip_error})")
                return
            new_buf, new_pos, filled, eof = reader.refill(buf, pos, filled)
            base += pos - new_pos
            buf, pos = new_buf, new_pos

    # -- pcapng metadata ------------------------------------------------------------------------------------------
    @staticmethod
    def _whole_block(buf, pos, filled, swapped):
        """(struct byte order, block length) if the block at pos is complete in the buffer, else None."""
        if pos + 12 > filled:
            return None
        btype = struct.unpack_from("<I", buf, pos)[0]
        if btype == pcapng.SHB:
            magic = buf[pos + 8 : pos + 12].tobytes()
            if magic == struct.pack("<I", pcapng.BYTE_ORDER_MAGIC):
                order = "<"
            elif magic == struct.pack(">I", pcapng.BYTE_ORDER_MAGIC):
                order = ">"
            else:
                return ("!", 0)  # not a section header: _metadata_block reports it as corrupt
        else:
            order = ">" if swapped else "<"
        blen = struct.unpack_from(order + "I", buf, pos + 4)[0]
        if pos + blen > filled:
            return None
        return order, blen

    def _metadata_block(self, block: bytes, order: str, swapped: bool, if_base: int, if_count: int):
        info = self.info
        if order == "!" or len(block) < 12 or len(block) % 4:
            raise struct.error("bad block")
        btype = struct.unpack_from(order + "I", block, 0)[0]
        if struct.unpack_from(order + "I", block, len(block) - 4)[0] != len(block):
            raise struct.error("trailing length")
        if btype == pcapng.SHB:
            section = pcapng.parse_section(block, order, len(info.interfaces))
            info.sections.append(section)
            if len(info.sections) == 1:
                info.version = section.version
                info.big_endian = section.swapped
            return order == ">", len(info.interfaces), 0
        if btype == pcapng.IDB:
            self._add_interface(pcapng.parse_interface(block, order, len(info.interfaces)))
            return swapped, if_base, if_count + 1
        if btype == pcapng.ISB:
            local_if, stats = pcapng.parse_statistics(block, order)
            if local_if < if_count:
                info.interfaces[if_base + local_if].stats = stats
        elif btype == pcapng.DSB:
            info.secrets.append(pcapng.parse_secrets(block, order))
        elif btype == pcapng.NRB:
            info.name_records.extend(pcapng.parse_name_records(block, order))
        # custom and unknown blocks are skipped, as the format allows
        return swapped, if_base, if_count

    def _collect_comments(self, buf, table, opt_off, opt_len, lo, hi, swapped):
        rows = np.nonzero(opt_len[lo:hi])[0]
        order = ">" if swapped else "<"
        for i in rows + lo:
            body = buf[opt_off[i] : opt_off[i] + opt_len[i]].tobytes()
            comments = pcapng.packet_comments(body, order)
            if comments:
                self.info.comments[int(table[i]["frame"])] = comments

    def _interface_arrays(self):
        ifs = self.info.interfaces
        return (
            np.array([i.linktype for i in ifs] or [0], np.int32),
            np.array([i.snaplen for i in ifs] or [0], np.int64),
            np.array([i.tsresol_units for i in ifs] or [1_000_000], np.int64),
            np.array([i.tsoffset for i in ifs] or [0], np.int64),
        )

    def _add_interface(self, iface: Interface) -> None:
        self.info.interfaces.append(iface)
        if iface.linktype not in linktypes.DECODED and iface.linktype not in self._warned_links:
            self._warned_links.add(iface.linktype)
            self._warn(f"{self.path}: link type {linktypes.describe(iface.linktype)} is not decoded; "
                       "its frames are counted and listed only")

    def _warn(self, message: str) -> None:
        self.info.warnings.append(message)


class _Prefetcher:
    """Read-ahead: the next block of the file is read on a worker thread while the current one is decoded (the
    kernels release the GIL). Each buffer keeps headroom in front of its block, so the partial record left at the
    end of one block is copied in front of the next block instead of moving the whole block.

    A block is read into a buffer that is neither the one being walked nor one of the last `held` handed out with
    a chunk (the caller may still be using those); the ring grows past 2 + held only if a stretch of the file
    yields no packets (a record longer than a block, or metadata blocks)."""

    HEADROOM = 256 << 10  # a partial record up to this size is copied in front of the next block

    def __init__(self, source: ByteSource, block: int, held: int = 0):
        self._source = source
        self._block = block
        self._bufs = [self._new_buffer() for _ in range(2 + held)]
        self._handed: deque = deque(maxlen=held or 1)  # buffers of the chunks the caller may hold
        self._held = held
        self._reading = None  # the buffer the worker fills
        self._pool = None
        self._pending = None

    def __enter__(self) -> _Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _new_buffer(self) -> np.ndarray:
        return np.empty(self.HEADROOM + self._block, np.uint8)

    def _read(self, buf: np.ndarray) -> int:
        return self._source.readinto(memoryview(buf)[self.HEADROOM :])

    def handed_out(self, buf: np.ndarray) -> None:
        """A chunk referring to buf went to the caller."""
        if self._held and not (self._handed and self._handed[-1] is buf):
            self._handed.append(buf)

    def _start(self, walking: np.ndarray) -> None:
        busy = [walking, *self._handed]
        free = next((b for b in self._bufs if not any(b is x for x in busy)), None)
        if free is None:
            free = self._new_buffer()
            self._bufs.append(free)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diagnose-read")
        self._reading = free
        self._pending = self._pool.submit(self._read, free)

    def first(self) -> tuple[np.ndarray, int, int, bool]:
        """(buffer, start, end of valid bytes, end of input reached) of the first block."""
        buf = self._bufs[0]
        n = self._read(buf)
        eof = n < self._block
        if not eof:
            self._start(buf)
        return buf, self.HEADROOM, self.HEADROOM + n, eof

    def refill(self, buf: np.ndarray, pos: int, filled: int) -> tuple[np.ndarray, int, int, bool]:
        """The unread bytes buf[pos:filled] followed by the next block: (buffer, start, end, end of input)."""
        nxt = self._reading
        n = self._pending.result()
        eof = n < self._block
        left = filled - pos
        if left <= self.HEADROOM:
            nxt[self.HEADROOM - left : self.HEADROOM] = buf[pos:filled]
            out, start = nxt, self.HEADROOM - left
        else:  # a record longer than the headroom: join in a buffer of its own
            out = np.empty(left + n + self.HEADROOM, np.uint8)
            out[:left] = buf[pos:filled]
            out[left : left + n] = nxt[self.HEADROOM : self.HEADROOM + n]
            start = 0
        if not eof:
            self._start(out)
        return out, start, start + left + n, eof


def _show(head: bytes) -> str:
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"text {head.decode('ascii')!r}"
    return "bytes " + head.hex(" ")


def open_capture(path: str, **kwargs) -> Capture:
    """Open a pcap/pcapng capture (optionally gzip-compressed) or '-' for standard input."""
    return Capture(path, **kwargs)
