"""How many digits of a searched value matter: those that show 1% of its search range.

    interval(0.0, 0.2)               steps of 0.002 show: 0.0040437 -> 0.004
    tag(log, interval(1e-4, 1e-2))   1% of the range's log width (steps of 4.7%)
                                     shows with 2 significant digits: 0.00136801 -> 0.0014
    choice(...), range(...)          the value as it is
A float whose search space cannot be read gets 3 significant digits.
Finer digits tell apart trials the search treats as the same point.
"""
from __future__ import annotations

import math

RESOLUTION = 0.01
FALLBACK_DIGITS = 3


def parse_space(key: str, space: str | None):
    """Hydra's sweep object for `key=space` (IntervalSweep, ChoiceSweep, ...); None if it cannot be read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not space:
        return None
    try:
        return OverridesParser.create().parse_override(f"{key}={space}").value()
    except (HydraException, ValueError):
        return None


def _digits_for(step: float) -> int:
    # The small offset keeps exact powers of ten (log10(0.001) = -2.9999...) from gaining a digit.
    return math.ceil(-math.log10(step) - 1e-9)


def format_value(value, space) -> str:
    """`value` with the digits that matter in `space` (a parsed sweep object, or None)."""
    from hydra.core.override_parser.types import IntervalSweep

    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if isinstance(space, IntervalSweep) and space.end > space.start:
        if "log" in space.tags and space.start > 0:
            relative_step = (space.end / space.start) ** RESOLUTION - 1
            return f"{value:.{max(1, _digits_for(relative_step))}g}"
        return f"{value:.{max(0, _digits_for(RESOLUTION * (space.end - space.start)))}f}"
    return f"{value:.{FALLBACK_DIGITS}g}"
