"""Models: the built-in bodies, and how any model config becomes the logits of the network.

A model config names what to build with Hydra's `_target_` (configs/model/*.yaml), in one of two forms:

    builder   f(inputs, num_classes, **options) -> the logits tensor
              (cnn and mlp below, or a function of your own)
    factory   f(input_shape=..., num_classes=... or classes=..., **options) -> a keras.Model
              (a keras.applications class, a keras_hub classifier, any function that returns a model)

The recipe fills in what the callable's signature names: `inputs` (the image
input tensor) or `input_shape` (the data's H x W x C), and `num_classes` or
`classes` (the data's class count); a callable that names none of these gets
`(inputs, num_classes)` by position. The other keys of the config, except
`name`, are its options; options it does not take are left out, in one log line.

Whatever comes back, the recipe finds its logits with the one head finder
(`heads.find_head`, which also reads the loss doctor's saved models): a
softmax or sigmoid head is taken off, so that `loss=` decides the loss, and
the run says so. Built-in bodies:

    cnn: the keras.io "simple MNIST convnet" (34,826 parameters on 28 x 28 x 1; `convnet_layers`, which
         the plain-Keras example and benchmark build too)
    mlp: Flatten -> Dense(hidden_units, relu) -> Dense(classes); takes images or feature vectors (N, F)
    embedding_bag: Embedding(vocabulary_size, embedding_dim) -> average over the sequence -> Dense(classes);
         takes token ids (N, T) (data.inputs=tokens)
"""
from __future__ import annotations

import inspect
import logging
import math

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.targets import parameters, resolve_target, target_path
from keras_loss_recipes.runtime.user_code import raised_in_user_code

log = logging.getLogger(__name__)
KEY = "model._target_"


def logits_layer(num_classes: int, head_init_std: float | None):
    """The last Dense: plain logits. `head_init_std` (a stress knob) sets its init scale."""
    from keras import initializers, layers

    init = "glorot_uniform" if head_init_std is None else initializers.RandomNormal(stddev=head_init_std)
    return layers.Dense(num_classes, kernel_initializer=init, name="logits")


def convnet_layers(num_classes: int, dropout: float = 0.5, head: str = "logits", head_init_std: float | None = None):
    """The keras.io "simple MNIST convnet", layer by layer: the one definition of it, for `cnn` below and for
    the plain-Keras example (the doctor's example model, the benchmark's plain side).

    `head`: "logits" (what this framework trains: `logits_layer`) or "softmax" (a softmax Dense, as the
    example writes it). A generator: each layer is made when asked for, so `cnn`, which applies each layer
    before asking for the next, draws the initial weights in the same order as always.
    """
    from keras import layers

    if head not in ("logits", "softmax"):
        raise ValueError(f"head={head!r}: valid choices: logits, softmax")
    yield layers.Conv2D(32, kernel_size=(3, 3), activation="relu")
    yield layers.MaxPooling2D(pool_size=(2, 2))
    yield layers.Conv2D(64, kernel_size=(3, 3), activation="relu")
    yield layers.MaxPooling2D(pool_size=(2, 2))
    yield layers.Flatten()
    yield layers.Dropout(float(dropout))
    yield logits_layer(num_classes, head_init_std) if head == "logits" else layers.Dense(num_classes,
                                                                                           activation="softmax")


def cnn(inputs, num_classes: int, dropout: float = 0.5, head_init_std: float | None = None):
    x = inputs
    for layer in convnet_layers(num_classes, dropout, head_init_std=head_init_std):
        x = layer(x)
    return x


def mlp(inputs, num_classes: int, hidden_units: int = 128, head_init_std: float | None = None):
    from keras import layers

    x = layers.Flatten()(inputs)
    x = layers.Dense(int(hidden_units), activation="relu")(x)
    return logits_layer(num_classes, head_init_std)(x)


