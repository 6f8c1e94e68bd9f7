"""Are a flow's retransmissions bursty or uniform in time? The burstiness of the gaps between them.

Statistic: B = (sigma - mu) / (sigma + mu) over the gaps between consecutive events (Goh & Barabasi, "Burstiness
and memory in complex systems", EPL 81, 2008), with mu and sigma the mean and standard deviation of the gaps.
* B = -1: perfectly regular (all gaps equal, e.g. a retransmission every N segments).
* B ~ 0: memoryless, what independent (uniform random) loss gives: the gaps are geometric, sigma ~ mu.
* B -> +1: bursty: the events come in clumps separated by long quiet stretches (a congested queue overflowing,
  a link flapping), sigma >> mu.
It is bounded, needs no bin size, and is computed in one pass (Welford's running mean and variance), so a kernel can
keep it per flow in three numbers.

Two clocks are used per direction: the *segment clock* (how many data segments the sender sent between two
retransmissions) separates "loss comes in bursts" from "the application sends in bursts"; the *time clock*
(seconds between retransmissions) answers "when" for a report. Random loss at rate p gives B ~ -p/4 on the segment
clock, so the labels below are safe for any loss rate. Labels: "bursty" (B >= 0.2), "uniform" (B < 0.2; B <= -0.5
is moreover periodic), "few" (fewer than 5 retransmissions: too few gaps to tell).
"""

from __future__ import annotations

import math

import numpy as np

from diagnose.jit import inline

BURSTY = 0.2  # B at or above this: "bursty"; below: "uniform" (B <= -0.5 is moreover periodic)
MIN_EVENTS = 5  # fewer retransmissions than this: "few" (too few gaps to tell)


@inline
def add_gap(stats, k, gap):
    """Add one gap to the running (count, mean, M2) held in stats[k, 0:3] (Welford)."""
    stats[k, 0] += 1.0
    delta = gap - stats[k, 1]
    stats[k, 1] += delta / stats[k, 0]
    stats[k, 2] += delta * (gap - stats[k, 1])


def burstiness_from_stats(count: float, mean: float, m2: float) -> float | None:
    """B from running gap statistics; None with fewer than 2 gaps or no spread and no mean."""
    if count < 2:
        return None
    sigma = math.sqrt(max(m2, 0.0) / count)
    if sigma + mean <= 0:
        return None
    return (sigma - mean) / (sigma + mean)


def burstiness(gaps) -> float | None:
    """B of a series of gaps, computed the way the flow kernel does (for tests and ad-hoc use)."""
    stats = np.zeros((1, 3))
    for g in np.asarray(gaps, dtype=np.float64):
        add_gap(stats, 0, g)
    return burstiness_from_stats(*stats[0])


def pattern(events: int, b: float | None) -> str | None:
    """A label for B: 'bursty' or 'uniform' (in time); 'few' with fewer than MIN_EVENTS events; None without any."""
    if events == 0:
        return None
    if b is None or events < MIN_EVENTS:
        return "few"
    return "bursty" if b >= BURSTY else "uniform"
