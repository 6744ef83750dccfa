"""A task's test figures from the logits, in float64: the exact cross entropy of its family, and for task=multilabel
the accuracy of each label and the macro F1 over the labels (`held_out.scores` adds them to metrics.json).

>>> logits, labels = np.array([[3.0, -2.0], [1.0, 4.0]]), np.array([[1, 0], [0, 1]])
>>> label_accuracy(logits, labels).tolist(), macro_f1(logits, labels)
([0.5, 1.0], 0.8333333333333333)
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes import losses


def scored_as(task: str, logits, labels) -> tuple:
    """The logits and labels as a task's calibration and accuracy read them: a sigmoid per unit (task=binary,
    multilabel) as the two-class softmax over (0, z), one row per unit (`calibration.two_class_logits`); None
    logits (no validation split) stay None."""
    from keras_loss_recipes.evaluation.calibration import two_class_logits

    if logits is None or losses.TASK_FAMILIES[task] != "sigmoid":
        return logits, labels
    return two_class_logits(logits, labels)


def targets_of(labels, logits) -> np.ndarray:
    """0/1 labels in the logits' shape: (N,) of a binary task become (N, 1)."""
    return np.asarray(labels).reshape(np.shape(logits))


def exact_ce(logits, labels, sigmoid: bool) -> float:
    """Mean exact float64 cross entropy: of a softmax over the classes, or binary, mean over the units."""
    with np.errstate(all="ignore"):
        if sigmoid:
            return float(np.mean(losses.exact_binary_cross_entropy(logits, targets_of(labels, logits))))
        return float(np.mean(losses.exact_cross_entropy(logits, labels)))


def label_accuracy(logits, labels) -> np.ndarray:
    """Per label (unit), the share of examples whose logit is on the right side of 0."""
    return np.mean((np.asarray(logits) > 0) == (targets_of(labels, logits) == 1), axis=0)


def macro_f1(logits, labels) -> float:
    """Mean over labels of 2 TP / (2 TP + FP + FN), a logit above 0 saying yes; 0 for a label never predicted
    nor true (scikit-learn's f1_score(average="macro", zero_division=0))."""
    yes, true = np.asarray(logits) > 0, targets_of(labels, logits) == 1
    tp, fp, fn = (np.sum(yes & true, axis=0), np.sum(yes & ~true, axis=0), np.sum(~yes & true, axis=0))
    denominator = 2 * tp + fp + fn
    return float(np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)))


def multilabel_figures(logits, labels) -> dict:
    """metrics.json's multi-label test figures."""
    return {"test_label_accuracy": [float(a) for a in label_accuracy(logits, labels)],
            "test_macro_f1": macro_f1(logits, labels)}
