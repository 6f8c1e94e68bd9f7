"""How field values are held for a whole chunk: one array per occurrence, never one Python object per packet.

An extractor returns a list of `Occurrence`s. Each covers every row of the chunk: `values[i]` is meaningful where
`present[i]` is true. A field that appears once per packet (tcp.srcport) has one occurrence; a field that appears
several times (ip.addr = source and destination, vlan.id per tag, ip.src of a tunnel's outer and inner header) has
one occurrence per position, and `layer` says which protocol layer instance it belongs to (for `ip.addr#2`).

Value arrays by field type:
  bool               bool array
  uint, int          int64 array
  float              float64 array
  time, reltime      int64 nanoseconds (since the epoch / relative)
  ipv4, ether        int64 (address in the low 32 / 48 bits)
  ipv6               (n, 2) uint64 array: high and low halves
  string             object array of str
  bytes, none        ByteRanges (slices of the chunk buffer) or an object array of bytes
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class FieldType(str, Enum):
    BOOL = "bool"
    UINT = "uint"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BYTES = "bytes"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    ETHER = "ether"
    TIME = "time"  # absolute time
    RELTIME = "reltime"  # a duration (frame.time_relative, tcp.time_delta, dns.time, ...)
    NONE = "none"  # a protocol: present or not; its value is the protocol's bytes

    def __str__(self) -> str:
        return self.value


INTEGER_TYPES = frozenset({FieldType.UINT, FieldType.INT})
NUMERIC_TYPES = frozenset({FieldType.UINT, FieldType.INT, FieldType.FLOAT, FieldType.TIME, FieldType.RELTIME})
BYTES_LIKE_TYPES = frozenset({FieldType.BYTES, FieldType.NONE, FieldType.ETHER, FieldType.IPV4, FieldType.IPV6})


@dataclass
class ByteRanges:
    """Per-row byte strings that live in the chunk buffer: buf[start[i] : start[i] + length[i]].

    `search_length` (optional) is how far `contains`/`matches` may look: a protocol's value in Wireshark is its
    header (that is what len() and slices see) but searching it covers the data it carries too.
    """

    buf: np.ndarray
    start: np.ndarray  # int64, absolute offsets in buf
    length: np.ndarray  # int64
    search_length: np.ndarray | None = None

    def __len__(self) -> int:
        return self.start.shape[0]

    def searchable(self) -> ByteRanges:
        if self.search_length is None:
            return self
        return ByteRanges(self.buf, self.start, self.search_length)

    def to_objects(self, rows: np.ndarray | None = None) -> np.ndarray:
        """An object array of bytes (None where `rows` is false): for the slow paths (regex, odd functions)."""
        out = np.empty(len(self), dtype=object)
        wanted = np.ones(len(self), bool) if rows is None else rows
        buf = self.buf
        for i in np.nonzero(wanted)[0]:
            s = int(self.start[i])
            out[i] = buf[s : s + int(self.length[i])].tobytes()
        return out


@dataclass
class Occurrence:
    """One occurrence of a field across a chunk."""

    values: object  # see the module docstring for the representation of each type
    present: np.ndarray  # bool, one per row
    layer: int | np.ndarray = 1  # protocol layer instance, 1-based (per row when it varies)

    def where(self, mask: np.ndarray) -> Occurrence:
        """The same occurrence, present only where `mask` is also true."""
        return Occurrence(self.values, self.present & mask, self.layer)
