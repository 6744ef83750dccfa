"""A Keras model whose training step also measures stability and handles NaN/inf.

Each backend has its own training step (`steps/`), because each gets
gradients its own way (a TensorFlow tape, JAX's `value_and_grad`, PyTorch's
`backward`); each also gives the gradient with respect to the logits
(TensorFlow, PyTorch: one extra target of the same backward pass; JAX: the
head and loss re-applied to the logits, see `steps/jax_step.py`).
What the steps share lives here:
  * the figures of `telemetry`, when a tracker is given,
  * the non-finite policy, decided inside the step: `stop` and `skip` leave the
    weights untouched on a step whose loss or gradients are NaN/inf; after
    one, `stop` also leaves every later step of the epoch untouched, and
    `callbacks.NonFiniteGuard` ends training when the epoch ends; `continue`
    applies every update. Under tf.distribute (several replicas) the step's
    gradients are zeroed instead. Under a loss-scale optimizer (mixed
    precision) overflowing gradients are its business (it skips the step and
    lowers the scale); only a NaN/inf loss counts as non-finite there.
Every figure is kept in metric variables on the device, so no step waits for
the host: the step's logs hold this epoch's running figures, including
`nonfinite_steps` (this epoch's count, its first non-finite step, 1-based, 0
for none, and its steps so far, as one vector), and are read once, when the
epoch ends.
"""
from __future__ import annotations

from types import SimpleNamespace

import keras
from keras import ops

from keras_loss_recipes.losses import SIGMOID_LAYER, SOFTMAX_LAYER
from keras_loss_recipes.runtime import private_api
from keras_loss_recipes.training.steps import NONFINITE_POLICIES, test_step_for, train_step_for
from keras_loss_recipes.training.telemetry import (StabilityTracker, all_finite, exact_binary_cross_entropy,
                                                   exact_cross_entropy, global_norm, logit_stats, targets)

# One entry of the step's logs: (this epoch's non-finite steps, its first non-finite step, its steps so far).
NONFINITE_LOG = "nonfinite_steps"
FIRST_NONFINITE_LOG = "first_nonfinite_step"
# Measured in evaluation only (the history's `val_exact_ce`): the cross entropy of the logits, whatever the loss.
EXACT_CE_LOG = "exact_ce"


class FirstNonFinite(keras.metrics.Metric):
    """This epoch's step count and its first non-finite step (1-based; 0 while there is none)."""

    def __init__(self, name=FIRST_NONFINITE_LOG):
        super().__init__(name=name)
        self.steps = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="steps")
        self.first = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="first")

    def update_state(self, nonfinite):
        """`nonfinite`: 1.0 when this step counts as non-finite, else 0.0."""
        step = self.steps.value + 1.0
        first = self.first.value
        self.steps.assign(step)
        self.first.assign(ops.where(ops.logical_and(first == 0.0, nonfinite > 0.0), step, first))

    def result(self):
        return ops.convert_to_tensor(self.first.value)


