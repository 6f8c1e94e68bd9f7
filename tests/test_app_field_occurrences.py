"""protocols.fields.occurrences: the k-th value of each frame in the k-th occurrence, whichever way the arrays are
filled (by index when every frame has one value, per frame when a PDU has several values or a frame completes
several PDUs)."""

from __future__ import annotations

import numpy as np

from diagnose.protocols import dns as D
from diagnose.protocols.fields import frame_values, occurrences
from diagnose.protocols.http import HttpMessage


class _Chunk:
    def __init__(self, **kinds):
        self._kinds = kinds

    def rows(self, kind):
        return self._kinds.get(kind, [])


def _response(code: int) -> HttpMessage:
    m = HttpMessage(False)
    m.code = code
    return m


def _dns_answer(*addresses: str) -> D.DnsMessage:
    m = D.DnsMessage()
    m.flags = D.F_RESPONSE
    m.records = [D.Record("a.example", D.T_A, 1, 60, 4, a, "answer") for a in addresses]
    return m


def _as_lists(occs, n):
    """{row: [values]} as the occurrences say (the same shape as frame_values)."""
    out = {}
    for values, present in occs:
        for row in range(n):
            if present[row]:
                out.setdefault(row, []).append(values[row].tolist())
    return out


def test_one_value_per_frame_is_filled_by_index():
    chunk = _Chunk(http=[(1, _response(200)), (4, HttpMessage(True)), (6, _response(404))])
    occs = occurrences(chunk, "http.response.code", 8)
    assert len(occs) == 1
    values, present = occs[0]
    assert values.dtype == np.int64 and present.tolist() == [False, True, False, False, False, False, True, False]
    assert values[1] == 200 and values[6] == 404
    assert _as_lists(occs, 8) == frame_values(chunk, "http.response.code")


def test_a_frame_completing_two_pdus_has_two_occurrences_in_pdu_order():
    chunk = _Chunk(http=[(2, _response(100)), (2, _response(200)), (5, _response(301))])
    occs = occurrences(chunk, "http.response.code", 6)
    assert len(occs) == 2
    assert _as_lists(occs, 6) == {2: [100, 200], 5: [301]}


def test_several_values_of_one_pdu_and_addresses_converted():
    chunk = _Chunk(dns=[(0, _dns_answer("10.0.0.1", "10.0.0.2")), (3, _dns_answer("192.0.2.7"))])
    occs = occurrences(chunk, "dns.a", 4)
    assert len(occs) == 2
    assert _as_lists(occs, 4) == {0: [0x0A000001, 0x0A000002], 3: [0xC0000207]}


def test_no_pdu_gives_no_occurrence_and_a_pdu_without_the_field_is_skipped():
    assert occurrences(_Chunk(), "http.response.code", 3) == []
    chunk = _Chunk(http=[(0, HttpMessage(True))])
    assert occurrences(chunk, "http.response.code", 3) == []
    booleans = occurrences(chunk, "http.request", 3)
    assert len(booleans) == 1 and booleans[0][0].dtype == bool and booleans[0][1].tolist() == [True, False, False]
