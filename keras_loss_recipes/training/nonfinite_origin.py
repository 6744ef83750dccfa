"""Where a run first went non-finite: the diagnosis of its first NaN/inf step, on the run's own backend.

Nothing here runs on the training step's path. The step only counts non-finite
steps on the device; when `callbacks.NonFiniteGuard` reads the first one at an
epoch's end, it calls `diagnose` once, with that step's batch (drawn again from
the seeded data order) and the model as it is then. Under `stop` those are the
weights from before the bad step (it and every later step of its epoch were
left out); under `skip` and `continue` they are the epoch's last, and the
record says so. The checks, in order, stop at the first that finds something:

    activation   the first layer, in graph order, whose output is NaN/inf; its
                 class, dtype and the largest finite magnitude in its input (an
                 overflow names the dtype's largest finite value, 65,504 for float16)
    loss         every activation finite, the loss not: the formulation's own
                 computation at the first bad example (a probability that
                 underflowed to 0 in the logits' dtype, at which logit gap)
    gradient     activations and loss finite: the first variable whose gradient
                 is NaN/inf, and the largest gradient norm of each layer
    weights      (before all of these) a `continue` run's weights already
                 NaN/inf: every output after them is too, so only that is said

The layers' random state (dropout seeds) and statistics (batch norm) are put
back afterwards, so a run that goes on trains as it would have.
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes.losses.numerics import largest_finite, to_numpy
from keras_loss_recipes.training.backup import host_copy

FIGURES_TO_KEEP = 4  # significant digits of the recorded figures


def diagnose(model, x, y, setup, where: dict, weights: str, forward=None, loss=None) -> dict:
    """The origin of the non-finite step `where` ({"epoch", "step"}, the step within its epoch, 1-based), from
    batch (`x`, `y`) and `model`'s weights, which `weights` describes. A dict for metrics.json, with `text`.

    `setup` (a LossSetup) gives the loss per example. A model the recipes did not build passes how to get
    its outputs and logits (`forward(x)` -> (y_pred, logits)) and its mean loss (`loss(y, y_pred)`);
    a recipe's `StabilityModel` has both."""
    forward = forward or (lambda inputs: model.outputs_and_logits(inputs, training=True))
    loss = loss or model.loss
    kept = _state(model)
    try:
        found = (_nonfinite_weights(model) or _activations(model, x) or _loss(forward, loss, x, y, setup)
                 or _gradients(model, loss, x, y) or {"kind": None})
    finally:
        _restore(kept)
    record = {**where, "weights": weights, **found}
    record["where"], record["text"] = short(record), describe(record)
    return record


def short(origin: dict) -> str:
    """A few words for a table's cell: what, and where."""
    kind = origin.get("kind")
    if kind == "activation":
        return f"{origin['layer']} ({origin['dtype']} overflow)" if origin["overflow"] else f"{origin['layer']} ({origin['value']})"
    if kind == "loss":
        return f"loss ({origin['loss']})"
    if kind in ("gradient", "weights"):
        return f"{kind} of {origin['layer']}"
    return "not reproduced"


