"""Calibration: expected calibration error, the reliability diagram, and post-hoc temperature scaling.

ECE with B equal-width confidence bins: sum over bins of
|accuracy(bin) - mean confidence(bin)| * (examples in bin / all examples),
where confidence is the top softmax probability. 0 is perfectly calibrated.

Temperature scaling (Guo et al., ICML 2017) divides the logits by one T fitted on held-out logits by
minimising the negative log-likelihood: T > 1 makes an over-confident model less sure, T < 1 an
under-confident one surer, and the argmax (so the accuracy) never moves.

>>> import numpy as np
>>> expected_calibration_error(np.array([[0.0, 10.0], [10.0, 0.0]]), np.array([1, 0]))  # doctest: +ELLIPSIS
4.5...e-05
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_loss_recipes.losses.numerics import exact_cross_entropy, stable_softmax
from keras_loss_recipes.runtime.errors import UserError

TEMPERATURE_BOUNDS = (0.05, 20.0)  # past these a fitted T says the logits are broken, not miscalibrated
FIT_TOLERANCE = 1e-7  # on log T, so about this relative on T: far below anything NLL or ECE can resolve
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0  # the golden section keeps this fraction of the bracket per step
BOOTSTRAP_RESAMPLES = 1000


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


def checked_logits(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """`logits` (examples x classes) as float64 and `labels` as integer class ids, or a UserError naming what
    is wrong: calibrating on broken input would fit a T that means nothing."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2:
        raise UserError(f"logits of shape {z.shape}: calibration needs one row of class logits per example "
                        "(examples x classes); a single sigmoid logit per example is not supported")
    if z.shape[0] == 0:
        raise UserError("no examples to calibrate on: the validation split is empty; "
                        "set data.val_examples to a number above 0")
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise UserError(f"labels of shape {y.shape} for {z.shape[0]} rows of logits: "
                        "give one integer class id per example, in the logits' order")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise UserError(f"labels of dtype {y.dtype}: give integer class ids, not one-hot rows or probabilities")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise UserError(f"labels run {y.min()}..{y.max()}, outside 0..{z.shape[1] - 1} for logits of "
                        f"{z.shape[1]} classes: the labels do not match the output's width")
    bad = int(np.size(z) - np.count_nonzero(np.isfinite(z)))
    if bad:
        raise UserError(f"{bad} of the {z.size} logits are not finite (nan or inf): the run diverged; "
                        "calibrate a checkpoint from before it diverged")
    return z, y.astype(np.int64)


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean exact cross entropy of softmax(logits / T), in float64: what temperature scaling minimises.

    >>> round(negative_log_likelihood([[0.0, 0.0]], [0]), 6)  # two equal logits: log 2
    0.693147
    """
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(exact_cross_entropy(z / temperature, labels)))


def brier_score(logits, labels) -> float:
    """Mean over examples of the sum over classes of (p - one-hot)^2: 0 is perfect, 2 the worst.
    Unlike ECE it needs no bins, so it is a steadier figure on a few hundred images.

    >>> brier_score([[0.0, 0.0]], [1])
    0.5
    """
    p = stable_softmax(np.asarray(logits, dtype=np.float64))
    onehot = np.eye(p.shape[-1])[np.asarray(labels, dtype=np.int64)]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=-1)))


def fit_temperature(logits, labels, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The T in `bounds` that minimises the float64 NLL of softmax(logits / T) on held-out `labels`.

    The NLL is convex in 1/T, so it has one minimum along log T and a golden-section search finds it
    without derivatives (and without scipy). A minimum outside `bounds` gives the nearer bound.

    >>> z = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]])
    >>> t = fit_temperature(z, np.array([0, 0, 0, 1]))  # right 3 times in 4: p = 0.75 wants 4 / T = log 3
    >>> round(t, 5), round(float(4 / np.log(3)), 5)
    (3.64096, 3.64096)
    """
    z, y = checked_logits(logits, labels)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(z, y, np.exp(log_t))

    low, high = np.log(bounds[0]), np.log(bounds[1])
    inner_low, inner_high = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
    f_low, f_high = nll(inner_low), nll(inner_high)
    while high - low > FIT_TOLERANCE:
        if f_low <= f_high:  # the minimum is left of inner_high
            high, inner_high, f_high = inner_high, inner_low, f_low
            inner_low = high - GOLDEN * (high - low)
            f_low = nll(inner_low)
        else:
            low, inner_low, f_low = inner_low, inner_high, f_high
            inner_high = low + GOLDEN * (high - low)
            f_high = nll(inner_high)
    return float(np.exp((low + high) / 2))


def ece_interval(logits, labels, bins: int = 15, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """A bootstrap interval of the ECE: the examples resampled with replacement `resamples` times. ECE on a
    few hundred images moves by as much as a calibration changes it; read a change as real only where
    the intervals say so.

    ECE sums absolute gaps, so it reads high on few examples, and resampling adds that bias once more:
    the plain percentile interval of a well calibrated model can lie wholly above its ECE. The interval
    is therefore shifted down by the bootstrap's own estimate of that bias (mean resampled ECE - ECE).
    """
    z, y = checked_logits(logits, labels)
    probs = stable_softmax(z)
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    n = len(y)
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # One bincount for all resamples: resample r's bin b is slot r * bins + b.
    slot = (which[picks] + bins * np.arange(resamples)[:, None]).ravel()
    size = resamples * bins
    count = np.bincount(slot, minlength=size).reshape(resamples, bins)
    gap = (np.bincount(slot, weights=correct[picks].ravel(), minlength=size)
           - np.bincount(slot, weights=confidence[picks].ravel(), minlength=size)).reshape(resamples, bins)
    eces = np.abs(gap).sum(axis=1) / n  # |sum(correct - confidence)| / n per bin is |acc - conf| * count / n
    tail = (1.0 - level) / 2.0
    bias = eces.mean() - expected_calibration_error(z, y, bins)
    low, high = np.quantile(eces, [tail, 1.0 - tail]) - bias
    return float(max(low, 0.0)), float(high)


def with_temperature(logits_model, temperature: float):
    """A Keras model whose output is `logits_model`'s divided by `temperature`.

    T is the variance weight (T^2, non-trainable) of a built-in Normalization layer with mean 0, which
    divides by sqrt(variance): the saved .keras file holds T among its weights and loads with plain
    `keras.models.load_model`, without this project. (Passing mean and variance to the layer's
    constructor would keep T in its config alone, as a constant.)
    """
    import keras  # deferred: importing keras starts a backend

    if not temperature > 0:
        raise UserError(f"temperature={temperature!r}: must be > 0")
    divide = keras.layers.Normalization(axis=None, name="temperature")
    outputs = divide(logits_model.outputs[0])  # built here, its weights at mean 0, variance 1
    divide.adapt_variance.assign(np.float32(temperature) ** 2)
    divide.finalize_state()  # the layer reads its weights into the tensors it divides by here
    return keras.Model(logits_model.inputs, outputs, name=f"{logits_model.name}_calibrated")
