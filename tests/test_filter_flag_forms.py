"""The short cuts that make playbook filters cheap per chunk give the same masks as the long way.

* Flag forms (display_compile._FlagForm): tests of tcp.flags.* and tcp.analysis.<flag> fields, and && / || of them,
  compiled to one mask of a flag word, against the same filters compiled field by field.
* The chunk geometry kernel (fields/geometry.py) against the numpy expressions it replaces.
* The TCP analysis columns kernel (tcp/fields.py) against its numpy form (rows that are not ANALYSIS_DTYPE).

The captures include chunks whose TCP flags word is not usable (a tunnel, TCP headers quoted in ICMP errors), where
the flag forms must fall back to the field-by-field test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diagnose.fields.geometry import NO_TRANSPORT, TCP_FLAGS_PRESENT, compute_geometry
from diagnose.fields.transport import tcp_flag_word
from diagnose.filters import compile_display_filter, display_compile
from diagnose.packet import ST_IP_FRAGMENT, ST_REASSEMBLED
from diagnose.pipeline import FilterContexts, open_pass
from diagnose.tcp import fields as tcp_fields

DATA = Path(__file__).parent / "data"
CAPTURES = ["tcp_analysis/icmp_errors.pcap", "fixtures/filters/encapsulations.pcap", "lab/reject_icmp.pcap",
            "tcp_analysis/sack_and_loss.pcap", "tcp_analysis/port_reuse.pcap", "lab/mid_stream_rst.pcap",
            "lab/zero_window.pcap", "corpus/ja4/latest.pcapng"]

FILTERS = [
    "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.flags.syn", "!tcp.flags.syn", "tcp.flags.syn == 0",
    "tcp.flags.syn != 1", "1 == tcp.flags.syn", "tcp.flags.syn == true && tcp.flags.ack == false",
    "tcp.flags.syn && tcp.flags.syn == 0", "tcp.flags.syn == 1 && tcp.flags.syn == 0", "tcp.flags.fin || tcp.flags.syn",
    "tcp.flags.ack == 1 || tcp.flags.reset", "any tcp.flags.syn != 1", "all tcp.flags.syn != 1",
    "tcp.flags.syn === 1", "tcp.flags.syn !== 0", "tcp.flags.syn#1 == 1 && tcp.flags.ack == 0",
    "tcp.flags.syn#2 == 1", "(tcp.flags.syn == 1 && tcp.flags.ack == 0) || icmp.type == 3",
    "tcp.flags.ack == 1 and tcp.flags.push == 1 and tcp.flags.fin == 0 and tcp.flags.reset == 0",
    "tcp.analysis.retransmission", "tcp.analysis.retransmission || tcp.analysis.lost_segment",
    "tcp.analysis.zero_window || tcp.analysis.window_update || tcp.analysis.zero_window_probe",
    "tcp.analysis.duplicate_ack && !tcp.analysis.retransmission", "tcp.analysis.lost_segment && tcp.analysis.ack_lost_segment",
    "tcp.analysis.flags", "tcp.analysis.flags || tcp.analysis.keep_alive", "tcp.flags.syn || tcp.analysis.retransmission",
    "tcp.analysis.duplicate_ack && tcp.flags.ack == 1",
]


def _contexts(name: str):
    return [ctx for _, ctx in FilterContexts(open_pass(str(DATA / name)), {"tcp"})]


@pytest.fixture(scope="module")
def contexts():
    return {name: _contexts(name) for name in CAPTURES}


def _field_by_field(text: str):
    original = display_compile._Checker.flag_form
    display_compile._Checker.flag_form = lambda self, node: None
    try:
        return compile_display_filter(text)
    finally:
        display_compile._Checker.flag_form = original


@pytest.mark.parametrize("text", FILTERS)
def test_flag_forms_give_the_masks_of_the_fields(contexts, text):
    fast, slow = compile_display_filter(text), _field_by_field(text)
    matched = 0
    for name, ctxs in contexts.items():
        for ctx in ctxs:
            ctx.release()
            expected = slow.evaluate(ctx)
            ctx.release()
            got = fast.evaluate(ctx)
            assert np.array_equal(got, expected), (name, text)
            matched += int(expected.sum())
    assert matched or text in ("tcp.flags.syn == 1 && tcp.flags.syn == 0", "tcp.flags.syn#2 == 1",
                               "tcp.analysis.lost_segment && tcp.analysis.ack_lost_segment")


def test_captures_exercise_both_the_word_and_the_fallback(contexts):
    usable = [tcp_flag_word(ctx) is not None for ctxs in contexts.values() for ctx in ctxs]
    assert any(usable) and not all(usable)


def test_a_flag_form_does_not_extract_the_fields():
    ctx = _contexts("lab/mid_stream_rst.pcap")[0]
    ctx.release()
    assert compile_display_filter("tcp.flags.syn == 1 && tcp.flags.ack == 0").evaluate(ctx).any()
    compile_display_filter("tcp.analysis.retransmission || tcp.analysis.duplicate_ack").evaluate(ctx)
    assert not {"tcp.flags", "tcp.flags.syn", "tcp.flags.ack", "tcp.analysis.retransmission"} & set(ctx._cache)


def test_geometry_kernel_matches_the_numpy_expressions(contexts):
    for ctxs in contexts.values():
        for ctx in ctxs:
            t, buf_len = ctx.table, ctx.buf.shape[0]
            g = compute_geometry(t, buf_len)
            start = t["data"].astype(np.int64)
            end = np.minimum(start + t["caplen"], buf_len)
            l4_abs = start + t["l4_off"]
            cap = np.where((t["status"] & ST_REASSEMBLED) != 0, buf_len, end)
            l4_end = np.minimum(l4_abs + np.maximum(t["l4_len"], 0), cap)
            decoded = (t["ipv"] != 0) & (t["l4_off"] >= 0) & ((t["status"] & ST_IP_FRAGMENT) == 0)
            tcp = decoded & (t["ip_proto"] == 6) & (l4_abs + 14 <= l4_end)
            assert np.array_equal(g.frame_start, start) and np.array_equal(g.frame_end, end)
            assert np.array_equal(g.l4_abs, l4_abs) and np.array_equal(g.l4_end, l4_end)
            assert np.array_equal(g.l4_proto, np.where(decoded, t["ip_proto"].astype(np.int16), NO_TRANSPORT))
            assert np.array_equal(g.tcp_flags, np.where(tcp, t["tcp_flags"].astype(np.int64) | TCP_FLAGS_PRESENT, 0))
            assert g.status_seen == int(np.bitwise_or.reduce(t["status"]))
            assert g.has_outer == bool((t["outer_l3_off"] >= 0).any())
    assert compute_geometry(t[["data", "caplen"]], buf_len) is None  # not a packet table: the readers' own numpy


def test_analysis_columns_kernel_matches_numpy(contexts):
    for ctxs in contexts.values():
        for ctx in ctxs:
            rows = ctx.extra[tcp_fields.EXTRA_KEY]
            ctx.release()
            present, word = tcp_fields._columns(ctx)
            packed = np.zeros(len(rows), [("present", np.uint16), ("flags", np.uint32)])  # not ANALYSIS_DTYPE
            packed["present"], packed["flags"] = rows["present"], rows["flags"]
            ctx.extra[tcp_fields.EXTRA_KEY] = packed
            ctx.release()
            numpy_present, numpy_word = tcp_fields._columns(ctx)
            ctx.extra[tcp_fields.EXTRA_KEY] = rows
            ctx.release()
            assert np.array_equal(present, numpy_present) and np.array_equal(word, numpy_word)
            assert np.array_equal(word, np.where((rows["present"] & tcp_fields.P_ANALYSIS) != 0, rows["flags"], 0))
