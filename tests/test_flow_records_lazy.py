"""Records made with a few facts at once (FlowRecords.load(convs, keys): LazyFacts) read exactly like whole
records: every fact by key, get and `in`, the same keys in the same order, equality, copies; TCP-only facts stay
absent from other flows' records; extra facts win over the flow analysis's."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

from diagnose.conn.record import FIELDS, analyse_flows, column_records
from diagnose.rules.flow_fields import Facts
from diagnose.rules.flow_records import IDENTITY_KEYS, FlowRecords, LazyFacts

DATA = Path(__file__).parent / "data"
CAPTURE = str(DATA / "lab/tls_decrypt_keylog.pcap")
TCP_ONLY = [name for name, _, tcp_only in FIELDS if tcp_only]


def _whole_records(analysis) -> list[dict]:
    return [rec for cols in analysis.iter_columns() for rec in column_records(cols)]


def test_lazy_records_read_like_whole_records():
    analysis = analyse_flows(CAPTURE)
    whole = _whole_records(analysis)
    assert any(r["proto"] == "tcp" for r in whole) and any(r["proto"] != "tcp" for r in whole)
    records = FlowRecords(analysis)
    records.extra_for(0)["app_protocol"] = "dns"
    records.extra_for(0)["packets"] = -1  # an extra fact wins over the flow analysis's
    convs = list(range(len(whole)))
    records.load(convs, ["syn_count"])
    for conv, want in enumerate(whole):
        want = dict(want)
        if conv == 0:
            want.update({"app_protocol": "dns", "packets": -1})
        got = records[conv]
        assert isinstance(got, LazyFacts)
        assert set(IDENTITY_KEYS) <= set(dict.keys(got))  # made at once: a plain dict read finds them
        assert dict.__len__(got) < len(want)  # the others are not made yet
        for key, value in want.items():
            assert got[key] == value and type(got[key]) is type(value)
            assert got.get(key, "default") == value and key in got
        assert list(got) == list(want) and list(got.items()) == list(want.items()) and len(got) == len(want)
        assert got == want and want == got and dict(got) == want and {**got} == want
        assert copy.copy(got) == want and pickle.loads(pickle.dumps(got)) == want
        assert got["no_such_fact"] is None and got.get("no_such_fact", 7) == 7 and "no_such_fact" not in got
        if want["proto"] != "tcp":
            for key in TCP_ONLY:
                assert key not in got and got.get(key, 7) == 7 and got[key] is None
        assert got == dict(got)  # reading every fact changed nothing


def test_records_without_keys_are_whole():
    analysis = analyse_flows(CAPTURE)
    whole = _whole_records(analysis)
    records = FlowRecords(analysis)
    records.load([1, 0])
    for conv in (0, 1):
        assert dict.__len__(records[conv]) == len(whole[conv])
        assert records[conv] == whole[conv] and isinstance(records[conv], Facts)
