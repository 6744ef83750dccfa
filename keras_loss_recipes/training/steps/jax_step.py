"""StabilityModel's training step on JAX: Keras's stateless step, with the logits as an output.

JAX's step is a pure function of the training state (trainable, non-trainable,
optimizer and metrics variables), so every variable update goes through a
`keras.StatelessScope` and comes back as a new state. The gradient with
respect to the logits comes from re-applying the model's head and loss to the
logits (`jax.grad`): a ten-wide softmax and a loss, cheap next to the network.
Losses a layer adds in its call (activity regularisers) are not collected, as
Keras's own JAX step would; the recipe's models add none.
"""
from __future__ import annotations

import keras


def _scoped(variables, values):
    return keras.StatelessScope(state_mapping=list(zip(variables, values)))


def _current(scope, variables):
    """The values `variables` hold at the end of `scope` (unchanged ones as they were)."""
    out = []
    for v in variables:
        new = scope.get_current_value(v)
        out.append(v.value if new is None else new)
    return out


def _forward(model, trainable, non_trainable, metrics_vars, x, y, sample_weight, training: bool):
    """The model's output, logits and loss of one batch, from the state given: (loss, output, logits, the
    non-trainable variables and the metrics' after it)."""
    with _scoped([*model.trainable_variables, *model.non_trainable_variables],
                 [*trainable, *non_trainable]) as scope:
        y_pred, logits = model.outputs_and_logits(x, training=training)
    non_trainable = _current(scope, model.non_trainable_variables)
    loss, (_, non_trainable, metrics_vars) = model.stateless_compute_loss(
        trainable, non_trainable, metrics_vars, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
        training=training)
    return loss, y_pred, logits, non_trainable, metrics_vars


def train_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

    def scaled_loss(trainable, non_trainable, metrics_vars):
        loss, y_pred, logits, non_trainable, metrics_vars = _forward(
            model, trainable, non_trainable, metrics_vars, x, y, sample_weight, training=True)
        with _scoped(model.optimizer.variables, optimizer_vars):
            scaled = model.optimizer.scale_loss(loss)
        return scaled, (loss, y_pred, logits, non_trainable, metrics_vars)

    (_, (loss, y_pred, logits, non_trainable, metrics_vars)), grads = jax.value_and_grad(
        scaled_loss, has_aux=True)(trainable, non_trainable, metrics_vars)
    finite = model.is_finite(loss, grads)

    if model.on_nonfinite == "continue":
        new_trainable, new_optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)
    else:
        # A skipped step keeps the old weights and optimizer state: the update runs only where it applies
        # (a conditional, not a select over every weight, which would read and write them all once more).
        with _scoped(model.metrics_variables, metrics_vars):
            applies = model.applies(finite)
        new_trainable, new_optimizer_vars = jax.lax.cond(
            applies, lambda: tuple(map(list, model.optimizer.stateless_apply(optimizer_vars, grads, trainable))),
            lambda: (list(trainable), list(optimizer_vars)))

    logit_grads = None
    if model.tracker is not None:
        logit_grads = jax.grad(lambda z: model.loss_of_logits(y, z, sample_weight))(logits)
    with _scoped([*model.metrics_variables, *model.optimizer.variables],
                 [*metrics_vars, *optimizer_vars]) as scope:
        logs = model.record_step(x, y, y_pred, sample_weight, loss, finite, grads, logits, logit_grads)
    metrics_vars = _current(scope, model.metrics_variables)
    return logs, (new_trainable, non_trainable, new_optimizer_vars, metrics_vars)


def test_step(model, state, data):
    """Keras's own stateless evaluation step, which also sees the logits."""
    trainable, non_trainable, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    loss, y_pred, logits, non_trainable, metrics_vars = _forward(
        model, trainable, non_trainable, metrics_vars, x, y, sample_weight, training=False)
    with _scoped(model.metrics_variables, metrics_vars) as scope:
        logs = model.record_evaluation(x, y, y_pred, sample_weight, loss, logits)
    return logs, (trainable, non_trainable, _current(scope, model.metrics_variables))
