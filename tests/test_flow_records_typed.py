"""Typed flow columns take shortcuts that must give the numbers of the general conversion: times and durations in
ns below 2**50 are returned as they are (ns -> the record's float seconds -> ns gives them back), and text columns
are read through their table of distinct texts with "" where a record lacks the fact."""

from __future__ import annotations

import numpy as np

from diagnose.conn.record import NS
from diagnose.fields import FieldType as T
from diagnose.rules.flow_records import _EXACT_NS, _typed


def _general(raw: np.ndarray, present: np.ndarray) -> np.ndarray:
    values = np.round(raw / 1e9 * 1e9).astype(np.int64)
    return np.where(present, values, 0)


def test_ns_below_the_bound_survive_the_round_trip():
    rng = np.random.default_rng(7)
    edges = np.array([0, 1, -1, _EXACT_NS - 1, -_EXACT_NS + 1, 999_999_999, 10**15 + 1, 2**49 + 12345], np.int64)
    for raw in (edges, rng.integers(-_EXACT_NS + 1, _EXACT_NS, 200_000), rng.integers(0, 2**31 - 1, 1000, np.int32)):
        present = rng.random(len(raw)) < 0.9
        for ftype in (T.RELTIME, T.TIME):
            values, got_present = _typed(raw, present, NS, ftype)
            assert values.dtype == np.int64 and got_present is present
            assert np.array_equal(values, _general(raw, present))


def test_ns_beyond_the_bound_take_the_general_conversion():
    raw = np.array([1_700_000_000_123_456_789, 1_700_000_000_999_999_999, 5], np.int64)  # epoch times in ns
    present = np.array([True, True, False])
    values, _ = _typed(raw, present, NS, T.TIME)
    assert np.array_equal(values, _general(raw, present))
    assert values[0] != raw[0]  # the record's float seconds do not hold every ns of an epoch time