class StabilityModel(keras.Model):
    """Functional model `inputs -> outputs` that also sees the `logits` behind them."""

    def __init__(self, inputs, outputs, logits, num_classes: int,
                 tracker: StabilityTracker | None = None, on_nonfinite: str = "stop", sigmoid: bool = False,
                 **kwargs):
        """`sigmoid`: the logits are a sigmoid per unit's (the sigmoid family: labels 0/1 per unit), so the exact
        cross entropy and the figures are the binary ones."""
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite={on_nonfinite!r}: valid choices: {NONFINITE_POLICIES}")
        head = next((layer for layer in self.layers if layer.name in (SOFTMAX_LAYER, SIGMOID_LAYER)), None)
        # Held outside Keras's attribute tracking: the view shares this model's
        # layers, and tracking it would list every weight twice.
        self._extra = SimpleNamespace(
            both=keras.Model(inputs, [outputs, logits]),
            head=head if head is not None else (lambda z: z),
            tracker=tracker,
            num_classes=num_classes,
            on_nonfinite=on_nonfinite,
            sigmoid=sigmoid,
        )
        # Tracked metrics: every backend carries them in its training state.
        self.nonfinite_counter = keras.metrics.Sum(name=NONFINITE_LOG)
        self.first_nonfinite = FirstNonFinite()
        self.exact_ce = keras.metrics.Mean(name=EXACT_CE_LOG)
        self.stability_metrics = tracker.metrics if tracker is not None else []
        self._step_only = {NONFINITE_LOG, FIRST_NONFINITE_LOG, *(m.name for m in self.stability_metrics)}

    @property
    def tracker(self) -> StabilityTracker | None:
        return self._extra.tracker

    @property
    def on_nonfinite(self) -> str:
        return self._extra.on_nonfinite

    def get_metrics_result(self):
        """Keras's own, without the step-only figures: the step adds them to the training logs itself, and
        leaving them out keeps them out of validation's logs. Not even computed: Keras asks for these in
        every step (`compute_metrics`) and, outside it, at every epoch's end and validation, where on JAX
        each result is a few operations run one by one. Tensors, as they are: Keras turns them into
        numbers where it hands them to the callbacks."""
        results = {}
        for metric in self.metrics:
            if metric.name in self._step_only:
                continue
            result = metric.result()
            results.update(result if isinstance(result, dict) else {metric.name: result})
        return results

    def train_step(self, *args):
        return train_step_for(keras.backend.backend())(self, *args)

    def test_step(self, *args):
        return test_step_for(keras.backend.backend())(self, *args)

    # Shared by the backends' steps -------------------------------------------------

    def outputs_and_logits(self, x, training=True):
        """(model output, logits) of one batch."""
        return self._extra.both(x, training=training)

    def loss_of_logits(self, y, logits, sample_weight=None):
        """The compiled loss of `logits` passed through the model's own head."""
        return self.loss(y, self._extra.head(logits), sample_weight=sample_weight)

    def targets(self, y):
        """The batch's labels as the exact cross entropy takes them (`telemetry.targets`)."""
        return targets(y, self._extra.num_classes, self._extra.sigmoid)

    def stopped(self):
        """True once a `stop` run has had a non-finite step this epoch: later steps change nothing."""
        if self.on_nonfinite != "stop":
            return ops.convert_to_tensor(False)
        return self.nonfinite_counter.result() > 0.0

    def applies(self, finite):
        """Whether this step's update goes into the weights (a boolean tensor), by the policy."""
        if self.on_nonfinite == "continue":
            return ops.convert_to_tensor(True)
        return ops.logical_and(finite, ops.logical_not(self.stopped()))

    def is_finite(self, loss, grads):
        finite_loss = ops.all(ops.isfinite(loss))
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return finite_loss
        return ops.logical_and(finite_loss, all_finite(grads))

    def loss_scale(self):
        return ops.cast(getattr(self.optimizer, "dynamic_scale", 1.0), "float32")

    def record_step(self, x, y, y_pred, sample_weight, loss, finite, param_grads, logits, logit_grads):
        """Update the loss, metrics, non-finite count and telemetry; return the step's logs.

        `param_grads` are those of the (possibly loss-scaled) loss; `logit_grads`
        is d(loss)/d(logits) without the scale. Updates variables: JAX's step
        calls it inside a StatelessScope.
        """
        batch = ops.cast(ops.shape(x)[0], "float32")
        if self.on_nonfinite == "skip":
            # A skipped step is not part of the epoch's mean loss either.
            kept = ops.cast(finite, "float32")
            private_api.loss_mean(self).update_state(ops.where(finite, loss, 0.0), sample_weight=batch * kept)
        else:
            private_api.loss_mean(self).update_state(loss, sample_weight=batch)
        # Under `stop`, the steps after the first non-finite one are not counted: they were never applied.
        counted = (1.0 - ops.cast(finite, "float32")) * (1.0 - ops.cast(self.stopped(), "float32"))
        self.first_nonfinite.update_state(counted)
        self.nonfinite_counter.update_state(counted)
        logs = dict(self.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
        logs.pop(EXACT_CE_LOG, None)  # an evaluation figure; not measured in training
        # A new tensor (stacked): on PyTorch a metric's variable would be handed out as is, and validation
        # resets the metrics before the epoch's logs are read.
        logs[NONFINITE_LOG] = ops.stack([ops.cast(self.nonfinite_counter.result(), "float32"),
                                         self.first_nonfinite.result(), self.first_nonfinite.steps.value])
        tracker = self._extra.tracker
        if tracker is not None:
            scale = self.loss_scale()
            stats = logit_stats(logits, self.targets(y), sigmoid=self._extra.sigmoid)
            stats["loss"] = ops.cast(loss, "float32")
            stats["grad_norm"] = global_norm(param_grads) / scale
            stats["logit_grad_norm"] = global_norm([logit_grads])
            stats["loss_scale"] = scale
            logs.update(tracker.update(stats))
        return logs


    def record_evaluation(self, x, y, y_pred, sample_weight, loss, logits):
        """Update the loss, metrics and exact cross entropy of one evaluation batch; return its logs.
        Updates variables: JAX's step calls it inside a StatelessScope."""
        private_api.loss_mean(self).update_state(loss, sample_weight=ops.cast(ops.shape(x)[0], "float32"))
        exact = exact_binary_cross_entropy if self._extra.sigmoid else exact_cross_entropy
        self.exact_ce.update_state(exact(logits, self.targets(y)), sample_weight=sample_weight)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
