"""Loss formulations for classifiers that output logits, and the numerics to judge them.

The base layer: it imports nothing of `recipes`, and Keras only inside functions.

    losses.names(family=None)             all formulation names (or the "softmax" or "sigmoid" family's)
    losses.get(name, label_smoothing=0, temperature=1)   a formulation bound to options
    losses.stable_softmax(logits, axis=-1, temperature=1.0)
    losses.exact_cross_entropy(logits, labels)   float64 reference, per example
    losses.exact_binary_cross_entropy(logits, targets)   the sigmoid family's float64 reference
    keras_loss_recipes.losses.keras_losses.parse("categorical_crossentropy")   a user's own Keras loss, for the loss doctor
    python -m keras_loss_recipes.losses                      the formulation table of the README, from the registry
"""
from keras_loss_recipes.losses.formulations import (
    ALL_BACKENDS,
    BINARY,
    EXACT_PATHS,
    FAMILIES,
    MULTICLASS,
    MULTILABEL,
    SIGMOID_LAYER,
    SOFTMAX_LAYER,
    TASK_FAMILIES,
    TASKS,
    Formulation,
    LossOptionError,
    LossSetup,
    formulation,
    get,
    names,
)
from keras_loss_recipes.losses.numerics import CLIP_EPSILON, exact_binary_cross_entropy, exact_cross_entropy, stable_softmax

__all__ = [
    "ALL_BACKENDS",
    "BINARY",
    "CLIP_EPSILON",
    "EXACT_PATHS",
    "FAMILIES",
    "Formulation",
    "LossOptionError",
    "LossSetup",
    "MULTICLASS",
    "MULTILABEL",
    "SIGMOID_LAYER",
    "SOFTMAX_LAYER",
    "TASK_FAMILIES",
    "TASKS",
    "exact_binary_cross_entropy",
    "exact_cross_entropy",
    "formulation",
    "get",
    "names",
    "stable_softmax",
]
