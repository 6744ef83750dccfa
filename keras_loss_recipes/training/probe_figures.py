"""The recipes' stability figures for a live model on one fixed batch (a "probe"), taken between steps.

The recipes compute their figures inside every training step (`telemetry`, `StabilityModel`)
and log each epoch's mean. A callback in a user's own `model.fit` cannot change the step,
so it measures the same figures on a probe batch the user hands it, with the weights as they
are when it is called (at an epoch's end): the logits in inference mode (no dropout), the
compiled loss through the model's own head, and the gradients of that loss. Same names,
same formulas (`telemetry.logit_stats`, `global_norm`; `telemetry.sigmoid_logit_stats` for sigmoid
units: a model compiled with a binary crossentropy, or ending in a sigmoid); a different sample:
one batch at one moment, not the mean over the epoch's steps.

The gradients come from one compiled function per fit (tf.function, jax.jit; PyTorch runs
eagerly as Keras's torch trainer does), built on the first call.
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.live_head import LogitsView
from keras_loss_recipes.training.telemetry import as_onehot, global_norm, logit_stats, sigmoid_logit_stats

FIGURES = ("logit_max_abs", "logit_gap", "saturated_frac", "exact_ce", "loss", "grad_norm",
           "logit_grad_norm", "loss_scale")


def mean_loss_of(model):
    """The model's compiled loss as a function (y, y_pred) -> scalar mean; UserError when it has none."""
    import keras
    from keras import ops

    loss = getattr(model, "loss", None)
    if loss is None:
        raise UserError(f"model '{model.name}' has no loss: compile it with loss=... first")
    if isinstance(loss, (list, tuple, dict)):
        raise UserError(f"model '{model.name}' has {len(loss)} losses; a classifier here has one output and one loss")
    function = keras.losses.get(loss) if isinstance(loss, str) else loss
    return lambda y, y_pred: ops.mean(function(y, y_pred))


def sigmoid_units(model, head_kind: str) -> bool:
    """Whether `model`'s outputs are sigmoid units: it is compiled with a binary crossentropy (whatever its
    head), or, with a loss the doctor does not know, its head is a sigmoid."""
    import keras

    from keras_loss_recipes.losses.formulations import LossOptionError
    from keras_loss_recipes.losses.keras_losses import parse

    try:
        return parse(keras.saving.serialize_keras_object(model.loss)).labels == "binary"
    except LossOptionError:
        return head_kind == "sigmoid"


class ProbeFigures:
    """`figures()`: {name: float} of `FIGURES` for `model` on the batch (`x`, `y`), weights as they are now."""

    def __init__(self, model, x, y, view: LogitsView | None = None):
        from keras import ops

        self.model, self.view = model, view or LogitsView(model)
        self.loss = mean_loss_of(model)
        self.x, self.y = ops.convert_to_tensor(np.asarray(x)), ops.convert_to_tensor(np.asarray(y))
        self.sigmoid = sigmoid_units(model, self.view.head.kind)
        if self.sigmoid:  # a target per unit, in the logits' shape ((N,) labels of one unit included)
            self.targets = ops.reshape(ops.cast(self.y, "float32"), (-1, *model.outputs[0].shape[1:]))
        else:
            self.targets = as_onehot(self.y, self.view.head.width)
        self._compiled = None

    def figures(self) -> dict[str, float]:
        import keras
        from keras import ops

        if self._compiled is None:
            self._compiled = _COMPILE[keras.backend.backend()](self)
        logits, loss, param_grads, logit_grads = self._compiled()
        stats_of = sigmoid_logit_stats if self.sigmoid else logit_stats
        stats = {name: float(value) for name, value in stats_of(logits, self.targets).items()}
        scale = float(getattr(self.model.optimizer, "dynamic_scale", 1.0)) if self.model.optimizer else 1.0
        stats.update(loss=float(ops.cast(loss, "float32")), grad_norm=float(global_norm(param_grads)),
                     logit_grad_norm=float(global_norm([logit_grads])), loss_scale=scale)
        return stats

    def loss_of_logits(self, logits):
        return self.loss(self.y, self.view.outputs(logits))


def _tensorflow(probe: ProbeFigures):
    import tensorflow as tf

    weights = probe.model.trainable_weights

    @tf.function(reduce_retracing=True)
    def step(x):
        with tf.GradientTape() as tape:
            logits = probe.view.logits(x)
            loss = probe.loss_of_logits(logits)
        grads = tape.gradient(loss, [*[w.value for w in weights], logits])
        return logits, loss, grads[:-1], grads[-1]

    return lambda: step(probe.x)


def _jax(probe: ProbeFigures):
    import jax

    model = probe.model

    def loss_and_logits(trainable, non_trainable, x):
        with probe.view.linear_head():
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return probe.loss_of_logits(logits), logits

    params_step = jax.jit(jax.value_and_grad(loss_and_logits, has_aux=True))
    logits_step = jax.jit(jax.grad(probe.loss_of_logits))

    def run():
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        (loss, logits), grads = params_step(trainable, non_trainable, probe.x)
        return logits, loss, grads, logits_step(logits)

    return run


def _torch(probe: ProbeFigures):
    import torch

    def run():
        values = [w.value for w in probe.model.trainable_weights]
        with torch.enable_grad():
            logits = probe.view.logits(probe.x)
            loss = probe.loss_of_logits(logits)
            grads = torch.autograd.grad(loss, [*values, logits], allow_unused=True)
        return logits.detach(), loss.detach(), list(grads[:-1]), grads[-1]

    return run


_COMPILE = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}
