"""The calibration figures a run records (post-hoc temperature scaling), by name, and how reports write them.

Every training run and `recipe=calibrate` fit one temperature T on the validation
split's logits (keras_loss_recipes/evaluation/calibration.py) and score the test
split before and after dividing its logits by T. metrics.json holds them under
these names; the sweep report and the findings read them from there.

>>> before_after((0.0161, 0.0), (0.0132, 0.0), 4)
'0.0161 → 0.0132'
>>> confidence(1.4), confidence(0.9), confidence(None)
('over-confident', 'under-confident', '-')
"""
from __future__ import annotations

ECE_BINS = 15  # the confidence bins of every ECE a run records
TEMPERATURE_BOUNDS = (0.05, 20.0)  # past these a fitted T says the logits are broken, not miscalibrated
SCORES = ("nll", "ece", "brier")  # test_<score> before, test_<score>_calibrated after
CALIBRATION_KEYS = ("temperature", *(f"test_{score}{after}" for score in SCORES for after in ("", "_calibrated")))
SCORE_NAMES = {"nll": "NLL", "ece": "ECE", "brier": "Brier"}


def before_key(score: str) -> str:
    return f"test_{score}"


def after_key(score: str) -> str:
    return f"test_{score}_calibrated"


def confidence(temperature) -> str:
    """What a fitted T says of the model: above 1 its softmax was surer than its accuracy (T softens it),
    below 1 less sure (T sharpens it)."""
    if temperature is None:
        return "-"
    return "over-confident" if temperature > 1 else "under-confident" if temperature < 1 else "calibrated"


def at_bound(temperature) -> bool:
    """Whether a fitted T is a bound of the search (the NLL's minimum lies at or beyond it)."""
    return temperature is not None and any(abs(temperature - b) <= 1e-6 * b for b in TEMPERATURE_BOUNDS)


def verdict(temperature) -> str:
    """`confidence`, and whether T stopped at a bound of its search (the logits then need more than a T)."""
    return confidence(temperature) + (", at the bound of its search" if at_bound(temperature) else "")


def _mean(pair) -> float | None:
    return None if not pair or pair[0] is None else pair[0]


def before_after(before, after, digits: int = 4) -> str:
    """`before → after` of two (mean, std) pairs, their means only ('-' where either is missing)."""
    b, a = _mean(before), _mean(after)
    return "-" if b is None or a is None else f"{b:.{digits}f} → {a:.{digits}f}"
