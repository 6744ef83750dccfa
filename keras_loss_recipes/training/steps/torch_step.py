"""StabilityModel's training step on PyTorch: Keras's own step, keeping the logits' gradient."""
from __future__ import annotations

import keras

from keras_loss_recipes.runtime import private_api


def train_step(model, data):
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred, logits = model.outputs_and_logits(x, training=True)
    telemetry = model.tracker is not None
    if telemetry:
        logits.retain_grad()  # an intermediate tensor: backward() keeps its gradient only if asked
    model.zero_grad()
    loss = private_api.step_loss(model, x, y, y_pred, sample_weight, training=True)
    model.optimizer.scale_loss(loss).backward()

    weights = model.trainable_weights[:]
    grads = [v.value.grad for v in weights]
    with torch.no_grad():
        finite = model.is_finite(loss, grads)
        if model.on_nonfinite == "continue":
            model.optimizer.apply(grads, weights)
        else:
            _apply_if(model.applies(finite), model.optimizer, grads, weights)
        logit_grads = logits.grad.float() / model.loss_scale() if telemetry else None
        return model.record_step(x, y, y_pred, sample_weight, loss.detach(), finite, grads,
                                 logits.detach(), logit_grads)


def _apply_if(applies, optimizer, grads, weights) -> None:
    """Apply the update where `applies` (a boolean tensor) holds, without making the host wait for it.

    On the CPU, torch computes in program order, so reading the flag costs
    nothing. On a GPU, reading it would wait for the step: there the update is
    applied, then the weights and optimizer state before it are put back where
    `applies` is false (as JAX's step does).
    """
    import torch

    if applies.device.type == "cpu":
        if bool(applies):
            optimizer.apply(grads, weights)
        return
    kept = [*weights, *optimizer.variables]
    before = [v.value.clone() for v in kept]
    optimizer.apply(grads, weights)
    for variable, old in zip(kept, before):
        variable.assign(torch.where(applies, variable.value, old))


def test_step(model, data):
    """Keras's own evaluation step (run under `torch.no_grad`), which also sees the logits."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred, logits = model.outputs_and_logits(x, training=False)
    loss = private_api.step_loss(model, x, y, y_pred, sample_weight, training=False)
    return model.record_evaluation(x, y, y_pred, sample_weight, loss, logits)
