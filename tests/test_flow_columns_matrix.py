"""The record columns of a block are views of one [flow, field] matrix (diagnose.conn.record._fill_columns); the
JSON writer copies that matrix whole. Columns that are no longer views (rows taken, values replaced) must still be
written from the columns themselves, with the same bytes."""

import dataclasses
from pathlib import Path

import numpy as np

from diagnose.conn.record import FIELDS, analyse_flows
from diagnose.report.jsonkernel import _columns_are_matrix_views, encode_block

DATA = Path(__file__).parent / "data"
CAPTURES = ["lab/reject_icmp.pcap", "lab/mid_stream_rst.pcap", "lab/retransmissions.pcap", "lab/dns_nxdomain.pcap"]


def _copied(cols):
    """The same block with every column and mask a copy (what FlowRecords' row selection gives)."""
    return dataclasses.replace(cols, values={k: v.copy() for k, v in cols.values.items()},
                               null={k: m.copy() for k, m in cols.null.items()})


def test_matrix_path_and_column_path_write_the_same_bytes():
    for name in CAPTURES:
        cols = analyse_flows(str(DATA / name)).columns()
        assert len(cols) > 0
        assert _columns_are_matrix_views(cols)
        copy = _copied(cols)
        assert not _columns_are_matrix_views(copy)
        fast, fast_end = encode_block(cols, True)
        slow, slow_end = encode_block(copy, True)
        assert bytes(fast[:fast_end]) == bytes(slow[:slow_end])


def test_a_replaced_column_is_written_from_the_column():
    cols = analyse_flows(str(DATA / "lab/mid_stream_rst.pcap")).columns()
    changed = _copied(cols)
    changed.values["first_frame"] = changed.values["first_frame"] + 1000
    out, end = encode_block(changed, True)
    text = bytes(out[:end]).decode("ascii")
    for frame in cols.values["first_frame"].tolist():
        assert f'"first_frame": {frame + 1000},' in text


def test_matrix_rows_hold_the_columns():
    cols = analyse_flows(str(DATA / "lab/retransmissions.pcap")).columns()
    for row, (name, _, _) in enumerate(FIELDS):
        if cols.values[name].dtype == np.int64 and cols.values[name].ndim == 1:
            assert np.array_equal(cols.matrix[:, row], cols.values[name])
