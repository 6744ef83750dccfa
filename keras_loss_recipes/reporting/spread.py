"""The mean and spread of a figure over runs (seeds): what a sweep's report and the findings show.

    >>> mean, std = mean_std([0.9, 0.8, None, float("nan")])  # None and NaN left out
    >>> round(mean, 6), round(std, 6)
    (0.85, 0.070711)
"""
from __future__ import annotations

import math
import statistics


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the finite values (0 for one value; None, None for none)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
