"""A Keras model whose training step also measures stability and handles NaN/inf.

The step is Keras's own TensorFlow `train_step` plus, in the same tape:
  * the gradient with respect to the logits (one extra target, about 1 ms a step),
  * the figures of `recipes.telemetry`, when a tracker is given,
  * the non-finite policy: `stop` and `skip` leave the weights untouched on a
    step whose loss or gradients are NaN/inf (`stop` then ends training, see
    `callbacks.NonFiniteGuard`); `continue` applies every update. Under
    tf.distribute (several replicas) the step's gradients are zeroed instead.
"""
from __future__ import annotations

from types import SimpleNamespace

import keras
from keras import ops

from recipes.settings import NONFINITE_POLICIES
from recipes.telemetry import StabilityTracker, all_finite, global_norm, logit_stats


class StabilityModel(keras.Model):
    """Functional model `inputs -> outputs` that also sees the `logits` behind them."""

    def __init__(self, inputs, outputs, logits, num_classes: int,
                 tracker: StabilityTracker | None = None, on_nonfinite: str = "stop", **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # Held outside Keras's attribute tracking: the view shares this model's
        # layers, and tracking it would list every weight twice.
        self._extra = SimpleNamespace(
            both=keras.Model(inputs, [outputs, logits]),
            tracker=tracker,
            num_classes=num_classes,
            on_nonfinite=on_nonfinite,
            nonfinite=keras.metrics.Sum(name="nonfinite_steps"),
        )
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite={on_nonfinite!r}: valid choices: {NONFINITE_POLICIES}")

    @property
    def tracker(self) -> StabilityTracker | None:
        return self._extra.tracker

    @property
    def nonfinite_steps(self) -> int:
        from recipes.telemetry import scalar_value

        return int(scalar_value(self._extra.nonfinite.result()))

    def train_step(self, data):
        import tensorflow as tf

        from recipes.telemetry import as_onehot

        extra = self._extra
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred, logits = extra.both(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Under tf.distribute Keras divides each replica's loss by the replica count
        # (the gradients are summed); the figures want the per-example mean back.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss = loss * replicas if replicas > 1 else loss

        weights = self.trainable_weights
        targets = [*weights, logits] if extra.tracker is not None else weights
        grads = tape.gradient(scaled_loss, targets)
        param_grads = grads[: len(weights)]
        finite = ops.logical_and(ops.all(ops.isfinite(loss)), all_finite(param_grads))

        if extra.on_nonfinite == "continue":
            self.optimizer.apply(param_grads, weights)
        elif replicas > 1:
            # tf.distribute cannot all-reduce inside a cond: zero the step's gradients
            # instead of skipping it (the optimizer's momentum still moves once).
            safe = [None if g is None else ops.where(finite, g, ops.zeros_like(g)) for g in param_grads]
            self.optimizer.apply(safe, weights)
        else:
            ops.cond(finite, lambda: self.optimizer.apply(param_grads, weights), lambda: None)

        extra.nonfinite.update_state(1.0 - ops.cast(finite, "float32"))
        batch = ops.cast(ops.shape(x)[0], "float32")
        if extra.on_nonfinite == "skip":
            # A skipped step is not part of the epoch's mean loss either.
            kept = ops.cast(finite, "float32")
            self._loss_tracker.update_state(ops.where(finite, loss, 0.0), sample_weight=batch * kept)
        else:
            self._loss_tracker.update_state(loss, sample_weight=batch)

        if extra.tracker is not None:
            scale = ops.cast(getattr(self.optimizer, "dynamic_scale", 1.0), "float32")
            stats = logit_stats(logits, as_onehot(y, extra.num_classes))
            stats["loss"] = ops.cast(loss, "float32")
            stats["grad_norm"] = global_norm(param_grads) / scale
            stats["logit_grad_norm"] = global_norm(grads[-1:]) / scale
            stats["loss_scale"] = scale
            extra.tracker.update(stats)
            extra.tracker.count_nonfinite(finite)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
