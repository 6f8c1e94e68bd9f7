"""`diagnose flows --json` writes the record columns with a kernel (diagnose.report.jsonkernel): what json.loads reads
back must be the records of FlowAnalysis.records(), values and key order alike, for every capture we hold."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from diagnose.errors import CaptureError
from diagnose.conn.record import FIELDS, STR, _syn_micros, analyse_flows, column_records
from diagnose.report.flows import write_json
from diagnose.report.jsonkernel import encode_block, put_json_string, put_seconds, put_uint, utf8_table, \
    write_json_records

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for folder in ("lab", "corpus") for p in (DATA / folder).rglob("*")
                  if p.suffix in (".pcap", ".pcapng", ".cap", ".gz"))


def _kernel_json(analysis, block: int = 7) -> str:
    out = io.StringIO()
    write_json_records(out, analysis.iter_columns(block))  # small blocks: many block boundaries
    return out.getvalue()


def _same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w)  # key order
        assert g == w


def test_every_capture_reads_back_as_its_records():
    checked = endpoints_v6 = 0
    for path in CAPTURES:
        try:
            analysis = analyse_flows(str(path))
        except CaptureError:
            continue  # e.g. the corpus's capture with a bad magic number
        text = _kernel_json(analysis)
        want = analysis.records()
        _same(json.loads(text), want)
        checked += 1
        endpoints_v6 += sum(r["client"].startswith("[") for r in want)
    assert checked >= 60
    assert endpoints_v6 > 0  # IPv6 endpoints ("[addr]:port") were written too


def test_write_json_streams_through_the_binary_buffer(tmp_path):
    path = DATA / "lab" / "retransmissions.pcap"
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="ascii")
    text.write("")
    warnings = write_json(str(path), text)
    text.flush()
    assert warnings == []
    _same(json.loads(raw.getvalue().decode()), analyse_flows(str(path)).records())


def test_empty_capture_gives_an_empty_array(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    out = io.StringIO()
    write_json(str(empty), out)
    assert out.getvalue() == "[]\n"
    assert json.loads(out.getvalue()) == []


NASTY = ['quote " backslash \\ end', "\x00\x01\x1f\x7f\b\f\n\r\t", "é€ 😀 \U0010FFFF", "lone \ud800 surrogate", ""]


def test_strings_are_escaped_like_json_dumps():
    analysis = analyse_flows(str(DATA / "lab" / "tls_decrypt_keylog.pcap"))
    cols = analysis.columns()
    slots = [(key, i) for key in ("history", "conn_state", "handshake") for i in range(len(cols))]
    for (key, i), text in zip(slots, NASTY):  # give the flows' strings hostile spellings
        cols.strings.append(text)
        cols.values[key][i] = len(cols.strings) - 1
        cols.null[key][i] = False
    buf, end = encode_block(cols, True)
    got = json.loads("[" + bytes(buf[:end]).decode("ascii") + "]")  # ASCII only: non-ASCII is \u-escaped
    want = column_records(cols)
    _same(got, want)
    assert {r[key] for r in got for key in ("history", "conn_state")} >= set(NASTY)


@pytest.mark.parametrize("text", NASTY)
def test_one_string(text):
    table, lengths = utf8_table([text])
    out = np.zeros(16 + 12 * len(text), np.uint8)
    end = put_json_string(out, 0, table, 0, lengths[0])
    assert bytes(out[:end]).decode("ascii") == json.dumps(text)


def test_times_read_back_as_the_division_python_makes():
    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.integers(-10**12, 10**12, 2000), rng.integers(1_600_000_000 * 10**9, 1_800_000_000 * 10**9, 2000),
        np.array([0, 1, -1, 999_999_999, 10**9, 2**53, 2**53 + 1, 2**62 + 12345, -(2**62) - 7])])
    out = np.zeros(64, np.uint8)
    for ns in values.tolist():
        end = put_seconds(out, 0, ns)
        assert json.loads(bytes(out[:end])) == ns / 1e9, ns


def test_unsigned_counts():
    out = np.zeros(32, np.uint8)
    for v in (0, 1, 2**63 - 1, 2**63, 2**64 - 1, 12345678901234567890):
        end = put_uint(out, 0, np.uint64(v).view(np.int64))
        assert bytes(out[:end]).decode() == str(v)


def test_syn_times_round_like_python():
    rng = np.random.default_rng(3)
    deltas = np.concatenate([rng.integers(0, 10**11, 3000), rng.integers(0, 10**8, 1000) * 1000 + 500,
                             np.array([0, 500, 1500, 2500, 10**15 + 500, 3 * 10**15 + 123])])
    micros = _syn_micros(deltas.reshape(-1, 1)).ravel()
    assert (micros / 1e6).tolist() == [round(d / 1e9, 6) for d in deltas.tolist()]


def test_every_string_field_is_escaped():
    """The kernel escapes every STR field; guard against a new string field that bypasses the table."""
    assert {name for name, kind, _ in FIELDS if kind == STR} >= {"conn_state", "history", "proto", "end"}


class _FailingStream:
    """A text stream whose binary buffer fails after `writes` writes, as a closed pipe does."""

    def __init__(self, writes: int):
        self.left = writes
        self.buffer = self

    def write(self, data):
        if self.left == 0:
            raise BrokenPipeError("reader went away")
        self.left -= 1
        return len(data)

    def flush(self):
        pass


@pytest.mark.parametrize("writes", [0, 1, 3])
def test_a_failing_write_in_the_writer_thread_reaches_the_caller(writes):
    analysis = analyse_flows(str(DATA / "corpus" / "ja4" / "http1.pcapng"))
    assert analysis.flows.count > 4
    with pytest.raises(BrokenPipeError):
        write_json_records(_FailingStream(writes), analysis.iter_columns(1))  # more blocks than the writer's queue
