"""Calibration: expected calibration error and the reliability diagram.

ECE with B equal-width confidence bins: sum over bins of
|accuracy(bin) - mean confidence(bin)| * (examples in bin / all examples),
where confidence is the top softmax probability. 0 is perfectly calibrated.

>>> import numpy as np
>>> expected_calibration_error(np.array([[0.0, 10.0], [10.0, 0.0]]), np.array([1, 0]))  # doctest: +ELLIPSIS
4.5...e-05
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_loss_recipes.losses.numerics import stable_softmax


def reliability_bins(logits, labels, bins: int = 15) -> dict:
    """Per-bin counts, accuracy and mean confidence (float64)."""
    probs = stable_softmax(np.asarray(logits, dtype=np.float64))
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
    return {"edges": edges, "count": count, "accuracy": accuracy, "confidence": mean_conf}


def expected_calibration_error(logits, labels, bins: int = 15) -> float:
    b = reliability_bins(logits, labels, bins)
    filled = b["count"] > 0
    weights = b["count"][filled] / b["count"].sum()
    return float(np.sum(weights * np.abs(b["accuracy"][filled] - b["confidence"][filled])))


def plot_reliability(logits, labels, path: Path, title: str, bins: int = 15) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = reliability_bins(logits, labels, bins)
    ece = expected_calibration_error(logits, labels, bins)
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = 1.0 / bins
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centers, np.nan_to_num(b["accuracy"]), width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy")
    top.bar(centers, np.nan_to_num(b["confidence"] - b["accuracy"]), bottom=np.nan_to_num(b["accuracy"]),
            width=width * 0.95, color="tab:red", alpha=0.3, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_title(f"{title}\nECE ({bins} bins) = {ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, b["count"], width=width * 0.95, color="gray")
    bottom.set_yscale("log")
    bottom.set_ylabel("examples")
    bottom.set_xlabel("confidence (top softmax probability)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
