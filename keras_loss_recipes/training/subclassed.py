"""A subclassed keras.Model (`class MyModel(keras.Model)` with its own `call()`): its head, found by running it.

Such a model has no graph to read: what `call()` computes shows only when it
runs. So it is run once, in inference, on a small batch of its input shape,
with every layer inside it recording what it returned. The layer whose output
is the model's output (seen through layers that only reshape or pass values
on: Flatten, Reshape, Dropout, Identity, a layer that only wraps others) is
the one that computed it; its config tells the head (`heads.find_head`), as
for a model with a graph. A softmax or sigmoid there is taken off on the live
layer, so that `loss=` decides the loss. Where no layer returned the output
(`call()` ends in an op of its own, such as `keras.ops.softmax`), the head
cannot be found: the user is told to return logits from `call()`.
"""
from __future__ import annotations

import json

import numpy as np

from keras_loss_recipes.runtime import private_api
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import SHAPE_ONLY, Head, find_head

PROBE_SEED = 0  # the batch it runs on: numpy's own generator, so Keras's random state is left as it was
PROBE_BATCH = 2


def is_subclassed(model) -> bool:
    """A model whose computation is its own `call()`, not a graph of layers (functional or Sequential)."""
    import keras

    graph = private_api.is_functional(model) or isinstance(model, keras.Sequential)  # keras_hub's are functional
    return isinstance(model, keras.Model) and not graph


def find_live_head(model, input_shape: tuple, where: str) -> tuple[Head, object]:
    """The head of a subclassed `model` on inputs of `input_shape`, and the layer that is it."""
    sample = np.random.default_rng(PROBE_SEED).random((PROBE_BATCH, *input_shape)).astype("float32")
    model(sample, training=False)  # builds it (the first call traces; the calls recorded are the second's)
    calls, output = _recorded_calls(model, sample)
    producer = _producer(calls, output)
    if producer is None:
        raise UserError(f"{where}: cannot find its logits: no layer of {type(model).__name__} returns what its "
                        "call() returns (it ends in an op of its own, such as keras.ops.softmax). Return the "
                        "logits from call() (a Dense(num_classes) with no activation last), or end it in a layer "
                        "such as Dense(num_classes, activation='softmax') that the recipe can take off")
    import keras

    config = json.loads(json.dumps(keras.saving.serialize_keras_object(producer)))
    if not config.get("build_config"):  # a weightless layer built by tracing: its width is the output's
        config["build_config"] = {"input_shape": [None, int(output.shape[-1])]}
    head = find_head({"class_name": "Sequential", "config": {"name": model.name, "layers": [config]}}, where)
    return head, producer


def _recorded_calls(model, sample) -> tuple[list, np.ndarray]:
    """Each layer inside `model` and what it returned, in call order; and the model's output."""
    from keras import ops

    calls = []
    inner = private_api.inner_layers(model, include_self=False)

    def recording(layer):
        def call(*args, **kwargs):
            out = type(layer).call(layer, *args, **kwargs)
            calls.append((layer, out))
            return out
        return call

    for layer in inner:
        object.__setattr__(layer, "call", recording(layer))  # on the instance: the class stays as it is
    try:
        output = ops.convert_to_numpy(model(sample, training=False))
    finally:
        for layer in inner:
            object.__delattr__(layer, "call")
    return [(layer, out) for layer, out in calls if _is_array(out)], np.asarray(output)


def _is_array(value) -> bool:
    return hasattr(value, "shape") and not isinstance(value, (list, tuple, dict))


def _producer(calls: list, output: np.ndarray):
    """The last layer called whose output is the model's, seen through layers that only pass it on."""
    from keras import ops

    same = [layer for layer, out in calls if int(np.prod(out.shape)) == output.size
            and np.array_equal(np.asarray(ops.convert_to_numpy(out)).reshape(output.shape), output)]
    for layer in reversed(same):
        if not _passes_on(layer):
            return layer
    return None


def _passes_on(layer) -> bool:
    """A layer that does not compute the values it returns: it reshapes them, or it wraps other layers."""
    if type(layer).__name__ in SHAPE_ONLY:
        return True
    if type(layer).__name__ == "Activation" and getattr(layer.activation, "__name__", "") == "linear":
        return True
    return bool(private_api.inner_layers(layer, include_self=False))


def take_off(model, head: Head, layer, where: str) -> None:
    """The softmax or sigmoid `head` of a subclassed `model` made linear, in place."""
    import keras

    if head.activation_in_layer or isinstance(layer, keras.layers.Activation):
        layer.activation = keras.activations.get("linear")
        return
    # A Softmax layer: the attribute of the model that holds it gets a linear Activation instead.
    for name, value in list(vars(model).items()):
        if value is layer:
            private_api.replace_layer(model, name, layer, keras.layers.Activation("linear", name=layer.name))
            return
    raise UserError(f"{where}: cannot take off its {head.layer_class} head '{head.layer}' (not an attribute of "
                    f"{type(model).__name__}); return the logits from call() instead")
