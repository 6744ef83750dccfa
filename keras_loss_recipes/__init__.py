"""Train classifiers that output logits, and compare the ways of forming their loss.

keras-loss-recipes shows how each way of forming the cross-entropy loss behaves, for stability and
accuracy, on every Keras backend.

One import package, so that nothing it installs shadows a user's own `losses.py`, `models.py`,
`data.py` or `recipes.py`. Its subpackages, one layer each; imports point down only
(tests/test_layout.py, LAYERS); each subpackage's job: docs/layout.md, generated from their docstrings.

The library (docs/api.md), for a user's own script; importing this package imports no Keras
backend, each name is loaded when first used:

    StabilityMonitor      a callback for model.fit: the loss path at train begin, stability figures
                          per epoch in TensorBoard, stops on NaN/inf and says where it began
    loss_path(model)      which computation the compiled loss really performs, on this backend
    diagnose(model)       the loss doctor's report for a live model or a .keras file (a row per backend x precision)
    fix(model)            the logits model with its from_logits loss, and an inference model of probabilities
    calibrate(model, x_val, y_val)   temperature scaling: T fitted on held-out logits, and the calibrated model
    exact_cross_entropy   the float64 reference cross entropy from logits, exact in relative terms
    formulations          the registry of loss formulations (names(), get(name), formulation(name))
"""
import importlib

# Public name -> the module that defines it (loaded on first use: keras reads KERAS_BACKEND when imported).
_PUBLIC = {
    "StabilityMonitor": "keras_loss_recipes.api.monitor",
    "LossPathWarning": "keras_loss_recipes.api.monitor",
    "LossPathError": "keras_loss_recipes.api.monitor",
    "loss_path": "keras_loss_recipes.api.loss_path",
    "exact_cross_entropy": "keras_loss_recipes.losses.numerics",
    "diagnose": "keras_loss_recipes.recipes.doctor.diagnosis",
    "Diagnosis": "keras_loss_recipes.recipes.doctor.diagnosis",
    "fix": "keras_loss_recipes.recipes.doctor.fix",
    "calibrate": "keras_loss_recipes.evaluation.calibration",
    "Fixed": "keras_loss_recipes.recipes.doctor.fix",
}
_MODULES = {"formulations": "keras_loss_recipes.losses"}  # public names that are modules
__all__ = sorted([*_PUBLIC, *_MODULES])


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'keras_loss_recipes' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
