"""The application and latency facts a FlowRecords makes on demand and as columns (app_columns.AppFacts, the
latency split over columns) are exactly what add_app_facts and add_latency_facts write into dict records: every
record (keys, order, values and their types), every fact column the rules read, on the lab captures, corpus
captures with HTTP/TLS/DNS and a small benchmark capture; and HTTP facts read from the transaction store's columns
equal _http's, transaction by transaction, for connections with any mix of transactions."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose.fields import FieldType
from diagnose.rules.app_facts import APP_FACTS, _http, add_app_facts
from diagnose.rules.flow_fields import FlowColumns, fact_table
from diagnose.rules.flow_records import FlowRecords
from diagnose.rules.latency import LATENCY_FACTS, LATENCY_INPUTS, add_latency_facts

DATA = Path(__file__).parent / "data"
LAB = sorted(p.name for p in (DATA / "lab").glob("*.pcap"))
CORPUS = ["corpus/ja4/browsers-x509.pcapng", "corpus/ja4/latest.pcapng", "corpus/ja4/http1.pcapng",
          "corpus/scapy/http_chunk.pcap.gz", "corpus/zeek/get.pcap", "corpus/zeek/206_example_b.pcap",
          "corpus-zeek/concurrent-range-requests.pcap", "corpus/tcpdump/dns_udp.pcap",
          "corpus/zeek/dns-two-responses.pcap", "corpus/scapy/tls_nss_example.pcap"]
TYPES = {key: ftype for key, ftype, _ in fact_table()}
EXTRA_KEYS = [key for key, _, _ in (*APP_FACTS, *LATENCY_FACTS)] + ["dns_error_frames", "dns_error_names",
                                                                     "dns_unanswered_frames"]


def _keys_of(path: Path) -> list[str]:
    keys = path.with_suffix(".keys")
    return [str(keys)] if keys.exists() else []


def _both(path: Path) -> tuple[FlowRecords, list[dict]]:
    """(FlowRecords with the application and latency facts, the same as dict records) of one capture."""
    from diagnose.conn.record import FlowAnalysis
    from diagnose.rules.run import AnalysisPass

    analysis = AnalysisPass(str(path), keylogs=_keys_of(path), use_environment=False, dns_answers=True)
    for _ in analysis.contexts():
        pass
    records = FlowRecords(FlowAnalysis(analysis.run.flows, analysis.states, analysis.flow_facts,
                                       analysis.tcp.completeness))
    dicts = [dict(r) for r in records]
    records.prepare({"proto", "syn_count", *LATENCY_INPUTS, *EXTRA_KEYS})  # every fact made as a column now
    add_app_facts(records, analysis.app_flows)
    add_latency_facts(records, analysis.dns_answers)
    add_app_facts(dicts, analysis.app_flows)
    add_latency_facts(dicts, analysis.dns_answers)
    return records, dicts


def _check(records: FlowRecords, dicts: list[dict]) -> None:
    assert len(records) == len(dicts)
    for conv, want in enumerate(dicts):
        got = records[conv]
        assert got == want, conv
        assert list(got) == list(want), conv
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()], conv
    assert [dict(r) for r in records] == dicts
    reference = FlowColumns(dicts)
    for key in EXTRA_KEYS:
        ftype = TYPES.get(key)
        if ftype is None:  # lists: read by templates and evidence, never by a filter
            continue
        got_values, got_present = records.column(key, ftype)
        want_values, want_present = reference.column(key, ftype)
        assert got_present.tolist() == want_present.tolist(), key
        assert got_values[got_present].tolist() == want_values[want_present].tolist(), key
        assert got_values.dtype == want_values.dtype, key
        held = {c: d[key] for c, d in enumerate(dicts) if key in d}
        assert dict(zip(*records.extra_values(key))) == held, key
        values, has = records.extra_column(key)
        assert {c: values[c] for c in np.flatnonzero(has).tolist()} == held, key


@pytest.mark.parametrize("name", LAB)
def test_lab_capture_records_equal_dict_records(name):
    _check(*_both(DATA / "lab" / name))


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_capture_records_equal_dict_records(name):
    _check(*_both(DATA / name))


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory) -> Path:
    """A small capture from the benchmark's generator: HTTP transactions (some cut short), DNS lookups of the
    servers before the connections, NXDOMAIN answers, refused and unanswered connections."""
    import subprocess

    out = tmp_path_factory.mktemp("bench") / "bench.pcap"
    generator = Path(__file__).parent.parent / "benchmarks" / "gen_big.py"
    subprocess.run([sys.executable, str(generator), str(out), "30000"], check=True, capture_output=True)
    return out


def test_benchmark_capture_records_equal_dict_records(bench_capture):
    records, dicts = _both(bench_capture)
    timed = [d for d in dicts if "latency_total" in d]
    assert len(timed) > 100 and any("latency_dns" in d for d in timed)  # the latency split is exercised
    assert sum("dns_error_rcode" in d for d in dicts) > 10 and sum(d.get("http_truncated", 0) for d in dicts) > 5
    _check(records, dicts)


# ---- HTTP facts from the transaction store's columns ----------------------------------------------------------------
_maybe = st.one_of(st.none(), st.integers(0, 3_000_000_000))
_transaction = st.fixed_dictionaries({
    "request": st.booleans(), "response": st.booleans(), "truncated": st.booleans(),
    "code": st.one_of(st.none(), st.sampled_from([0, 101, 200, 204, 399, 400, 404, 499, 500, 503, 599])),
    "request_frame": _maybe, "request_ts": _maybe, "first_frame": _maybe, "first_ts": _maybe, "frame": _maybe,
    "ts": _maybe, "body_bytes": _maybe, "content_length": st.one_of(_maybe, st.just(1 << 70))})


def _tx(values: dict):
    from diagnose.protocols.http import HttpMessage, HttpTransaction

    request = response = None
    if values["request"]:
        request = HttpMessage(True)
        request.method, request.uri = "GET", "/x"
        request.frame, request.ts = values["request_frame"], values["request_ts"]
    if values["response"]:
        response = HttpMessage(False)
        for name in ("code", "first_frame", "first_ts", "frame", "ts", "body_bytes", "content_length"):
            setattr(response, name, values[name])
    return HttpTransaction(request, response, truncated=values["truncated"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(_transaction, max_size=5), st.integers(0, 2)), max_size=8))
def test_http_facts_from_the_store_equal_http_per_transaction(connections):
    from diagnose.protocols.http import HttpConnection
    from diagnose.rules.app_columns import AppFacts, DnsRest

    ctx = SimpleNamespace(http_store=None)
    from diagnose.protocols.http import TransactionStore

    ctx.http_store = TransactionStore()
    flows = {}
    for conv, (transactions, dropped) in enumerate(connections):
        conn = HttpConnection(ctx, max_transactions=4)
        for values in transactions:
            conn.record(_tx(values))
        conn.dropped_transactions += dropped
        flows[conv * 2] = SimpleNamespace(protocol="http", http=conn, tls=None, dns=None, chain=None)
    empty = DnsRest([], [], [], [], [], [], {}, {})
    group = AppFacts(flows, empty, 2 * len(connections) + 1)
    want = {conv: {} for conv in flows}
    for conv, flow in flows.items():
        _http(want[conv], flow.http)
    assert [group.facts(c) for c in group.convs.tolist()] == [{"app_protocol": "http", **want[c]} for c in flows]
    for key in {k for facts in want.values() for k in facts} | {"http_ttfb_transfer", "http_first_error_code"}:
        values, held = group.column(key)
        got = {c: v for c, v, h in zip(group.convs.tolist(), values.tolist(), held.tolist()) if h}
        assert got == {c: facts[key] for c, facts in want.items() if key in facts}, key
        assert all(type(got[c]) is type(want[c][key]) for c in got), key
