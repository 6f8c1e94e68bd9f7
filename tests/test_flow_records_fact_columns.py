"""Extra flow facts held as columns (FlowRecords.add_fact_columns) read exactly like the same facts written into
per-flow dicts: records, rule columns, extra_values, iteration; written facts win over columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diagnose.conn.record import analyse_flows
from diagnose.fields import FieldType
from diagnose.rules.flow_records import ABSENT, FlowRecords

DATA = Path(__file__).parent / "data"
CAPTURE = str(DATA / "lab/tls_decrypt_keylog.pcap")

# per flow: facts or None (no extra facts); a None value is held as None (present key, absent value)
FACTS = [
    {"app_protocol": "dns", "dns_queries": 2, "dns_time_max": 0.25, "tls_handshake_done": True},
    None,
    {"app_protocol": "tls", "dns_queries": 7, "dns_time_max": None, "tls_handshake_done": False,
     "latency_dominant_share": 0.5},
]
KEYS = ["app_protocol", "dns_queries", "dns_time_max", "tls_handshake_done", "latency_dominant_share"]
TYPES = {"app_protocol": FieldType.STRING, "dns_queries": FieldType.UINT, "dns_time_max": FieldType.RELTIME,
         "tls_handshake_done": FieldType.BOOL, "latency_dominant_share": FieldType.FLOAT}


def _pair() -> tuple[FlowRecords, FlowRecords, list[int]]:
    written, columns = FlowRecords(analyse_flows(CAPTURE)), FlowRecords(analyse_flows(CAPTURE))
    convs = [c for c in range(min(len(written), len(FACTS))) if FACTS[c] is not None]
    for conv in convs:
        written.extra_for(conv).update(FACTS[conv])
    columns.add_fact_columns(convs[::-1], {key: [FACTS[c].get(key, ABSENT) for c in convs[::-1]] for key in KEYS})
    return written, columns, convs


def test_column_facts_read_like_written_facts():
    written, columns, convs = _pair()
    assert convs == [0, 2]
    group = columns.fact_columns[0]
    assert group.columns["dns_queries"][0].dtype == np.int64  # numbers typed, not objects
    assert group.columns["tls_handshake_done"][0].dtype == bool
    for conv in range(len(written)):
        a, b = written[conv], columns[conv]
        assert a == b and list(a) == list(b)
        assert [type(v) for v in a.values()] == [type(v) for v in b.values()]
    for key in KEYS:
        for got, want in zip(columns.column(key, TYPES[key]), written.column(key, TYPES[key])):
            assert got.tolist() == want.tolist() and got.dtype == want.dtype
        assert sorted(zip(*columns.extra_values(key))) == sorted(zip(*written.extra_values(key)))
    assert [dict(r) for r in columns] == [dict(r) for r in written]
    assert columns.facts_of(convs, ["dns_queries", "proto"]) == written.facts_of(convs, ["dns_queries", "proto"])


def test_rows_read_like_written_facts():
    written, _, convs = _pair()
    rows = FlowRecords(analyse_flows(CAPTURE))
    for conv in convs:
        rows.add_extra(conv, {k: v for k, v in FACTS[conv].items() if k != "latency_dominant_share"})
    rows.add_extra(convs[-1], {"latency_dominant_share": 0.5})  # given twice: updates
    assert rows.rows[convs[0]][0] is not rows.rows[convs[-1]][0]
    for conv in range(len(written)):
        assert rows[conv] == written[conv] and list(rows[conv]) == list(written[conv])
    for key in KEYS:
        for got, want in zip(rows.column(key, TYPES[key]), written.column(key, TYPES[key])):
            assert got.tolist() == want.tolist() and got.dtype == want.dtype
        assert sorted(zip(*rows.extra_values(key))) == sorted(zip(*written.extra_values(key)))
    assert [dict(r) for r in rows] == [dict(r) for r in written]
    rows.extra_for(convs[0])["dns_queries"] = 99  # written facts win over a row
    assert rows[convs[0]]["dns_queries"] == 99 and rows.column("dns_queries", FieldType.UINT)[0][convs[0]] == 99


def test_written_facts_win_over_columns():
    _, columns, convs = _pair()
    conv = convs[0]
    columns.extra_for(conv)["dns_queries"] = 99
    columns.extra_for(conv)["dns_time_max"] = None  # held as None: absent for the rules, None in the record
    assert columns[conv]["dns_queries"] == 99 and columns[conv]["dns_time_max"] is None
    values, present = columns.column("dns_queries", FieldType.UINT)
    assert values[conv] == 99 and present[conv]
    _, present = columns.column("dns_time_max", FieldType.RELTIME)
    assert not present[conv]
    assert dict(zip(*columns.extra_values("dns_queries")))[conv] == 99


def test_udp_dns_table_becomes_columns_with_the_same_records():
    from diagnose.protocols.app import AppSummary, DnsFactsTable
    from diagnose.rules.app_facts import add_app_facts

    records = FlowRecords(analyse_flows(CAPTURE))
    dicts = [dict(r) for r in records]
    # conv 0 usual (answered, no error), 1 an error response, 2 unanswered, 3 no response at all, 9 beyond the flows
    table = DnsFactsTable([0, 1, 2, 3, 9], [1, 2, 1, 1, 1], [1, 1, 0, 0, 1], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0],
                          [1_500_000, 2_000_000, 0, 0, 7], [0, 0, 0, 0, 0])
    table.errors_seen[1] = [(5, "x.example", 3)]
    table.unanswered[2] = [(8, "y.example")]
    summary = AppSummary({}, table)
    add_app_facts(records, summary)
    add_app_facts(dicts, summary)
    assert len(records.fact_columns) == 1 and records.fact_columns[0].convs.tolist() == [0]
    assert not records.rows and not records.extra  # the rest are made on demand: no dict kept per flow
    assert len(records.lazy) == 1 and records.lazy[0].convs.tolist() == [1, 2, 3]
    for conv in range(len(records)):
        assert records[conv] == dicts[conv] and list(records[conv]) == list(dicts[conv])
    assert records[0]["dns_time_max"] == 0.0015 and records[1]["dns_nxdomain"] == 1


def test_prepared_integer_columns_are_narrow_and_read_the_same():
    from diagnose.rules.flow_fields import FlowColumns

    records = FlowRecords(analyse_flows(CAPTURE))
    keys = {"syn_count": FieldType.UINT, "resp_p": FieldType.UINT, "first_frame": FieldType.UINT,
            "duration": FieldType.RELTIME, "handshake_rtt": FieldType.RELTIME, "ts": FieldType.TIME,
            "orig_bytes": FieldType.UINT, "rst_seen": FieldType.BOOL}
    records.prepare(keys)
    assert records._columns["syn_count"][0].dtype.itemsize == 1
    assert records._columns["resp_p"][0].dtype.itemsize <= 2
    dicts = FlowColumns([dict(r) for r in records])
    for key, ftype in keys.items():
        got, want = records.column(key, ftype), dicts.column(key, ftype)
        assert got[1].tolist() == want[1].tolist()
        assert got[0][got[1]].tolist() == want[0][want[1]].tolist()
    facts = records.facts_of(list(range(len(records))), list(keys))
    assert facts == [{k: r.get(k) for k in keys} for r in (dict(r) for r in records)]


class _LazyGroup:
    """A lazy group of facts (FlowRecords.add_lazy_facts) over some flows."""

    def __init__(self, facts: dict[int, dict]):
        self.by_conv = facts
        self.convs = np.array(sorted(facts), np.int64)

    def facts(self, conv: int) -> dict:
        return dict(self.by_conv[int(conv)])

    def column(self, key: str):
        values = np.array([self.by_conv[c].get(key) for c in self.convs.tolist()], object)
        return values, np.array([key in self.by_conv[c] for c in self.convs.tolist()])

    def release(self) -> None:
        pass


def test_rows_update_lazy_facts_as_every_later_source_does():
    records = FlowRecords(analyse_flows(CAPTURE))
    records.add_lazy_facts(_LazyGroup({0: {"app_protocol": "dns", "dns_queries": 2}, 2: {"app_protocol": "tls"}}))
    records.add_extra(0, {"dns_queries": 5, "tls_handshake_done": True})
    # the row updates the lazy facts: both sources' keys stay, the row's value wins
    assert records.extra_of(0) == {"app_protocol": "dns", "dns_queries": 5, "tls_handshake_done": True}
    assert records.extra_of(2) == {"app_protocol": "tls"}
    assert records.extra_of(1) is None