def describe(origin: dict) -> str:
    """One line in words: what went non-finite first, where, and the figures that say why."""
    kind = origin.get("kind")
    value = origin.get("value", "NaN")
    step = f" step {origin['step']}" if origin.get("step") is not None else ""
    head = f"first {value} at epoch {origin['epoch']}{step}: "
    if kind == "activation":
        text = (f"layer {origin['layer']} ({origin['class']}, {origin['dtype']}) output {value} from a finite input "
                f"(largest |input| {_num(origin['input_max_abs'])})")
        if origin.get("overflow"):
            text += f": it overflowed {origin['dtype']}, whose largest finite value is {_large(origin['dtype_max'])}"
    elif kind == "loss":
        text = f"the loss ({origin['loss']}: "
        if origin.get("reduction_overflow"):
            text += (f"every example's loss finite, the largest {_num(origin['largest_example_loss'])}, but their "
                     "sum over the batch overflowed)")
        elif origin.get("underflow"):
            text += (f"log of a probability that underflowed to 0 in {origin['dtype']} at logit gap "
                     f"{_num(origin['logit_gap'])})")
        else:
            text += f"{value} at logit gap {_num(origin['logit_gap'])}, largest |logit| {_num(origin['logit_max_abs'])})"
        text += ", every activation finite"
    elif kind == "gradient":
        text = (f"the gradient of {origin['variable']} (layer {origin['layer']}), with every activation and the loss "
                f"finite; largest gradient norm {_num(origin['largest_norm'])} (layer {origin['largest_norm_layer']})")
    elif kind == "weights":
        text = (f"the weights of layer {origin['layer']} ({origin['class']}) are already {value} (the bad updates "
                "were applied), so every output after them is too: where it began is no longer visible; "
                "trainer.on_nonfinite=stop keeps the weights from before the step")
    else:
        text = "not reproduced: the step's batch gives finite activations, loss and gradients"
    return head + text + f" [weights {origin['weights']}]"


def _large(value: float) -> str:
    return f"{value:,.0f}" if value < 1e6 else f"{value:.4g}"


def _num(value) -> str:
    return "inf" if value is None or not np.isfinite(value) else f"{value:.{FIGURES_TO_KEEP}g}"


def _kind_of(values: np.ndarray) -> str:
    return "NaN" if np.isnan(values).any() else "inf"


def _finite_max_abs(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


# The model's state around the diagnosis -------------------------------------------------------------

def _state(model) -> list:
    """(variable, host copy) of what a forward pass in training mode may change: statistics, random seeds."""
    return [(v, host_copy(v)) for v in model.variables if not v.trainable]


def _restore(kept: list) -> None:
    for variable, value in kept:
        variable.assign(value)


# The checks -----------------------------------------------------------------------------------------

def _layers(model) -> list:
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _nonfinite_weights(model) -> dict | None:
    """The first layer whose weights hold NaN/inf: only a `continue` run, which applied the bad updates, has
    one, and then every output after it is NaN/inf too; what came first is no longer visible."""
    for layer in _layers(model):
        for w in layer.weights:
            values = to_numpy(w)
            if not np.all(np.isfinite(values)):
                return {"kind": "weights", "layer": layer.name, "class": type(layer).__name__,
                        "variable": w.path, "value": _kind_of(values)}
    return None


def _activations(model, x) -> dict | None:
    """The first layer whose output is NaN/inf, in graph order (model.layers of a functional model)."""
    import keras
    from keras import tree

    layers = _layers(model)
    tensors, index = [], {}
    for layer in layers:
        for t in [*tree.flatten(layer.input), layer.output]:
            if id(t) not in index:
                index[id(t)] = len(tensors)
                tensors.append(t)
    probe = keras.Model(model.inputs, tensors)
    values = [to_numpy(v) for v in tree.flatten(probe(x, training=True))]
    for layer in layers:
        out = values[index[id(layer.output)]]
        if np.all(np.isfinite(out)):
            continue
        inputs = [values[index[id(t)]] for t in tree.flatten(layer.input)]
        inputs_finite = all(np.all(np.isfinite(v)) for v in inputs)
        dtype = keras.backend.standardize_dtype(layer.compute_dtype)  # torch hands bfloat16 out as float32
        value = _kind_of(out)
        return {
            "kind": "activation", "layer": layer.name, "class": type(layer).__name__, "dtype": dtype,
            "value": value, "input_max_abs": max((_finite_max_abs(v) for v in inputs), default=0.0),
            "inputs_finite": inputs_finite, "overflow": bool(value == "inf" and inputs_finite),
            "dtype_max": largest_finite(dtype),
        }
    return None


def _loss(forward, loss, x, y, setup) -> dict | None:
    """Every activation finite: is the loss? Per example, as the formulation computes it."""
    import keras

    y_pred, logits = forward(x)
    # Without a known formulation (a user's own loss), the batch's mean stands for its examples.
    per_example = to_numpy(setup.make_loss(reduction="none")(y, y_pred) if setup else loss(y, y_pred)).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(per_example))
    z = to_numpy(logits)
    if not bad.size:
        total = to_numpy(loss(y, y_pred))
        if np.all(np.isfinite(total)):
            return None
        # Every example's loss finite, their mean not: the sum over the batch overflowed.
        return {"kind": "loss", "loss": setup.name if setup else "the compiled loss", "value": _kind_of(total), "example": None, "examples": 0,
                "dtype": keras.backend.standardize_dtype(logits.dtype), "reduction_overflow": True,
                "largest_example_loss": float(np.abs(per_example).max()),
                "logit_gap": float(np.max(z.max(axis=-1) - z.min(axis=-1))), "logit_max_abs": float(np.abs(z).max()),
                "underflow": False}
    row = z[bad[0]].astype(np.float64)
    shifted = z[bad[0]] - z[bad[0]].max()  # the softmax a formulation writes out, in the logits' own dtype
    with np.errstate(under="ignore", over="ignore"):
        probs = np.exp(shifted) / np.exp(shifted).sum()
    return {
        "kind": "loss", "loss": setup.name if setup else "the compiled loss", "value": _kind_of(per_example[bad]), "example": int(bad[0]),
        "examples": int(bad.size), "dtype": keras.backend.standardize_dtype(logits.dtype), "logit_gap": float(row.max() - row.min()),
        "logit_max_abs": float(np.abs(row).max()), "underflow": bool((probs == 0).any()),
    }


