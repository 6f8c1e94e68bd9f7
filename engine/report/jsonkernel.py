"""Writing flow records as JSON in a kernel, straight from their columns (diagnose.conn.record.FlowColumns).

    write_json_records(out, analysis.iter_columns())          # a JSON array, one object per flow, block by block

The output is what json.dumps would write for FlowAnalysis.records(), read back by json.loads as equal values in the
same key order; only the spelling of some numbers differs:
* times (NS columns hold integer nanoseconds; a record holds int(ns) / 1e9): the float Python starts from, float(ns),
  is an integer m; the exact decimal m / 10**9 ("1700000000.123455744") parses to the same double as the division,
  since both round the same real number once.
* syn_times (microseconds; a record holds round(seconds, 6)): the decimal k / 10**6, which round() also parses.
* other floats (rates, burstiness): numpy's shortest round-trip repr, formatted in Python for the non-zero ones.
Strings are escaped like json.dumps (ensure_ascii): quote, backslash, control bytes and DEL, non-ASCII as \\uXXXX (UTF-16
surrogate pairs above U+FFFF); IPv4 addresses are formatted in the kernel.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from diagnose.addresses import format_address
from diagnose.conn.record import ADDR, BOOL, ENDPOINT, FIELDS, FLOAT, INT, MICROS, NS, STR, UINT, FlowColumns
from diagnose.jit import inline, kernel
from diagnose.report.textkernel import put_int, string_table

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_ESCAPES = {ord('"'): ord('"'), ord("\\"): ord("\\"), 8: ord("b"), 9: ord("t"), 10: ord("n"), 12: ord("f"),
            13: ord("r")}
_SHORT_ESCAPE = np.zeros(128, np.uint8)  # the letter after the backslash, 0 = no two-character escape
for _byte, _letter in _ESCAPES.items():
    _SHORT_ESCAPE[_byte] = _letter
FLOAT_WIDTH = 32  # numpy's repr of a float64 fits
NS_WIDTH = 31  # '-', 10 digits of seconds... 19 digits in all, '.', 9 digits
MICROS_WIDTH = 28
BLOCK = 2048  # flows written at a time: the columns of a block stay a few MB
OUTPUT_BYTES = 2 << 20  # JSON bytes written at a time


def utf8_table(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes matrix, lengths): each string's UTF-8 in a row (lone surrogates kept, as json.dumps escapes them)."""
    return string_table(strings, "surrogatepass")


@inline
def _put_u16(out, pos, unit):
    out[pos] = 92  # '\'
    out[pos + 1] = 117  # 'u'
    for k in range(4):
        out[pos + 5 - k] = _HEX[unit & 15]
        unit >>= 4
    return pos + 6


@inline
def put_json_string(out, pos, table, row, length):
    """A quoted JSON string from a row of UTF-8 bytes, escaped as json.dumps(ensure_ascii=True) does."""
    out[pos] = 34
    pos += 1
    k = 0
    while k < length:
        b = np.int64(table[row, k])
        if b < 128:
            if b == 34 or b == 92 or b < 32 or b == 127:  # json.dumps escapes DEL too
                letter = _SHORT_ESCAPE[b]
                if letter:
                    out[pos] = 92
                    out[pos + 1] = letter
                    pos += 2
                else:
                    pos = _put_u16(out, pos, b)
            else:
                out[pos] = b
                pos += 1
            k += 1
            continue
        if b >= 0xF0:  # decode one UTF-8 sequence to its code point
            cp = b & 0x07
            extra = 3
        elif b >= 0xE0:
            cp = b & 0x0F
            extra = 2
        else:
            cp = b & 0x1F
            extra = 1
        for j in range(extra):
            cp = (cp << 6) | (np.int64(table[row, k + 1 + j]) & 0x3F)
        k += 1 + extra
        if cp >= 0x10000:
            cp -= 0x10000
            pos = _put_u16(out, pos, 0xD800 | (cp >> 10))
            pos = _put_u16(out, pos, 0xDC00 | (cp & 0x3FF))
        else:
            pos = _put_u16(out, pos, cp)
    out[pos] = 34
    return pos + 1


