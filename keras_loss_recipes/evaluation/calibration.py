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
from keras_loss_recipes.reporting.calibration import (
    CALIBRATION_KEYS, ECE_BINS, SCORES, TEMPERATURE_BOUNDS, after_key, before_key)
from keras_loss_recipes.runtime.errors import UserError

FIT_TOLERANCE = 1e-7  # on log T, so about this relative on T: far below anything NLL or ECE can resolve
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0  # the golden section keeps this fraction of the bracket per step
BOOTSTRAP_RESAMPLES = 1000
EMPTY_SPLIT = ("no examples to calibrate on: the validation split is empty; "
               "set data.val_examples to a number above 0")
PROBABILITY_SUM_TOLERANCE = 1e-3  # rows of non-negative outputs summing to 1 within this are probabilities


def two_class_logits(logits, targets) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid logits (N, units) and their 0/1 `targets` as two-class softmax logits and class ids, one row per
    unit (N * units rows): a sigmoid unit's logit z is the softmax over (0, z), sigmoid(z / T) is
    softmax((0, z) / T), so temperature scaling, NLL and ECE (confidence max(p, 1 - p), right where z > 0
    agrees with the target) are the binary ones, a multi-label output's taken over all its units.
    The Brier score of two classes is twice the binary (p - y)^2.

    >>> z, y = two_class_logits([[2.0], [-1.0]], [1, 1])
    >>> z.tolist(), y.tolist()
    ([[0.0, 2.0], [0.0, -1.0]], [1, 1])
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z.reshape(len(z), -1).reshape(-1)
    y = np.asarray(targets).reshape(-1)
    if y.shape != z.shape:
        raise UserError(f"targets of shape {np.shape(targets)} for sigmoid logits of shape {np.shape(logits)}: "
                        "give one 0/1 target per unit")
    return np.stack([np.zeros_like(z), z], axis=-1), y.astype(np.int64)


def reliability_bins(logits, labels, bins: int = ECE_BINS) -> dict:
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


def expected_calibration_error(logits, labels, bins: int = ECE_BINS) -> float:
    b = reliability_bins(logits, labels, bins)
    filled = b["count"] > 0
    weights = b["count"][filled] / b["count"].sum()
    return float(np.sum(weights * np.abs(b["accuracy"][filled] - b["confidence"][filled])))


def plot_reliability(logits, labels, path: Path, title: str, bins: int = ECE_BINS) -> None:
    """The reliability diagram of `logits` (bars: accuracy per confidence bin; below: examples per bin)."""
    _plot_panels([(logits, title)], labels, path, bins)


def plot_calibration(logits, labels, temperature: float, path: Path, title: str, bins: int = ECE_BINS) -> None:
    """The reliability diagrams of `logits` and of `logits / temperature`, side by side on shared axes."""
    z = np.asarray(logits, dtype=np.float64)
    _plot_panels([(z, "before: softmax(logits)"), (z / temperature, f"after: softmax(logits / {temperature:.3f})")],
                 labels, path, bins, suptitle=title)


