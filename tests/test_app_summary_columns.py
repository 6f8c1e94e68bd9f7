"""The compact forms the application layer keeps to the end of a capture: UDP DNS facts as columns (DnsFactsTable, a
mapping that makes DnsFacts on demand) and HTTP transactions as the values the flow facts read."""

from __future__ import annotations

import pytest

from diagnose.protocols.app import DnsFacts, DnsFactsTable
from diagnose.protocols.http import HttpMessage, HttpTransaction


def table() -> DnsFactsTable:
    t = DnsFactsTable([3, 8, 20], [2, 1, 5], [2, 0, 4], [0, 0, 1], [1, 0, 0], [750_000, 0, 9_000_000_000], [0, 0, 1])
    t.unanswered[8] = [(41, "b.example")]
    t.errors_seen[3] = [(12, "a.example", 3)]
    t.tcp_fallback.add(20)
    return t


def test_dns_facts_table_is_a_mapping_of_dns_facts():
    t = table()
    assert list(t) == [3, 8, 20] and len(t) == 3
    assert 8 in t and 4 not in t and "8" not in t
    assert t[3] == DnsFacts(3, 2, 2, 0, 1, 750_000, 0, False, [], [(12, "a.example", 3)])
    assert t[8] == DnsFacts(8, 1, 0, 0, 0, 0, 0, False, [(41, "b.example")], [])
    assert t[20].tcp_fallback and t[20].truncated == 1 and t[20].time_max_ns == 9_000_000_000
    assert t.get(5) is None
    with pytest.raises(KeyError):
        t[21]
    assert [f.conv for f in t.values()] == [3, 8, 20]


def test_empty_dns_facts_table():
    t = DnsFactsTable([], [], [], [], [], [], [])
    assert len(t) == 0 and list(t.items()) == [] and 0 not in t


def message(is_request: bool, **values) -> HttpMessage:
    m = HttpMessage(is_request)
    for k, v in values.items():
        setattr(m, k, v)
    return m


def test_http_transaction_keeps_what_the_facts_read():
    req = message(True, method="GET", uri="/x", frame=4, ts=1_000, first_frame=3, first_ts=900, raw=b"GET /x ...")
    resp = message(False, code=404, frame=9, ts=5_000, first_frame=7, first_ts=2_500, body_bytes=10,
                   content_length=12, raw=b"HTTP/1.1 404 ...")
    tx = HttpTransaction(req, resp, truncated=True)
    assert tx.truncated and tx.ttfb_ns == 1_500
    assert (tx.request.method, tx.request.uri, tx.request.frame, tx.request.ts) == ("GET", "/x", 4, 1_000)
    r = tx.response
    assert (r.code, r.frame, r.ts, r.first_frame, r.first_ts, r.body_bytes, r.content_length) == \
        (404, 9, 5_000, 7, 2_500, 10, 12)
    assert not hasattr(tx, "raw")  # the header blocks stay with the messages, which the chunk drops
    alone = HttpTransaction(None, resp)
    assert alone.request is None and alone.ttfb_ns is None and alone.response.code == 404
    unanswered = HttpTransaction(req, None)
    assert unanswered.response is None and unanswered.ttfb_ns is None
