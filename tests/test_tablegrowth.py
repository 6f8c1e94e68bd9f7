"""Per-flow state tables (diagnose.tablegrowth): rows laid out without padding, zeroed reserved rows, growth that
keeps every old row byte for byte."""

from __future__ import annotations

import numpy as np

from diagnose.conn.facts import FLOW_DTYPE, ICMP_FACTS_DTYPE, TCP_FACTS_DTYPE
from diagnose.conn.zeek import CONN_DTYPE, CONV_CONN_DTYPE, TCP_DTYPE
from diagnose.flows import CONV_DTYPE
from diagnose.tablegrowth import grown, reserved, state_dtype
from diagnose.tcp.analysis import CONV_STATE_DTYPE, DIRECTION_STATE_DTYPE

FIELDS = [("flag", np.uint8), ("count", np.int64), ("small", np.int16, (3,)), ("word", np.int32),
          ("pair", np.uint64, (2,)), ("last", np.int8)]


def test_state_dtype_keeps_every_field_and_wastes_no_padding():
    packed = state_dtype(FIELDS)
    plain = np.dtype(FIELDS, align=True)
    assert set(packed.names) == set(plain.names)
    assert all(packed.fields[n][0] == plain.fields[n][0] for n in plain.names)
    raw = sum(packed.fields[n][0].itemsize for n in packed.names)
    assert packed.isalignedstruct and packed.itemsize < plain.itemsize
    assert packed.itemsize == -(-raw // packed.alignment) * packed.alignment  # only the tail rounds up


def test_every_state_table_is_packed():
    for dtype in (FLOW_DTYPE, ICMP_FACTS_DTYPE, TCP_FACTS_DTYPE, CONN_DTYPE, CONV_CONN_DTYPE, TCP_DTYPE, CONV_DTYPE,
                  CONV_STATE_DTYPE, DIRECTION_STATE_DTYPE):
        raw = sum(dtype.fields[n][0].itemsize for n in dtype.names)
        assert dtype.itemsize - raw < dtype.alignment, dtype


def test_reserved_rows_are_zero_and_growth_keeps_the_rows():
    dtype = state_dtype(FIELDS)
    table = reserved(dtype, minimum=16)
    assert len(table) >= 16 and not table.view(np.uint8).any()
    table = np.zeros(40, dtype)
    table["count"] = np.arange(40)
    table["pair"][:, 1] = 7
    table["small"][3] = (1, -2, 3)
    bigger = grown(table, 41)
    assert len(bigger) == 80
    for name in dtype.names:
        assert np.array_equal(bigger[name][:40], table[name]), name
        assert not bigger[name][40:].any(), name
