"""StabilityModel's training step on TensorFlow: Keras's own step plus one extra tape target."""
from __future__ import annotations

import keras
from keras import ops

from keras_loss_recipes.runtime import private_api


def train_step(model, data):
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        y_pred, logits = model.outputs_and_logits(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        scaled_loss = model.optimizer.scale_loss(loss)
    # Under tf.distribute Keras divides each replica's loss by the replica count
    # (the gradients are summed); the figures want the per-example mean back.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    loss = loss * replicas if replicas > 1 else loss

    weights = model.trainable_weights
    telemetry = model.tracker is not None
    grads = tape.gradient(scaled_loss, [*weights, logits] if telemetry else weights)
    param_grads = grads[: len(weights)]
    finite = model.is_finite(loss, param_grads)

    if model.on_nonfinite == "continue":
        model.optimizer.apply(param_grads, weights)
    elif replicas > 1:
        # tf.distribute cannot all-reduce inside a cond: zero the step's gradients
        # instead of skipping it (the optimizer's momentum still moves once).
        applies = model.applies(finite)
        safe = [None if g is None else ops.where(applies, g, ops.zeros_like(g)) for g in param_grads]
        model.optimizer.apply(safe, weights)
    else:
        ops.cond(model.applies(finite), lambda: model.optimizer.apply(param_grads, weights), lambda: None)

    logit_grads = ops.cast(grads[-1], "float32") / model.loss_scale() if telemetry else None
    return model.record_step(x, y, y_pred, sample_weight, loss, finite, param_grads, logits, logit_grads)


def test_step(model, data):
    """Keras's own evaluation step, which also sees the logits (the exact cross entropy is theirs)."""
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred, logits = model.outputs_and_logits(x, training=False)
    loss = private_api.step_loss(model, x, y, y_pred, sample_weight, training=False)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # as in train_step
    loss = loss * replicas if replicas > 1 else loss
    return model.record_evaluation(x, y, y_pred, sample_weight, loss, logits)
