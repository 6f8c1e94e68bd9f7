"""frame_set: frame numbers as a display-filter set, consecutive runs as ranges."""

from hypothesis import given
from hypothesis import strategies as st

from diagnose.findings import frame_set


def _reference(frames) -> str:
    items = sorted(set(int(f) for f in frames))
    runs: list[list[int]] = []
    for frame in items:
        if runs and frame == runs[-1][-1] + 1:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return "{" + ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs) + "}"


def test_examples():
    assert frame_set([1, 2, 3, 7]) == "{1..3,7}"
    assert frame_set([7, 3, 2, 1, 2]) == "{1..3,7}"
    assert frame_set([]) == "{}"
    assert frame_set([5]) == "{5}"


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=20))
def test_same_as_reference(frames):
    assert frame_set(frames) == _reference(frames)
