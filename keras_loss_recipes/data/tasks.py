"""The data a task (`task=`) trains on: its labels checked, and how many logits the model outputs for it.

    multiclass   labels (N,) of class ids 0..classes-1    one logit per class
    binary       labels (N,) of 0/1, two classes at most  one logit (above 0: yes)
    multilabel   labels (N, K) of 0/1                     one logit per label (K)

The loaders read labels of either shape (data/splits.py); which one a run needs is the task's, checked
here once the data are loaded, before the backend starts: a bad label is one line, and no run starts.
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes.data.splits import Splits
from keras_loss_recipes.losses import BINARY, MULTICLASS, MULTILABEL, TASKS
from keras_loss_recipes.runtime.errors import UserError


def check_labels(splits: Splits, task: str) -> Splits:
    """`splits`, whose labels fit `task`; else a UserError naming the task, the labels and what to do."""
    labels = [splits.y_train, splits.y_val, splits.y_test]
    several = any(np.ndim(y) == 2 for y in labels)
    where = f"task={task}: data={splits.name}"
    if task == MULTILABEL:
        if not several:
            raise UserError(f"{where} has one label per example; task=multilabel needs labels (N, K) of 0/1, "
                            "one column per label (or use task=multiclass or task=binary)")
        _require_zero_one(labels, where)
    elif several:
        raise UserError(f"{where} has labels of shape (N, {splits.num_classes}), several per example: "
                        "use task=multilabel")
    elif task == BINARY:
        if splits.num_classes > 2:
            raise UserError(f"{where} has {splits.num_classes} classes; task=binary needs two (labels 0/1): "
                            "use task=multiclass, or relabel the data to 0/1")
        _require_zero_one(labels, where)
    elif task != MULTICLASS:
        raise UserError(f"task={task!r}: valid choices: {', '.join(TASKS)}")
    return splits


def _require_zero_one(labels: list, where: str) -> None:
    values = np.unique(np.concatenate([np.asarray(y).reshape(-1) for y in labels]))
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise UserError(f"{where}: labels hold {shown}; this task needs 0/1 labels (1: yes)")


def outputs(task: str, num_classes: int) -> int:
    """How many logits the model outputs for `task` on data of `num_classes` classes (K labels)."""
    return 1 if task == BINARY else num_classes