def _plot_panels(panels: list, labels, path: Path, bins: int, suptitle: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 6), sharex=True, sharey="row", squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    for column, (logits, title) in enumerate(panels):
        _draw_reliability(axes[0, column], axes[1, column], logits, labels, title, bins)
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("examples")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_reliability(top, bottom, logits, labels, title: str, bins: int) -> None:
    """Accuracy per bin as bars, the bin's mean confidence as a tick, and the gap between them hatched: red where
    the model is surer than right (over-confident), orange where less sure (under-confident)."""
    b = reliability_bins(logits, labels, bins)
    ece = expected_calibration_error(logits, labels, bins)
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = 0.95 / bins
    filled = b["count"] > 0
    accuracy, confidence = b["accuracy"][filled], b["confidence"][filled]
    top.bar(centers[filled], accuracy, width=width, color="tab:blue", alpha=0.75, label="accuracy")
    for over, color, hatch, said in ((True, "tab:red", "///", "over-confident gap"),
                                     (False, "tab:orange", "\\\\\\", "under-confident gap")):
        gap = (confidence > accuracy) == over
        top.bar(centers[filled][gap], np.abs(confidence - accuracy)[gap], bottom=np.minimum(accuracy, confidence)[gap],
                width=width, facecolor="none", edgecolor=color, hatch=hatch, lw=0.8, label=said)
    top.plot(centers[filled], confidence, linestyle="none", marker="_", markersize=14, mew=2, color="black",
             label="mean confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(f"{title}\nECE ({bins} bins) = {ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, b["count"], width=width, color="gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top softmax probability)")


def checked_logits(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """`logits` (examples x classes) as float64 and `labels` as integer class ids, or a UserError naming what
    is wrong: calibrating on broken input would fit a T that means nothing."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2:
        raise UserError(f"logits of shape {z.shape}: calibration needs one row of class logits per example "
                        "(examples x classes); a single sigmoid logit per example is not supported")
    if z.shape[0] == 0:
        raise UserError(EMPTY_SPLIT)
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


def ece_interval(logits, labels, bins: int = ECE_BINS, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
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


def scores(logits, labels, bins: int = ECE_BINS) -> dict:
    """NLL, ECE and Brier score of `logits` on `labels` (float64)."""
    return {"nll": negative_log_likelihood(logits, labels), "ece": expected_calibration_error(logits, labels, bins),
            "brier": brier_score(logits, labels)}


def calibration_figures(test_logits, test_labels, temperature: float | None, bins: int = ECE_BINS) -> dict:
    """metrics.json's calibration keys: `temperature`, and the test split's NLL, ECE and Brier score before
    (`test_nll`) and after (`test_nll_calibrated`) its logits are divided by it; after is None without a T."""
    z, y = checked_logits(test_logits, test_labels)
    before = scores(z, y, bins)
    after = scores(z / temperature, y, bins) if temperature is not None else dict.fromkeys(SCORES)
    figures = {"temperature": temperature, **{before_key(s): before[s] for s in SCORES},
               **{after_key(s): after[s] for s in SCORES}}
    return {key: figures[key] for key in CALIBRATION_KEYS}


def calibration_logits_model(model, where: str = "the model"):
    """The model whose outputs temperature scaling divides: `model` itself when it outputs logits, the logits
    behind this project's softmax layer when it ends in one. One UserError line for a softmax or sigmoid
    activation of the model's own, whose logits this does not take out (`recipe=doctor` shows how)."""
    from keras_loss_recipes.training.heads import find_head, live_config
    from keras_loss_recipes.training.network import logits_model_of

    logits_model = logits_model_of(model)
    try:
        head = find_head(live_config(logits_model), where)
    except UserError:  # an output find_head has no name for: its numbers decide (`checked_outputs`)
        return logits_model
    if head.kind == "sigmoid":
        raise UserError(f"{where} outputs probabilities (a sigmoid in layer '{head.layer}'), and its logits cannot be "
                        "found: calibrate the model of its logits (`keras_loss_recipes.fix(model)`, or recipe=doctor "
                        "recipe.fix=true, writes it)")
    if head.kind == "softmax":
        raise UserError(f"{where} outputs probabilities (a softmax in layer '{head.layer}'), and its logits "
                        "cannot be found: calibrate a model that outputs logits (recipe=doctor shows how to take "
                        "the softmax off)")
    return logits_model


def checked_outputs(outputs, where: str = "the model") -> np.ndarray:
    """`outputs` of a model as float64 logits; one UserError line where they are probabilities (every row
    non-negative and summing to 1): a softmax the graph did not show, whose logits cannot be found."""
    z = np.asarray(outputs, dtype=np.float64)
    if z.ndim == 2 and z.shape[0] and z.shape[1] > 1 and np.all(z >= 0) and \
            np.allclose(z.sum(axis=-1), 1.0, atol=PROBABILITY_SUM_TOLERANCE):
        raise UserError(f"{where} outputs probabilities (every row non-negative and summing to 1), and its logits "
                        "cannot be found: calibrate a model that outputs logits")
    return z


def calibrate(model, x_val, y_val, batch_size: int = 256):
    """Temperature scaling of a trained Keras classifier: `(temperature, calibrated_model)`.

    T minimises the exact float64 NLL of softmax(logits / T) on the held-out `x_val` and integer class ids
    `y_val` (`fit_temperature`); the calibrated model outputs the logits divided by T (`with_temperature`),
    so its argmax, and the accuracy, are the model's own. `model` outputs logits (or ends in this project's
    softmax or sigmoid layer); a softmax or sigmoid activation of its own is one UserError line, as are an
    empty `x_val`, labels outside its outputs and logits that are not finite.

    Sigmoid logits (`sigmoid_units`: one output unit, or `y_val` of 0/1 in the outputs' shape, a multi-label
    target) are calibrated as the sigmoid's: T minimises the binary NLL of sigmoid(logits / T), every unit
    alike (`two_class_logits`), and the calibrated model's sigmoid gives the calibrated probabilities.

    >>> import keras
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 4)).astype("float32")
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    >>> model.get_layer("logits").set_weights([rng.normal(size=(4, 3)).astype("float32"), np.zeros(3, "float32")])
    >>> p = stable_softmax(model.predict(x, verbose=0).astype("float64") / 2.0)  # the labels are drawn at T = 2
    >>> y = (rng.random((2000, 1)) > np.cumsum(p, axis=-1)).sum(axis=-1)
    >>> temperature, calibrated = calibrate(model, x, y)
    >>> bool(1.8 < temperature < 2.2)  # 2,000 labels drawn at T = 2: the fit lies within their noise of it
    True
    >>> bool(np.allclose(calibrated.predict(x, verbose=0), model.predict(x, verbose=0) / temperature, rtol=1e-5))
    True
    """
    logits_model = calibration_logits_model(model)
    if len(x_val) == 0:
        raise UserError(EMPTY_SPLIT)
    logits = checked_outputs(logits_model.predict(x_val, batch_size=batch_size, verbose=0))
    scored = two_class_logits(logits, y_val) if sigmoid_units(logits, y_val) else (logits, y_val)
    temperature = fit_temperature(*scored)
    return temperature, with_temperature(logits_model, temperature)


def sigmoid_units(logits, labels) -> bool:
    """Whether `logits` are a sigmoid's per unit: a single output unit (binary), or `labels` in the logits' own
    shape (a 0/1 target per unit: multi-label); class ids (N,) for several units are a softmax's."""
    shape = np.shape(logits)
    return (len(shape) == 2 and shape[1] == 1) or (len(shape) == 2 and np.shape(labels) == shape)