def _gradients(model, loss, x, y) -> dict | None:
    """Activations and loss finite: the first variable (in the model's order) whose gradient is NaN/inf."""
    import keras

    weights = model.trainable_weights
    grads = [None if g is None else to_numpy(g)
             for g in _GRADIENTS[keras.backend.backend()](model, loss, x, y, weights)]
    owner = {id(w): layer.name for layer in _layers(model) for w in layer.trainable_weights}
    norms: dict[str, float] = {}
    for w, g in zip(weights, grads):
        if g is not None:
            layer = owner.get(id(w), w.path.split("/")[0])
            norms[layer] = float(np.sqrt(norms.get(layer, 0.0) ** 2 + float(np.sum(np.square(g.astype(np.float64))))))
    first = next(((w, g) for w, g in zip(weights, grads) if g is not None and not np.all(np.isfinite(g))), None)
    if first is None:
        return None
    finite_norms = {k: v for k, v in norms.items() if np.isfinite(v)}
    largest = max(finite_norms, key=finite_norms.get) if finite_norms else None
    return {
        "kind": "gradient", "variable": first[0].path, "layer": owner.get(id(first[0]), "?"),
        "value": _kind_of(first[1]), "layer_grad_norms": {k: (v if np.isfinite(v) else None) for k, v in norms.items()},
        "largest_norm": finite_norms.get(largest), "largest_norm_layer": largest,
    }


def _tensorflow_gradients(model, loss, x, y, weights):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=True))
    return tape.gradient(value, weights)


def _jax_gradients(model, loss, x, y, weights):
    import jax
    import keras

    def loss_of(values):
        with keras.StatelessScope(state_mapping=list(zip(weights, values))):
            return loss(y, model(x, training=True))

    return jax.grad(loss_of)([w.value for w in weights])


def _torch_gradients(model, loss, x, y, weights):
    import torch

    values = [w.value for w in weights]
    with torch.enable_grad():
        value = loss(y, model(x, training=True))
        grads = torch.autograd.grad(value, values, allow_unused=True)
    return list(grads)


_GRADIENTS = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients, "torch": _torch_gradients}
