"""The rule engine's shortcuts give what the plain computation gives: evidence kept per key against a model,
display-filter tests shared through the chunk cache (never across different parameters, never written through),
flow columns made without keeping the blocks' matrices, and extra facts read in one sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diagnose.conn.record import ADDR, KINDS, STR, analyse_flows
from diagnose.fields import ChunkContext, Field, FieldType, Occurrence, lookup
from diagnose.filters import compile_display_filter
from diagnose.rules.accumulate import KeyedFrames
from diagnose.rules.flow_records import FlowRecords

DATA = Path(__file__).parent / "data"


# ---- evidence per key -------------------------------------------------------------------------------------------------

def test_keyed_frames_keep_the_first_frames_of_each_key_and_count_them_all():
    rng = np.random.default_rng(7)
    for _ in range(300):
        limit = int(rng.integers(1, 6))
        kept = KeyedFrames(limit)
        model: dict[int, list[int]] = {}
        totals: dict[int, int] = {}
        frame = 0
        for _chunk in range(int(rng.integers(1, 6))):
            n = int(rng.integers(0, 40))
            keys = rng.integers(0, int(rng.integers(1, 300)), n)
            frames = np.arange(frame, frame + n)
            frame += n
            kept.add(keys, frames)
            for k, f in zip(keys.tolist(), frames.tolist()):
                totals[k] = totals.get(k, 0) + 1
                if len(model.setdefault(k, [])) < limit:
                    model[k].append(f)
        for k in range(310):
            assert kept.get(k) == (model.get(k, []), totals.get(k, 0))


# ---- shared display-filter tests ----------------------------------------------------------------------------------------

def _ctx(n: int = 64) -> ChunkContext:
    from chunkbuild import ETH_IPV4, chunk, tcp_row

    frames = [ETH_IPV4 + bytes(20) + bytes(20) for _ in range(n)]
    buf, table = chunk(frames)
    for i in range(n):
        tcp_row(table, i, src=1, dst=2, sport=1000 + i, dport=80, flags=(0x002, 0x012, 0x010, 0x004)[i % 4])
    return ChunkContext(buf, table)


def test_equal_tests_in_different_filters_share_one_mask_per_chunk():
    a = compile_display_filter("tcp.flags.syn == 1 && tcp.flags.ack == 0")
    b = compile_display_filter("(tcp.flags.syn==1 && tcp.flags.ack==0) || tcp.flags.reset == 1")
    c = compile_display_filter("tcp.flags.syn == 1  &&  tcp.flags.ack == 0")
    assert a.key == c.key and a.key != b.key
    ctx = _ctx()
    first = a.evaluate(ctx)
    cached = {k for k in ctx._cache if isinstance(k, tuple)}
    b_mask = b.evaluate(ctx)
    assert ctx.cached(("?test", a.key), lambda: None) is not None  # a's whole test is b's left side
    assert {k for k in ctx._cache if isinstance(k, tuple)} > cached
    fresh = _ctx()
    assert first.tolist() == compile_display_filter("tcp.flags.syn == 1 && tcp.flags.ack == 0").evaluate(fresh).tolist()
    assert b_mask.tolist() == [i % 4 in (0, 3) for i in range(64)]
    first[:] = True  # the caller owns what evaluate returns: the cached mask is not written through
    assert a.evaluate(ctx).tolist() == [i % 4 == 0 for i in range(64)]


def test_parameters_of_the_same_name_in_two_rules_are_not_shared():
    def param(value: int) -> Field:
        def extract(ctx):
            return [Occurrence(np.full(ctx.n, value, np.int64), np.ones(ctx.n, bool))]
        return Field("param.port", FieldType.UINT, "a rule's threshold", extract, protocol="param")

    low, high = param(1010), param(1040)

    def resolver(p):
        return lambda name: p if name == "param.port" else lookup(name)
    f_low = compile_display_filter("tcp.srcport >= param.port", fields=resolver(low))
    f_high = compile_display_filter("tcp.srcport >= param.port", fields=resolver(high))
    assert f_low.key != f_high.key
    # field caches are keyed by name (the loader names a rule's parameters param.port@rule): one context each
    assert int(f_low.evaluate(_ctx()).sum()) == 54
    assert int(f_high.evaluate(_ctx()).sum()) == 24


def test_string_equality_treats_missing_values_as_unequal():
    from diagnose.filters.display_compile import _object_compare
    import operator

    values = np.empty(4, object)
    values[:] = ["tcp", None, "udp", b"tcp"]
    assert _object_compare(values, "tcp", operator.eq).tolist() == [True, False, False, False]
    assert _object_compare(values[:0], "tcp", operator.eq).dtype == bool


# ---- flow record columns ------------------------------------------------------------------------------------------------

def _records() -> FlowRecords:
    return FlowRecords(analyse_flows(str(DATA / "lab/mid_stream_rst.pcap")))


def test_prepared_columns_hold_no_block_matrix_and_match_the_records():
    records = _records()
    keys = ["syn_count", "proto", "duration", "rst_sender", "resp_h", "handshake_rtt"]
    records.prepare(keys)
    dicts = [records[i] for i in range(len(records))]
    for key in keys:
        stored, _ = records._columns[key]
        assert stored.base is None or stored.base.ndim == 1  # a column of its own, not a view of a [flow, field] block
        if KINDS[key] in (STR, ADDR):  # texts are kept as small ids into a table of the distinct texts
            assert stored.dtype.itemsize == 1
        values, present = records.prepared(key)
        assert len(values) == len(records)
        for i, rec in enumerate(dicts):
            assert bool(present[i]) == (rec.get(key) is not None)
            if present[i] and KINDS[key] in (STR, ADDR):
                assert values[i] == rec[key]


def test_extra_facts_are_read_in_one_sweep_and_refreshed_after_writes():
    records = _records()
    n = len(records)
    records.prepare(["syn_count", "dns_nxdomain", "tls_alert_level"])
    records.extra_for(0)["dns_nxdomain"] = 2
    records.extra_for(0)["tls_alert_level"] = "fatal"
    if n > 1:
        records.extra_for(n - 1)["dns_nxdomain"] = None  # held as None: absent
    values, present = records.column("dns_nxdomain", FieldType.UINT)
    assert values[0] == 2 and present.tolist() == [i == 0 for i in range(n)]
    levels, have = records.column("tls_alert_level", FieldType.STRING)
    assert levels[0] == "fatal" and have[0] and all(v == "" for v in levels[1:])
    records.extra_for(0)["dns_nxdomain"] = 5  # written after a sweep: the next read sees it
    assert records.column("dns_nxdomain", FieldType.UINT)[0][0] == 5
    unknown, none = records.column("http_errors", FieldType.UINT)  # a key nobody prepared
    assert not none.any() and not unknown.any()
