"""Stability figures of a training step, computed from the logits with keras.ops.

The figures (logged as `stability/<name>`):
    logit_max_abs    largest |logit| in the batch
    logit_gap        mean over examples of (max logit - min logit)
    saturated_frac   share of examples whose top softmax probability is within 1e-7 of 1:
                     float32 cannot tell it from 1 and Keras's probability clip bites
    exact_ce         cross entropy from the logits via log-softmax (what the loss should be)
    loss             the loss the formulation reported for the batch
    grad_norm        global norm of the parameter gradients
    logit_grad_norm  norm of d(loss)/d(logits): 0 where a clipped loss has stopped learning
    loss_scale       the mixed-precision loss scale (1 without one)
    nonfinite_steps  steps whose loss or gradients were NaN/inf (a count, not a mean)
For sigmoid units (the sigmoid family: a binary loss, one logit per label) the same names mean
what they mean for a two-class softmax over (0, z), whose gap is |z| (`sigmoid_logit_stats`):
    logit_gap        mean |logit| over units: how far each unit is from its 0.5 boundary
    saturated_frac   share of units whose sigmoid is within 1e-7 of 0 or 1 (|z| >= 16.12): the clip bites
    exact_ce         binary cross entropy from the logits, the mean over units (what the loss should be)
The tracker keeps per-epoch means in Keras metrics updated inside the compiled
step on every backend, read once per epoch; when asked (`telemetry.every_n_steps`),
the step's own values also travel in the step's logs.
"""
from __future__ import annotations

from keras_loss_recipes.losses.numerics import CLIP_EPSILON

MEAN_STATS = (
    "logit_max_abs", "logit_gap", "saturated_frac", "exact_ce", "loss",
    "grad_norm", "logit_grad_norm", "loss_scale",
)
PREFIX = "stability/"
STEP_PREFIX = "stability_step/"
# The step's logs carry the figures as one vector each, in MEAN_STATS order: Keras reads every entry of every
# step's logs off the device (in a worker thread when the callbacks let it), so one entry costs less than eight.
MEANS_LOG = PREFIX + "means"  # the epoch's running means
STEP_LOG = STEP_PREFIX + "values"  # this step's own figures (telemetry.every_n_steps)


def unpack(vector, prefix: str) -> dict:
    """{prefix + name: float} of a MEANS_LOG or STEP_LOG vector."""
    return {prefix + name: float(value) for name, value in zip(MEAN_STATS, vector)}


def with_loss_gap(values: dict) -> dict:
    """`values` ({PREFIX + name: float}) with `loss_gap`, the loss less the exact cross entropy, where both are there:
    0 for an exact loss, negative where a clip caps it."""
    if PREFIX + "loss" in values and PREFIX + "exact_ce" in values:
        values[PREFIX + "loss_gap"] = values[PREFIX + "loss"] - values[PREFIX + "exact_ce"]
    return values


def as_onehot(y, num_classes: int):
    from keras import ops

    if len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1 and num_classes > 1):
        return ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), num_classes)
    return ops.cast(y, "float32")


def logit_stats(logits, y_onehot) -> dict:
    """Forward-pass figures of one batch (scalar tensors, float32)."""
    from keras import ops

    z = ops.cast(logits, "float32")
    top_prob = ops.max(ops.softmax(z, axis=-1), axis=-1)
    return {
        "logit_max_abs": ops.max(ops.abs(z)),
        "logit_gap": ops.mean(ops.max(z, axis=-1) - ops.min(z, axis=-1)),
        "saturated_frac": ops.mean(ops.cast(1.0 - top_prob <= CLIP_EPSILON, "float32")),
        "exact_ce": ops.mean(exact_cross_entropy(z, y_onehot)),
    }


def sigmoid_logit_stats(logits, targets) -> dict:
    """`logit_stats` for sigmoid units: `targets` of 0/1 (or soft), the logits' shape (see the module's docstring)."""
    from keras import ops

    z = ops.cast(logits, "float32")
    return {
        "logit_max_abs": ops.max(ops.abs(z)),
        "logit_gap": ops.mean(ops.abs(z)),
        "saturated_frac": ops.mean(ops.cast(ops.sigmoid(-ops.abs(z)) <= CLIP_EPSILON, "float32")),
        "exact_ce": ops.mean(exact_binary_cross_entropy(z, targets)),
    }


def exact_binary_cross_entropy(logits, targets):
    """Per example, the binary cross entropy from the logits, the mean over its units (float32): what Keras's
    BinaryCrossentropy should give. max(z, 0) - z t + log(1 + exp(-|z|)) never overflows."""
    from keras import ops

    z, t = ops.cast(logits, "float32"), ops.cast(targets, "float32")
    return ops.mean(ops.relu(z) - z * t + ops.log1p(ops.exp(-ops.abs(z))), axis=-1)


def exact_cross_entropy(logits, y_onehot):
    """Per example, the cross entropy from the logits via log-softmax (float32): what the loss should be."""
    from keras import ops

    return -ops.sum(y_onehot * ops.log_softmax(ops.cast(logits, "float32"), axis=-1), axis=-1)


def global_norm(tensors):
    from keras import ops

    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(t, "float32"))) for t in tensors if t is not None))


def all_finite(tensors):
    from keras import ops

    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors if t is not None]))


class StabilityTracker:
    """Per-epoch means of the stability figures, as Keras metrics.

    `StabilityModel` lists them among its metrics, so every backend carries them
    in its training state (JAX's included) and Keras resets them each epoch, but
    leaves them out of `get_metrics_result`, so validation gets no stability
    columns. The training step returns them in its logs: `MEANS_LOG`, the
    epoch's means so far, and with `step_figures` `STEP_LOG`, this step's
    values; `callbacks.StabilityLogger` takes them out of the epoch's logs
    before Keras's own callbacks (CSV, TensorBoard) see them.
    """

    def __init__(self, step_figures: bool = False):
        import keras

        self.means = {name: keras.metrics.Mean(name=PREFIX + name) for name in MEAN_STATS}
        self.step_figures = step_figures

    @property
    def metrics(self) -> list:
        return list(self.means.values())

    def update(self, stats: dict) -> dict:
        """Add one step's figures to the means; return the step's logs."""
        from keras import ops

        for name in MEAN_STATS:
            self.means[name].update_state(stats[name])
        logs = {MEANS_LOG: ops.stack([self.means[name].result() for name in MEAN_STATS])}
        if self.step_figures:
            logs[STEP_LOG] = ops.stack([ops.cast(stats[name], "float32") for name in MEAN_STATS])
        return logs
