"""The JSON report's own encoder writes exactly the text of json.dumps(indent=2, ensure_ascii=False)."""

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose.report.render_json import _default, dumps_indented


def _stdlib(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=_default)


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
keys = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(), st.none())
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                                                      st.dictionaries(keys, inner, max_size=5)), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(trees)
def test_same_text_as_json_dumps(value):
    assert dumps_indented(value) == _stdlib(value)


def test_values_that_need_the_default_and_subclasses():
    value = {"np": [np.int64(3), np.float32(1.5), np.float64(2.25), np.bool_(True), np.float64("nan")],
             "set": {7}, "bytes": b"\xffa", "object": object(), "controls": "\x00\u2028\"\\é",
             "nested": [[[{"x": []}, {}]]], "deep": {"a": {"b": {"c": [math.inf, -math.inf, 1e-7, 10**30]}}},
             "empty": [[], {}, ()]}
    assert dumps_indented(value) == _stdlib(value)


def test_bad_key_is_refused_like_json_dumps():
    import pytest

    with pytest.raises(TypeError):
        dumps_indented({(1, 2): 3})
