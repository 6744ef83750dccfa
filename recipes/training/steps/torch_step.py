"""StabilityModel's training step on PyTorch: Keras's own step, keeping the logits' gradient."""
from __future__ import annotations

import keras


def train_step(model, data):
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred, logits = model.outputs_and_logits(x, training=True)
    telemetry = model.tracker is not None
    if telemetry:
        logits.retain_grad()  # an intermediate tensor: backward() keeps its gradient only if asked
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model.optimizer.scale_loss(loss).backward()

    weights = model.trainable_weights[:]
    grads = [v.value.grad for v in weights]
    with torch.no_grad():
        finite = model.is_finite(loss, grads)
        if model.on_nonfinite == "continue" or bool(finite):
            model.optimizer.apply(grads, weights)
        logit_grads = logits.grad.float() / model.loss_scale() if telemetry else None
        return model.record_step(x, y, y_pred, sample_weight, loss.detach(), finite, grads,
                                 logits.detach(), logit_grads)
