"""KeyedFrames keeps exact totals for keys with hundreds of matches (limits below and above 255) and
frame numbers beyond 32 bits, across merged parts."""

from __future__ import annotations

import numpy as np

from diagnose.rules.accumulate import KeyedFrames


def test_totals_and_kept_frames_across_merged_parts():
    rng = np.random.default_rng(11)
    for limit in (1, 7, 254, 255, 256, 1000):
        kept = KeyedFrames(limit)
        model: dict[int, list[int]] = {}
        totals: dict[int, int] = {}
        frame = 0
        for chunk in range(3 * KeyedFrames.MERGE_EVERY):
            n = int(rng.integers(0, 300))
            keys = rng.integers(0, int(rng.integers(1, 25)), n)
            frames = np.arange(frame, frame + n) + (2**33 if chunk % 10 == 9 else 0)
            frame += n
            kept.add(keys, frames)
            for k, f in zip(keys.tolist(), frames.tolist()):
                totals[k] = totals.get(k, 0) + 1
                if len(model.setdefault(k, [])) < limit:
                    model[k].append(f)
        assert max(totals.values()) > 255
        for k in range(30):
            assert kept.get(k) == (model.get(k, []), totals.get(k, 0))


def test_evidence_frames_keep_each_collection_like_its_own_keyed_frames():
    """Collections fed together (one call per chunk, different limits) keep what separate KeyedFrames keep."""
    from diagnose.rules.accumulate import EvidenceFrames

    rng = np.random.default_rng(5)
    limits = [1, 20, 20, 300]
    together = EvidenceFrames(limits)
    alone = [KeyedFrames(limit) for limit in limits]
    frame = 0
    for _chunk in range(2 * KeyedFrames.MERGE_EVERY + 3):
        n = int(rng.integers(0, 400))
        frames = np.arange(frame, frame + n)
        frame += n
        keys = rng.integers(0, 40, n)
        hits = rng.random((len(limits), n)) < 0.3
        for which, kept in enumerate(alone):
            kept.add(keys[hits[which]], frames[hits[which]])
        which, rows = np.nonzero(hits)
        together.add(which, keys[rows], frames[rows])
    for which, kept in enumerate(alone):
        view = together.collection(which)
        for key in range(45):
            assert view.get(key) == kept.get(key)
            assert view.total(key) == kept.total(key)


def test_get_many_is_get_of_each_key():
    from diagnose.rules.accumulate import EvidenceFrames

    rng = np.random.default_rng(8)
    kept = KeyedFrames(3)
    together = EvidenceFrames([2, 5])
    for _chunk in range(5):
        keys = rng.integers(0, 50, 200)
        frames = rng.integers(0, 2**40, 200)
        kept.add(keys, frames)
        together.add(keys % 2, keys, frames)
    wanted = [7, 0, 49, 60, 7, 3]
    assert kept.get_many(wanted) == [kept.get(k) for k in wanted]
    for which in (0, 1):
        view = together.collection(which)
        assert view.get_many(wanted + [-1]) == [view.get(k) for k in wanted] + [([], 0)]
