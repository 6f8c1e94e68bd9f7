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
