"""The loss doctor's measurements on one Keras backend, in this process.

Keras picks its backend once per process, so the doctor (keras_loss_recipes/recipes/doctor/)
starts this module once per backend (`keras_loss_recipes.runtime.workers`); `diagnose` on the
current backend calls `measure` in its own process instead:

    KERAS_BACKEND=jax python -m keras_loss_recipes.recipes.doctor.worker SPECS.json

SPECS.json is a list of examinations, each {"head": Head as a dict, "loss":
{"class_name", "from_logits"}, "precisions": [...]}. For every examination
and precision it prints one line `RESULT {...}`: the loss path measured on the
probe batches (`keras_loss_recipes.losses.paths.detect_loss_path`) with the model's own head in
that precision, and where the loss departs from the exact one over the logit
gap, capped or NaN, and where its gradient dies (`keras_loss_recipes.losses.paths.sweep_gaps`).
A head the doctor could not read is reported as "unknown" without measuring.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from keras_loss_recipes import losses
from keras_loss_recipes.losses.keras_losses import KerasLoss
from keras_loss_recipes.losses.numerics import tolerance
from keras_loss_recipes.losses.paths import detect_loss_path, sweep_gaps
from keras_loss_recipes.reporting.results import finite_or_none
from keras_loss_recipes.runtime.backends import activate_backend
from keras_loss_recipes.runtime.session import fresh_session, precision_policy
from keras_loss_recipes.runtime.workers import report

REL_TOL = 1e-3  # the probe recipe's default: a loss further than this from the exact one has departed


def head_layer(head: dict, precision: str):
    """The model's head as a layer: its own Activation / Softmax layer, or its layer's activation, followed
    by the shape-only layers the model has after it (on TensorFlow they decide whether the softmax is
    rescued: the rescue needs it to be the last op).

    Its dtype is the precision's, unless the saved model pins the head to another dtype.
    """
    import keras

    dtype = head["dtype"] if head["pinned"] else precision
    if head["layer_config"]:
        saved = head["layer_config"]
        layer = keras.layers.deserialize({**saved, "config": {**saved["config"], "dtype": dtype, "name": "head"}})
    else:
        activation = {"logits": "linear"}.get(head["kind"], head["kind"])
        layer = keras.layers.Activation(activation, dtype=dtype, name="head")
    if not head.get("after"):
        return layer
    return keras.Sequential([layer, *(keras.layers.deserialize(after) for after in head["after"])],
                            name="head_and_after")


def examine(spec: dict, precision: str) -> dict:
    """`measure` in a fresh Keras session: what this child process does for each examination and precision."""
    if spec["head"]["kind"] != "unknown":
        fresh_session()  # before the policy: clearing the session resets it
    return measure(spec, precision)


def measure(spec: dict, precision: str) -> dict:
    """The path, the failure gap and the gradient of one head and loss in one precision, in this process's
    Keras session (`diagnose` measures so on the current backend; the global dtype policy is restored)."""
    head = spec["head"]
    if head["kind"] == "unknown":
        return {"path": "unknown", "exact": False, "reason": head["reason"]}
    import keras

    with precision_policy(precision):
        layer = head_layer(head, precision)
        setup = KerasLoss(**spec["loss"]).setup(head["kind"])
        path = detect_loss_path(setup, head=layer, num_classes=head["width"])
        logits_dtype = keras.config.dtype_policy().compute_dtype  # what the layer before the head outputs
        curve = sweep_gaps(setup, logits_dtype, head["width"], head=layer, loss_dtype=keras.config.floatx())
    tol = tolerance(logits_dtype, REL_TOL)
    departed = ~curve.within(tol)
    first = int(np.argmax(departed)) if departed.any() else None
    return {
        "path": path.path, "exact": path.path in losses.EXACT_PATHS,
        "probe_losses": [finite_or_none(v) for v in path.measured], "probe_exact": list(path.exact),
        "head_dtype": layer.compute_dtype, "logits_dtype": logits_dtype,
        "departs_from_gap": None if first is None else float(curve.gaps[first]),
        "how": _how(curve, first, tol),
        "max_gap": float(curve.gaps[-1]), "loss_at_max_gap": finite_or_none(float(curve.values[-1])),
        "exact_at_max_gap": float(curve.exact[-1]),
        "gradient_dies_from_gap": curve.first_dead_gradient(),
        "grad_at_max_gap": finite_or_none(float(curve.grad_norms[-1])),
        "exact_grad_at_max_gap": float(curve.exact_grad_norms[-1]),
    }


def _how(curve, first: int | None, tol: float) -> str:
    """How the loss departs: NaN, inf, capped (it stops growing below the exact loss), or off by some error."""
    if first is None:
        return "exact throughout"
    value = curve.values[first]
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "inf"
    last = curve.values[-1]
    if np.isfinite(last) and last < curve.exact[-1] * (1 - tol):
        return f"capped at {last:.4g}"
    return f"off by {curve.relative_errors()[first]:.2g}"


def main(spec_file: str) -> None:
    activate_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
    with open(spec_file) as handle:
        specs = json.load(handle)
    for index, spec in enumerate(specs):
        for precision in spec["precisions"]:
            began = time.perf_counter()
            result = examine(spec, precision)
            result.update(spec=index, precision=precision, seconds=round(time.perf_counter() - began, 2))
            report(result)


if __name__ == "__main__":
    main(*sys.argv[1:])