def embedding_bag(inputs, num_classes: int, vocabulary_size: int, embedding_dim: int = 32,
                  mask_zero: bool = False, head_init_std: float | None = None):
    """Token ids -> their embeddings, averaged over the sequence (id 0 left out of the average where
    `mask_zero`: padding) -> logits."""
    from keras import layers

    x = layers.Embedding(int(vocabulary_size), int(embedding_dim), mask_zero=bool(mask_zero))(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return logits_layer(num_classes, head_init_std)(x)


def build_logits(model_cfg, inputs, num_classes: int, head_init_std: float | None = None):
    """The logits tensor of the configured model applied to `inputs`, and the head taken off it (a
    `heads.Head`, or None when the model already output logits)."""
    import keras

    target = target_path(model_cfg._target_, KEY)
    made = _call(resolve_target(target, KEY), target, inputs, num_classes, _options(model_cfg, head_init_std))
    if isinstance(made, keras.Model):
        logits, removed = _model_logits(made, target, model_cfg.name, inputs)
    elif isinstance(made, keras.KerasTensor):
        try:
            body = keras.Model(inputs, made)
        except ValueError as err:
            raise UserError(f"model._target_={target}: its output does not come from the inputs it was given "
                            f"({err})") from None
        body, removed = without_head(body, target, model_cfg.name)
        logits = body.outputs[0] if body.inputs[0] is inputs else body(inputs)
    elif isinstance(made, (list, tuple, dict)):
        raise UserError(f"model._target_={target}: it returned {len(made)} outputs; a classifier here has one")
    else:
        raise UserError(f"model._target_={target}: it returned {type(made).__name__}; a builder returns the "
                        "logits tensor, a factory a keras.Model")
    if len(logits.shape) != 2 or logits.shape[-1] != num_classes:
        raise UserError(f"model._target_={target}: its output has shape {tuple(logits.shape)}; the data has "
                        f"{num_classes} classes, so a classifier here outputs (batch, {num_classes})")
    return logits, removed


def _model_logits(model, target: str, name: str, inputs):
    """A factory's whole model applied to `inputs`: its logits, and the head taken off it."""
    import keras

    from keras_loss_recipes.training import subclassed

    if subclassed.is_subclassed(model):  # no graph to read: its head shows when it runs
        head, layer = subclassed.find_live_head(model, tuple(inputs.shape[1:]), f"model._target_={target}")
        if head.kind == "unknown":
            raise UserError(f"model._target_={target}: cannot find its logits: {head.reason}. Return the logits "
                            f"from call() of {type(model).__name__} (a Dense layer with no activation last)")
        if head.kind == "logits":
            return model(inputs), None
        subclassed.take_off(model, head, layer, f"model._target_={target}")
        _say_taken_off(head, name or target)
        return model(inputs), head
    if isinstance(model, keras.Sequential) and not model.built:
        model.build((None, *inputs.shape[1:]))
    if len(model.outputs) != 1:
        raise UserError(f"model._target_={target}: the model has {len(model.outputs)} outputs; a classifier "
                        "here has one (its logits or probabilities)")
    model, removed = without_head(model, target, name)
    model = as_graph(model)
    return model(_fitted_inputs(model, inputs, target, name)), removed


def as_graph(model):
    """`model`, or the plain functional graph of its layers where its class saves its options instead of
    its graph (keras_hub's classifiers): loading such a file builds the model anew from those options, with
    the head the recipe took off, while the graph loads as it was trained."""
    import keras

    from keras_loss_recipes.training.heads import stores_graph

    if stores_graph(keras.saving.serialize_keras_object(model)):
        return model
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # called as the model was
    return keras.Model(inputs, model.outputs[0], name=model.name)


def _fitted_inputs(model, inputs, target: str, name: str):
    """`inputs` as the model takes them: as they are, or flattened for a model that takes the flat image
    (784 values for 28 x 28 x 1, as Keras's MNIST MLP examples take it)."""
    import keras

    expected = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    images = tuple(inputs.shape[1:])
    if expected == images:
        return inputs
    if expected is not None and len(expected) == 1 and expected[0] == math.prod(images):
        log.info("model: %s takes inputs of shape %s: the images %s are flattened to it", name or target,
                 expected, images)
        return keras.layers.Flatten(name="flat_image")(inputs)
    raise UserError(f"model._target_={target}: the model takes inputs of shape {expected}; the data's "
                    f"images are {images} (a factory gets them as input_shape)")


NOT_OPTIONS = ("_target_", "name")  # keys of a model config that are not passed to its callable


def _options(model_cfg, head_init_std) -> dict:
    from hydra.utils import instantiate

    options = {k: v for k, v in model_cfg.items() if k not in NOT_OPTIONS}
    options = instantiate(options, _convert_="all") if options else {}  # nested _target_ configs too
    if head_init_std is not None:
        options["head_init_std"] = head_init_std
    return options


def _call(fn, target: str, inputs, num_classes: int, options: dict):
    """`fn` called with what its signature names (see the module's docstring)."""
    params = parameters(fn)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {}
    if "inputs" in params:
        given["inputs"] = inputs
    elif "input_shape" in params:
        given["input_shape"] = tuple(inputs.shape[1:])
    for name in ("num_classes", "classes"):
        if name in params:
            given[name] = num_classes
            break
    kept = {k: v for k, v in options.items() if takes_any or k in params}
    left_out = {k: v for k, v in options.items() if k not in kept}
    if "head_init_std" in left_out:
        raise UserError(f"stress.head_init_std: model._target_={target} takes no head_init_std, so the stress "
                        "knob cannot reach its last layer; leave stress.head_init_std=null for this model")
    if left_out:
        log.info("model: %s takes no %s; left out", target, ", ".join(f"{k}={v!r}" for k, v in left_out.items()))
    try:
        if given:
            return fn(**given, **kept)
        return fn(inputs, num_classes, **kept)
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        in_users_code = raised_in_user_code(err)  # raised inside the user's builder: point at their line
        if in_users_code is not None:
            raise in_users_code from None
        raise UserError(f"model._target_={target}: building it failed: {type(err).__name__}: {err}") from None


def without_head(model, target: str, name: str | None = None):
    """`model` (`name` in the log line) with its softmax or sigmoid head taken off, so that it outputs
    logits, and the head taken off (None if it output logits already). The head is found in the model's
    config (`heads.find_head`) and taken off by `take_off_head`."""
    from keras_loss_recipes.training.heads import find_head, live_config

    where = f"{KEY}={target}"
    head = find_head(live_config(model), where)
    if head.kind == "unknown":
        raise UserError(f"{where}: cannot find its logits: {head.reason}. End the model in a "
                        "Dense layer (its logits), or in a softmax or sigmoid the recipe can take off")
    if head.kind == "logits":
        return model, None
    model = take_off_head(model, head, where)
    _say_taken_off(head, name or target)
    return model, head


def take_off_head(model, head, where: str):
    """`model` outputting the logits behind its softmax or sigmoid `head` (a `heads.Head` of it): a head
    inside a layer (Dense(..., activation="softmax")) or an Activation layer becomes linear, in place; a
    Softmax layer is left out of a new model over the same layers (`where` begins the error if it cannot be)."""
    import keras

    layer = find_layer(model, head.layer)
    if head.activation_in_layer or isinstance(layer, keras.layers.Activation):
        layer.activation = keras.activations.get("linear")
        return model
    try:
        x = layer.input
        for after in head.after:
            x = find_layer(model, after["config"]["name"])(x)
        return keras.Model(model.inputs, x, name=model.name)
    except ValueError as err:
        raise UserError(f"{where}: cannot take off its {head.layer_class} head '{head.layer}' ({err}); end the "
                        "model in Activation('softmax') instead") from None


def _say_taken_off(head, name: str) -> None:
    log.info("model: took off the %s head of %s (layer '%s', %s), so that loss= decides the loss from its "
             "logits", head.kind, name, head.layer, head.layer_class)


def find_layer(model, name: str):
    """The layer called `name` in `model` or in a model nested in it."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            try:
                return find_layer(layer, name)
            except KeyError:
                pass
    raise KeyError(name)
