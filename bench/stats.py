"""Small statistics for noisy machines: medians of repetitions, percentiles, ratios.

The machine is shared, so a single absolute time means little: every comparison is run in the
same process run, interleaved (A, B, C, A, B, C, ...), and reported as the median of its
repetitions and as a ratio to its baseline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