@inline
def _put_fraction(out, pos, value, scale, width):
    """value / scale (scale = 10**width) as a decimal: integer part, '.', the fraction without trailing zeros."""
    if value < 0:
        out[pos] = 45
        pos += 1
        value = -value
    pos = put_int(out, pos, value // scale)
    out[pos] = 46
    frac = value % scale
    if frac == 0:
        out[pos + 1] = 48
        return pos + 2
    while frac % 10 == 0:
        frac //= 10
        width -= 1
    for k in range(width):
        out[pos + width - k] = 48 + frac % 10
        frac //= 10
    return pos + width + 1


@inline
def put_seconds(out, pos, ns):
    """Seconds as Python's int(ns) / 1e9 gives them: the exact decimal of float(ns) / 10**9."""
    return _put_fraction(out, pos, np.int64(np.float64(ns)), 1_000_000_000, 9)


@inline
def put_uint(out, pos, bits):
    """An int64 read as unsigned 64-bit."""
    v = np.uint64(bits)
    if bits >= 0:
        return put_int(out, pos, bits)
    top = v // np.uint64(10)  # below 2**63: put_int can write it
    pos = put_int(out, pos, np.int64(top))
    out[pos] = 48 + np.int64(v - top * np.uint64(10))
    return pos + 1


@inline
def _put_ipv4(out, pos, lo):
    out[pos] = 34
    pos += 1
    for shift in (24, 16, 8, 0):
        pos = put_int(out, pos, np.int64((lo >> np.uint64(shift)) & np.uint64(255)))
        out[pos] = 46
        pos += 1
    out[pos - 1] = 34
    return pos


@inline
def _put_text(out, pos, table, row, length, start, stop):
    for k in range(start, stop):
        out[pos] = table[row, k]
        pos += 1
    return pos


@kernel
def write_records(out, pos, start, room, first, values, nulls, tcp, kinds, tcp_only, port_row, keys, key_len, strings,
                  str_len, str_colon, addr_lo, addr_str, floats, float_len, micros, micros_len):
    """Append the records of one block from record `start` on to out at pos (values/nulls: [flow, field]), while
    at least `room` bytes (the longest record) are left; returns (the position after, the next record)."""
    n = tcp.shape[0]
    for i in range(start, n):
        if pos + room > out.shape[0]:
            return pos, i
        if first and i == 0:
            out[pos] = 10
            out[pos + 1] = 32
            pos += 2
        else:
            out[pos] = 44
            out[pos + 1] = 10
            out[pos + 2] = 32
            pos += 3
        out[pos] = 123  # '{'
        pos += 1
        leading = True
        for f in range(kinds.shape[0]):
            if tcp_only[f] and not tcp[i]:
                continue
            if not leading:
                out[pos] = 44
                out[pos + 1] = 32
                pos += 2
            leading = False
            pos = _put_text(out, pos, keys, f, key_len[f], 0, key_len[f])
            v = values[i, f]
            kind = kinds[f]
            if nulls[i, f]:
                out[pos] = 110  # null
                out[pos + 1] = 117
                out[pos + 2] = 108
                out[pos + 3] = 108
                pos += 4
            elif kind == 0:  # INT
                pos = put_int(out, pos, v)
            elif kind == 1:  # UINT
                pos = put_uint(out, pos, v)
            elif kind == 2:  # BOOL
                if v:
                    out[pos] = 116
                    out[pos + 1] = 114
                    out[pos + 2] = 117
                    out[pos + 3] = 101
                    pos += 4
                else:
                    out[pos] = 102
                    out[pos + 1] = 97
                    out[pos + 2] = 108
                    out[pos + 3] = 115
                    out[pos + 4] = 101
                    pos += 5
            elif kind == 3:  # NS
                pos = put_seconds(out, pos, v)
            elif kind == 4:  # FLOAT: preformatted text
                pos = _put_text(out, pos, floats, v, float_len[v], 0, float_len[v])
            elif kind == 5:  # STR
                pos = put_json_string(out, pos, strings, v, str_len[v])
            elif kind == 6 or kind == 7:  # ADDR, ENDPOINT
                s = addr_str[v]
                port = values[i, port_row[f]] if kind == 7 else -1
                if s < 0:
                    pos = _put_ipv4(out, pos, addr_lo[v])
                elif port >= 0 and str_colon[s]:  # "[v6]:port"
                    out[pos] = 34
                    end = put_json_string(out, pos + 1, strings, s, str_len[s])
                    out[pos + 1] = 91  # '[' over the string's opening quote
                    out[end - 1] = 93  # ']' over its closing one
                    out[end] = 34
                    pos = end + 1
                else:
                    pos = put_json_string(out, pos, strings, s, str_len[s])
                if port >= 0:
                    out[pos - 1] = 58  # ':' over the closing quote
                    pos = put_int(out, pos, port)
                    out[pos] = 34
                    pos += 1
            else:  # MICROS: a list of seconds
                out[pos] = 91
                pos += 1
                for j in range(micros_len[i]):
                    if j:
                        out[pos] = 44
                        out[pos + 1] = 32
                        pos += 2
                    pos = _put_fraction(out, pos, micros[i, j], 1_000_000, 6)
                out[pos] = 93
                pos += 1
        out[pos] = 125  # '}'
        pos += 1
    return pos, n


_KINDS = np.array([kind for _, kind, _ in FIELDS], np.int64)
_TCP_ONLY = np.array([tcp_only for _, _, tcp_only in FIELDS], np.uint8)
_KEYS, _KEY_LEN = utf8_table([f'"{name}": ' for name, _, _ in FIELDS])
_ENDPOINTS = [i for i, (_, kind, _) in enumerate(FIELDS) if kind == ENDPOINT]
_MATRIX_VIEWS = [name for name, kind, _ in FIELDS if kind not in (BOOL, MICROS)]  # BOOL columns are copies
_VALUE_WIDTH = {INT: 20, UINT: 20, BOOL: 5, NS: NS_WIDTH, FLOAT: FLOAT_WIDTH}
_SPECIAL_FLOATS = {b"nan": b"NaN", b"inf": b"Infinity", b"-inf": b"-Infinity"}  # json.dumps's spellings


def _float_texts(cols: FlowColumns, values: np.ndarray, nulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The FLOAT columns' text: row 0 is "0.0"; other values are formatted once each (numpy's shortest repr)."""
    rows = [i for i, (_, kind, _) in enumerate(FIELDS) if kind == FLOAT]
    parts = []
    count = 1
    for f in rows:
        x = cols.values[FIELDS[f][0]].astype(np.float64)
        wanted = np.nonzero(~nulls[:, f].view(bool) & ((x != 0) | np.signbit(x)))[0]
        values[:, f] = 0
        values[wanted, f] = np.arange(count, count + len(wanted))
        count += len(wanted)
        parts.append(x[wanted])
    texts = np.concatenate([np.zeros(1), *parts]).astype(f"S{FLOAT_WIDTH}")
    texts[0] = b"0.0"
    for raw, spelled in _SPECIAL_FLOATS.items():
        texts[texts == raw] = spelled
    return np.ascontiguousarray(texts).view(np.uint8).reshape(len(texts), FLOAT_WIDTH), np.char.str_len(texts)


def _columns_are_matrix_views(cols: FlowColumns) -> bool:
    """True when the block's numeric columns and None masks are still views of its matrices (as
    FlowAnalysis.columns makes them; the matrix's MICROS row is zero)."""
    if cols.matrix is None or cols.null_matrix is None or cols.matrix.shape != (len(cols), len(FIELDS)):
        return False
    return all(cols.values[name].base is cols.matrix for name in _MATRIX_VIEWS) and \
        all(mask.base is cols.null_matrix for mask in cols.null.values())


def encode_block(cols: FlowColumns, first: bool) -> tuple[np.ndarray, int]:
    """(buffer, length) holding the JSON of a block's records, each preceded by its array separator."""
    out = np.empty(0, np.uint8)
    for piece in encode_pieces(cols, first, None):
        out = piece.obj
        return out, len(piece)
    return out, 0


@dataclass
class _BlockInputs:
    """Everything the JSON kernel reads for one block of records (made in Python, written without the GIL)."""
    n: int
    per_record: int  # the longest a record of this block can be: the output buffer is sized once, without a first pass
    first: bool
    arrays: tuple


def _block_inputs(cols: FlowColumns, first: bool) -> _BlockInputs:
    n = len(cols)
    nf = len(FIELDS)
    values = np.zeros((n, nf + len(_ENDPOINTS)), np.int64)  # a record's fields side by side, as they are written
    if _columns_are_matrix_views(cols):  # as FlowAnalysis.columns makes them: copy the matrix whole
        values[:, :nf] = cols.matrix
        nulls = cols.null_matrix
    else:
        nulls = np.zeros((n, nf), np.uint8)
        for f, (name, kind, _) in enumerate(FIELDS):
            if kind == MICROS:
                continue
            column = cols.values[name]
            values[:, f] = column.view(np.int64) if kind == UINT else column
            missing = cols.null.get(name)
            if missing is not None:
                nulls[:, f] = missing
    port_row = np.zeros(nf, np.int64)
    for k, f in enumerate(_ENDPOINTS):
        port_row[f] = nf + k
        values[:, nf + k] = cols.ports[FIELDS[f][0]]
    floats, float_len = _float_texts(cols, values, nulls)

    # addresses: IPv4 formatted by the kernel, the others as strings
    texts = list(cols.strings)
    addr_str = np.full(len(cols.addresses), -1, np.int64)
    for row in np.nonzero(cols.addresses[:, 0] != 4)[0].tolist():
        ipv, hi, lo = (int(x) for x in cols.addresses[row])
        addr_str[row] = len(texts)
        texts.append(format_address(ipv, hi, lo))
    strings, str_len = utf8_table(texts)
    str_colon = np.array([":" in t for t in texts] or [False], np.uint8)
    addr_lo = cols.addresses[:, 2].astype(np.uint64) if len(cols.addresses) else np.zeros(1, np.uint64)
    if not len(addr_str):
        addr_str = np.full(1, -1, np.int64)
    micros = np.ascontiguousarray(cols.values["syn_times"], dtype=np.int64)

    lengths = cols.lengths["syn_times"].astype(np.int64)
    # the longest value each kind can take in this block
    text_width = max(len(json.dumps(t)) for t in texts)
    address_width = max(text_width, len('"255.255.255.255"'))
    width = {**_VALUE_WIDTH, STR: text_width, ADDR: address_width, ENDPOINT: address_width + len("[]:65535"),
             MICROS: 2 + int(lengths.max(initial=0)) * (MICROS_WIDTH + 2)}
    per_record = 5 + sum(int(_KEY_LEN[f]) + 2 + max(width[kind], 4) for f, (_, kind, _) in enumerate(FIELDS))
    arrays = (values, nulls, cols.tcp.astype(np.uint8), _KINDS, _TCP_ONLY, port_row, _KEYS, _KEY_LEN, strings,
              str_len, str_colon, addr_lo, addr_str, floats, float_len, micros, lengths)
    return _BlockInputs(n, per_record, first, arrays)


def _write_pieces(block: _BlockInputs, out: np.ndarray | None) -> Iterator[memoryview]:
    """The block's JSON as successive pieces of `out` (reused for each piece: write a piece out before taking the
    next), or as one piece of a buffer sized for the whole block when out is None."""
    n, per_record, first = block.n, block.per_record, block.first
    if out is None or len(out) < per_record:
        out = np.empty(max(n * per_record if out is None else per_record, 1), np.uint8)
    values, nulls, tcp, *rest = block.arrays
    start = 0
    while start < n:
        end, start = write_records(out, 0, start, per_record, first, values, nulls, tcp, *rest)
        yield memoryview(out)[:end]


def encode_pieces(cols: FlowColumns, first: bool, out: np.ndarray | None) -> Iterator[memoryview]:
    """The JSON of a block's records, each preceded by its array separator (see _write_pieces for `out`)."""
    return _write_pieces(_block_inputs(cols, first), out)


def write_json_records(out, blocks: Iterable[FlowColumns]) -> None:
    """The records of every block as one JSON array (the layout json.dumps per record gave: one record a line).
    `out` is a text stream; its binary buffer is written directly when it has one.

    A writer thread runs the kernel (which drops the GIL) and the writes while this thread makes the next block's
    columns in Python: on a million packets the two halves take ~65 and ~80 ms, so overlapping them halves the time.
    At most two blocks wait for the writer, which keeps memory bounded."""
    raw = getattr(out, "buffer", None)
    if raw is not None:
        out.flush()  # keep the order of what was written through the text layer

    def emit(data: bytes | memoryview) -> None:
        if raw is not None:
            raw.write(data)
        else:
            out.write(bytes(data).decode("ascii"))

    emit(b"[")
    first = True
    with OrderedWriter(emit) as writer:
        for cols in blocks:
            if len(cols):
                writer.put(_block_inputs(cols, first))
                first = False
            del cols  # before the next block's columns are made
    emit(b"]\n" if first else b"\n]\n")
    if raw is not None:
        raw.flush()


class OrderedWriter:
    """A thread that writes blocks in the order they are put; an error there is raised in the putting thread."""

    def __init__(self, emit: Callable[[memoryview], None], depth: int = 1):
        self._emit = emit
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="json-writer", daemon=True)

    def __enter__(self) -> "OrderedWriter":
        self._thread.start()
        return self

    def put(self, block: _BlockInputs) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def __exit__(self, *exc) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error

    def _run(self) -> None:
        buffer = np.empty(OUTPUT_BYTES, np.uint8)  # one buffer for every block: only the bytes written are resident
        while (block := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking blocks so the producer never waits on a dead writer
            try:
                for piece in _write_pieces(block, buffer):
                    self._emit(piece)
            except BaseException as error:  # noqa: BLE001 - handed to the producer
                self._error = error
