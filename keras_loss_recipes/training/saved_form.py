"""What a run saves of its model: a `.keras` file where Keras gives it back as trained, else the weights.

A `.keras` file of a graph (the built-in models, a builder's, a functional or
Sequential model, keras.applications, a keras_hub classifier saved as its
graph: `models.as_graph`) loads back to the logits the run measured. A
subclassed model (its own `call()`) is saved as its constructor's options
and rebuilt from them on loading; that gives it back as trained only where
Keras can find its class (registered with
`@keras.saving.register_keras_serializable()`) and the class builds the layers
it trained: not where the recipe took its softmax off, which the class builds
again. Such a model gets its weights saved instead (`*.weights.h5`, the
subclassed model's own, which `MyModel().load_weights(...)` takes once built),
and the run says so in one log line. `recipe=evaluate` rebuilds it from the
run's `model._target_`, so it needs the user's class to be importable.
"""
from __future__ import annotations

import random

from keras_loss_recipes.runtime import private_api
from keras_loss_recipes.runtime.run_files import BEST_MODEL, BEST_WEIGHTS, LAST_MODEL, LAST_WEIGHTS
from keras_loss_recipes.training.subclassed import is_subclassed

WEIGHTS_SUFFIX = ".weights.h5"  # Keras saves weights only under a name that ends so
WEIGHTS_FILES = (LAST_WEIGHTS, BEST_WEIGHTS)  # last, best
MODEL_FILES = (LAST_MODEL, BEST_MODEL)


def saved_files(run_dir) -> tuple[str, str]:
    """The names of the last and best models a run saved: .keras files, or the weights in their place."""
    from pathlib import Path

    return WEIGHTS_FILES if (Path(run_dir) / LAST_WEIGHTS).is_file() else MODEL_FILES


def weights_holder(model):
    """The subclassed model inside `model` (the first, in layer order), or None."""
    for layer in private_api.inner_layers(model, include_self=True):
        if is_subclassed(layer):
            return layer
    return None


def not_saveable_whole(model) -> tuple[object, str] | None:
    """The subclassed model inside `model` that a `.keras` file would not give back as trained, and why;
    None where a `.keras` file does."""
    layer = weights_holder(model)
    if layer is None:
        return None
    state = random.getstate()  # Keras draws its default seeds from Python's generator: left as it was
    try:
        return _why_not(layer)
    finally:
        random.setstate(state)


def _why_not(layer) -> tuple[object, str] | None:
    import keras

    name = type(layer).__name__
    try:
        config = keras.saving.serialize_keras_object(layer)
    except Exception as err:  # arguments Keras cannot write down
        return layer, f"Keras cannot write down how to build {name} ({type(err).__name__}: {_first_line(err)})"
    config = {k: v for k, v in config.items() if k != "build_config"}  # unbuilt: no weights drawn
    try:
        fresh = keras.saving.deserialize_keras_object(config)
    except Exception as err:
        why = ("the class is not registered" if "Could not locate class" in str(err)
               else f"{type(err).__name__}: {_first_line(err)}")
        return layer, (f"Keras cannot build {name} back from a .keras file ({why}); register the class with "
                       "@keras.saving.register_keras_serializable() to get one")
    if _layer_configs(fresh) != _layer_configs(layer):
        return layer, (f"{name} builds its layers anew when loaded, and they differ from those trained (the head "
                       "the recipe took off comes back); return logits from call() to get a .keras file")
    return None


def _layer_configs(model) -> list:
    """The config of every layer inside `model`, without the names Keras numbers as it makes them."""
    return [{k: v for k, v in layer.get_config().items() if k != "name"}
            for layer in private_api.inner_layers(model, include_self=False)]


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""
