"""Metrics of a task beyond accuracy, as Keras metrics the fit updates (the history's `macro_f1`).

Keras's own F1Score takes a threshold in (0, 1], for probabilities; a model that outputs logits says yes
above 0. `MacroF1` counts true positives, false positives and false negatives per label over the
epoch, and its result is the mean over labels of 2 TP / (2 TP + FP + FN), 0 for a label that is never
predicted nor true (as scikit-learn's f1_score(average="macro", zero_division=0)).
"""
from __future__ import annotations

import keras
from keras import ops

MACRO_F1 = "macro_f1"


class MacroF1(keras.metrics.Metric):
    """Macro F1 over the labels (the output's units) of 0/1 targets; a unit says yes above `threshold`."""

    def __init__(self, labels: int, threshold: float = 0.0, name: str = MACRO_F1, **kwargs):
        super().__init__(name=name, **kwargs)
        self.labels, self.threshold = int(labels), float(threshold)
        # Per label: true positives, false positives, false negatives.
        self.counts = self.add_variable(shape=(3, self.labels), initializer="zeros", dtype="float32", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        yes = ops.cast(y_pred > self.threshold, "float32")
        true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(yes))
        batch = ops.stack([ops.sum(yes * true, axis=0), ops.sum(yes * (1.0 - true), axis=0),
                           ops.sum((1.0 - yes) * true, axis=0)])
        self.counts.assign(self.counts.value + batch)

    def result(self):
        tp, fp, fn = self.counts.value[0], self.counts.value[1], self.counts.value[2]
        denominator = 2.0 * tp + fp + fn
        return ops.mean(ops.where(denominator > 0, 2.0 * tp / ops.maximum(denominator, 1.0), 0.0))

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts.value))

    def get_config(self):
        return {**super().get_config(), "labels": self.labels, "threshold": self.threshold}
