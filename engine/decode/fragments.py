"""IP fragment reassembly (IPv4 and IPv6): a Python slow path, since fragments are rare.

The caller keeps one FragmentReassembler for the whole capture, so a datagram can span chunks. When a fragment
completes a datagram (normally its last one, like Wireshark), the datagram is appended to the chunk buffer behind a
synthesized IP header (offset 0, no MF, correct length and checksum; IPv6 without the fragment header) and that
row's transport layer is decoded from there (ST_REASSEMBLED). The other fragments keep ST_IP_FRAGMENT.

Memory is bounded: a datagram not completed within `timeout_ns` of its first fragment (capture time) is dropped,
and so is the oldest pending datagram when the pending bytes or datagrams exceed their limits. Overlapping
fragments keep the bytes that arrived first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..packet import ST_IP_FRAGMENT
from .walk import decode_rows

IPV4_MAX_DATAGRAM = 65535
IPV6_MAX_PAYLOAD = 65535


@dataclass
class _Datagram:
    first_ts: int
    proto: int
    data: bytearray = field(default_factory=bytearray)
    covered: list = field(default_factory=list)  # sorted, merged [start, end) byte ranges of the payload
    total: int = -1  # payload length, known once the fragment without MF arrived
    header: bytes | None = None  # IP header of the offset-0 fragment
    broken: bool = False  # a fragment was cut by the snaplen or impossible: never completes

    def add(self, offset: int, payload: bytes) -> None:
        end = offset + len(payload)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        pos = offset
        for s, e in self.covered:  # copy only the gaps: first arrival wins
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                self.data[pos:s] = payload[pos - offset:s - offset]
            pos = max(pos, e)
        if pos < end:
            self.data[pos:end] = payload[pos - offset:]
        merged = []
        for s, e in sorted(self.covered + [(offset, end)]):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.covered = merged

    def complete(self) -> bool:
        # bytes past the end announced by the last fragment are ignored (Wireshark: "fragment too long")
        return (not self.broken and self.header is not None and self.total >= 0 and bool(self.covered)
                and self.covered[0][0] == 0 and self.covered[0][1] >= self.total)


def _ipv4_checksum(header: bytes) -> int:
    acc = sum(int.from_bytes(header[k:k + 2], "big") for k in range(0, len(header), 2))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return ~acc & 0xFFFF


def _synthesize(ipv: int, header: bytes, proto: int, payload_len: int) -> bytes:
    """The IP header of the reassembled datagram."""
    if ipv == 4:
        h = bytearray(header)
        h[2:4] = (len(h) + payload_len).to_bytes(2, "big")
        h[6] &= 0x40  # keep DF; clear MF and the offset
        h[7] = 0
        h[10:12] = b"\0\0"
        h[10:12] = _ipv4_checksum(bytes(h)).to_bytes(2, "big")
        return bytes(h)
    h = bytearray(header[:40])
    h[4:6] = payload_len.to_bytes(2, "big")
    h[6] = proto
    return bytes(h)


class FragmentReassembler:
    def __init__(self, *, timeout_ns: int = 30_000_000_000, max_pending_bytes: int = 16 << 20,
                 max_pending_datagrams: int = 4096):
        self.timeout_ns = timeout_ns
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_datagrams = max_pending_datagrams
        self._pending: dict[tuple, _Datagram] = {}  # insertion order = oldest first
        self._pending_bytes = 0
        self.dropped = 0  # datagrams given up (timeout, limits, broken)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def reassemble(self, buf: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Feed this chunk's fragment rows; returns buf, or a longer copy holding the completed datagrams."""
        rows = np.flatnonzero(table["status"] & ST_IP_FRAGMENT)
        done_rows, pieces = [], []
        for i in rows:
            got = self._feed(buf, table[i])
            if got is not None:
                done_rows.append(i)
                pieces.append(got)
        if not done_rows:
            return buf
        starts, hlens, totals, protos = [], [], [], []
        pos = buf.shape[0]
        for header, payload, proto in pieces:
            starts.append(pos)
            hlens.append(len(header))
            totals.append(len(header) + len(payload))
            protos.append(proto)
            pos += len(header) + len(payload)
        grown = np.empty(pos, dtype=np.uint8)
        grown[:buf.shape[0]] = buf
        at = buf.shape[0]
        for header, payload, _ in pieces:
            grown[at:at + len(header)] = np.frombuffer(header, dtype=np.uint8)
            at += len(header)
            grown[at:at + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
            at += len(payload)
        as64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        decode_rows(grown, table, as64(done_rows), as64(starts), as64(hlens), as64(totals),
                                as64(protos))
        return grown

    def _feed(self, buf, row):
        ipv = int(row["ipv"])
        ts = int(row["ts"])
        self._expire(ts)
        base = int(row["data"])
        l3 = base + int(row["l3_off"])
        hl = int(row["ip_hl"])
        ip_len = int(row["ip_len"])
        proto = int(row["ip_proto"])
        offset = int(row["frag_off"]) * 8
        more = bool(row["ip_flags"] & 1)
        if ipv == 4:
            key = (4, int(row["src_lo"]), int(row["dst_lo"]), int(row["ip_id"]), proto)
            limit = IPV4_MAX_DATAGRAM - hl
        else:
            key = (6, int(row["src_hi"]), int(row["src_lo"]), int(row["dst_hi"]), int(row["dst_lo"]),
                   int(row["ip_id"]))
            limit = IPV6_MAX_PAYLOAD
        dg = self._pending.get(key)
        if dg is None:
            dg = self._pending[key] = _Datagram(first_ts=ts, proto=proto)
        size = ip_len - hl
        captured_end = base + int(row["caplen"])
        if size < 0 or offset + size > limit or l3 + ip_len > captured_end:
            dg.broken = True  # cut by the snaplen, or impossible: this datagram can never be rebuilt
            return None
        payload = bytes(buf[l3 + hl:l3 + ip_len])
        before = len(dg.data)
        dg.add(offset, payload)
        self._pending_bytes += len(dg.data) - before
        if offset == 0:  # its header (and, for IPv6, its next-header value) describe the whole datagram
            dg.header = bytes(buf[l3:l3 + (hl if ipv == 4 else 40)])
            dg.proto = proto
        if not more:
            dg.total = offset + size
        if dg.complete():
            self._forget(key)
            data = bytes(dg.data[:dg.total])
            return _synthesize(ipv, dg.header, dg.proto, len(data)), data, dg.proto
        self._enforce_limits()
        return None

    def _forget(self, key) -> None:
        dg = self._pending.pop(key)
        self._pending_bytes -= len(dg.data)

    def _expire(self, now: int) -> None:
        while self._pending:
            key, dg = next(iter(self._pending.items()))
            if now - dg.first_ts <= self.timeout_ns:
                break
            self._forget(key)
            self.dropped += 1

    def _enforce_limits(self) -> None:
        while self._pending and (self._pending_bytes > self.max_pending_bytes
                                 or len(self._pending) > self.max_pending_datagrams):
            self._forget(next(iter(self._pending)))
            self.dropped += 1
