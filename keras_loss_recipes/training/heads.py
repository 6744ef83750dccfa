"""The output head of a Keras model, read from its graph: a `.keras` file's config.json, or a live model's.

The loss doctor examines models this project did not build. It reads their
graph as data instead of loading them: nothing in the file runs (a Lambda
layer's code stays unread), no Keras backend is needed, and a file that is
not a Keras model is refused in milliseconds. Only a file that stores no
graph (a model class that saves its options, as keras_hub's classifiers do)
is loaded, in Keras's safe mode, to read the graph it builds. The training
recipe reads a user's live model the same way (`live_config`: the config
`model.save` would write), to find the logits behind its head and take it off.

What it finds (`Head`):
    kind        softmax | sigmoid | logits (no activation) | unknown (the graph does not show the computation)
    layer       the head layer; the head is its `activation` argument (Dense(..., activation="softmax"))
                or the layer itself (Activation, Softmax)
    logits_from the layer whose output is the pre-activation logits: the head layer itself (before its
                activation), or the layer that feeds a separate Activation / Softmax layer
    width       output units: the number of classes (one unit per label for a sigmoid head)
    dtype       the head's dtype policy; `pinned` when it differs from the layer that feeds it
                (kept under a mixed policy, as the Keras mixed-precision guide pins a float32 softmax)
    after       layers that only change the shape, between the head and the model's output (Reshape,
                Flatten, Dropout, Identity, a linear Activation), seen through to find a softmax or
                sigmoid behind them, or logits; serialized, first to last. On TensorFlow they matter: Keras's
                softmax rescue needs the softmax to be the model's last op

>>> model = {"class_name": "Sequential", "config": {"name": "m", "layers": [
...     {"class_name": "InputLayer", "config": {"name": "in"}},
...     {"class_name": "Flatten", "config": {"name": "flatten"}},
...     {"class_name": "Dense", "config": {"name": "dense", "units": 10, "activation": "softmax"}}]}}
>>> head = find_head(model)
>>> head.kind, head.layer, head.logits_from, head.width, head.activation_in_layer
('softmax', 'dense', 'dense', 10, True)
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from keras_loss_recipes.runtime.errors import UserError

MODEL_CLASSES = ("Functional", "Sequential", "Model")  # a nested model is searched for its own output layer
SHAPE_ONLY = ("Reshape", "Flatten", "Dropout", "Identity")  # and a linear Activation: seen through to a head
ACTIVATION_LAYERS = ("Activation", "Softmax")  # a head that is a layer of its own
HEAD_KINDS = {"softmax": "softmax", "sigmoid": "sigmoid", "linear": "logits"}  # activation -> head kind


@dataclass(frozen=True)
class Head:
    kind: str
    layer: str
    layer_class: str
    activation_in_layer: bool
    logits_from: str | None
    width: int | None
    dtype: str
    pinned: bool
    layer_config: dict | None = None  # a separate Activation / Softmax layer, to rebuild it exactly
    reason: str | None = None  # why the kind is "unknown"
    after: tuple = ()  # the shape-only layers between the head and the output, serialized, first to last


@dataclass(frozen=True)
class SavedModel:
    path: str
    name: str
    class_name: str
    keras_version: str | None
    head: Head
    compiled_loss: object  # what model.compile(loss=...) stored, None if the model was not compiled
    compile_config: dict | None = None  # all that model.compile(...) stored (serialized), None if not compiled


def read_saved_model(path) -> SavedModel:
    """The head and compiled loss of the `.keras` file at `path`; UserError if it is not one.

    A model whose config holds its constructor's arguments instead of a graph (a keras_hub classifier:
    a backbone and options) is loaded, where its package is installed, and its built graph is read.
    """
    config, metadata = _read_archive(Path(path))
    graph = config if stores_graph(config) else _built_graph(Path(path), config)
    return SavedModel(
        path=str(path), name=config["config"].get("name", "?"), class_name=config["class_name"],
        keras_version=metadata.get("keras_version"), head=find_head(graph, f"checkpoint={path}"),
        compiled_loss=(config.get("compile_config") or {}).get("loss"),
        compile_config=config.get("compile_config") or None,
    )


def stores_graph(config: dict) -> bool:
    """Whether a model's config (config.json's content) holds its layers, or only its constructor's options."""
    return bool(config["config"].get("layers"))


def _built_graph(path: Path, config: dict) -> dict:
    """The graph of a saved model that stores no graph, read from the model loaded and built."""
    from keras_loss_recipes.runtime.quiet import quietly, start_backend

    start_backend()  # as quiet as a run's start, whatever the model's package imports as it loads
    import keras

    try:
        with quietly():
            model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # its package not installed, or a class Keras cannot rebuild
        raise UserError(f"checkpoint={path}: the file stores no graph ({config.get('class_name')} keeps its "
                        f"options, not its layers), and loading it to read the built graph failed: "
                        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; install the "
                        f"package that defines it ({config.get('module', '?')})") from None
    return live_config(model)


def _read_archive(path: Path) -> tuple[dict, dict]:
    def refuse(why: str):
        return UserError(f"checkpoint={path}: not a Keras model file ({why}); save one with model.save('model.keras')")

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                raise refuse("the archive holds no config.json")
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except zipfile.BadZipFile:
        raise refuse("not a zip archive: a .keras file is one") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise refuse(f"config.json is not JSON: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict) or "class_name" not in config:
        raise refuse("config.json describes no model")
    return config, metadata


def policy_name(layer: dict | None) -> str:
    """A layer's dtype policy ("float32", "mixed_float16", ...) as its config stores it."""
    dtype = (layer or {}).get("config", {}).get("dtype")
    if isinstance(dtype, dict):
        return str(dtype.get("config", {}).get("name", "float32"))
    return str(dtype or "float32")


def activation_name(value) -> str:
    """An `activation` argument as stored: a name, None (linear), or a serialized function."""
    if value is None:
        return "linear"
    if isinstance(value, dict):  # {"class_name": "function", "config": "softmax", ...}
        inner = value.get("config")
        return inner if isinstance(inner, str) else str(value.get("class_name"))
    return str(value)


def _layer_name(layer: dict) -> str:
    return layer.get("config", {}).get("name") or layer.get("name", "?")


def _inbound_name(layer: dict) -> str | None:
    """The layer feeding `layer` in a functional graph (Keras 3's inbound_nodes format)."""
    try:
        return layer["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0]
    except (KeyError, IndexError, TypeError):
        return None


def _units(layer: dict | None) -> int | None:
    config = (layer or {}).get("config", {})
    return config.get("units", config.get("filters"))


def _input_width(layer: dict) -> int | None:
    shapes = [(layer.get("build_config") or {}).get("input_shape")]
    try:
        shapes.append(layer["inbound_nodes"][0]["args"][0]["config"]["shape"])
    except (KeyError, IndexError, TypeError):
        pass
    for shape in shapes:
        if isinstance(shape, list) and shape and isinstance(shape[-1], int):
            return shape[-1]
    return None


def output_layer(model: dict, where: str) -> tuple[dict, dict | None]:
    """The layer that produces the model's output, and the layer feeding it (None if none is known)."""
    out, previous = _output_and_previous(model, where)
    return out, previous(out)


def _output_and_previous(model: dict, where: str):
    """The model's output layer, and a function from a layer of its graph to the layer feeding it."""
    layers = [layer for layer in model["config"].get("layers", []) if layer.get("class_name") != "InputLayer"]
    if not layers:
        raise UserError(f"{where}: the model has no layers, so no output head")
    if model["class_name"] == "Sequential":
        position = {id(layer): i for i, layer in enumerate(layers)}

        def previous(layer):
            i = position.get(id(layer), 0)
            return layers[i - 1] if i > 0 else None

        out = layers[-1]
    else:
        outputs = model["config"].get("output_layers") or []
        # One output is stored as [name, node, index], several as a list of such triples.
        if outputs and isinstance(outputs[0], list):
            if len(outputs) != 1:
                raise UserError(f"{where}: the model has {len(outputs)} outputs; "
                                "a classifier here has one output")
            outputs = outputs[0]
        by_name = {_layer_name(layer): layer for layer in layers}
        if not outputs or outputs[0] not in by_name:
            raise UserError(f"{where}: the graph names no output layer")

        def previous(layer):
            return by_name.get(_inbound_name(layer))

        out = by_name[outputs[0]]
    if out.get("class_name") in MODEL_CLASSES:
        return _output_and_previous(out, where)
    return out, previous


def _activation_of(layer: dict) -> str | None:
    """The activation a layer applies last, by name; None where its config names none."""
    class_name, config = layer.get("class_name"), layer.get("config", {})
    if class_name == "Softmax":
        return "softmax"
    if class_name in ACTIVATION_LAYERS or "activation" in config:
        return activation_name(config.get("activation"))
    return None


def _is_shape_only(layer: dict) -> bool:
    return layer.get("class_name") in SHAPE_ONLY or (
        layer.get("class_name") == "Activation" and _activation_of(layer) == "linear")


def _serialized(layer: dict) -> dict:
    return {"module": layer.get("module", "keras.layers"), "class_name": layer.get("class_name"),
            "config": layer.get("config", {})}


def _see_through(out: dict, previous, where: str):
    """From the output layer back through shape-only layers: the softmax or sigmoid head behind them (or,
    where the output layer is no Activation layer, the logits: a layer without activation, such as the
    Dense of a model whose softmax `fix` took off before its Reshape), the function giving each layer's
    feeder there, and the shape-only layers (first to last); the output layer itself, and no layers, where
    no such head is behind them."""
    walked, layer, step = [], out, previous
    logits_behind = out.get("class_name") not in ACTIVATION_LAYERS  # else the output layer is the head
    while _is_shape_only(layer):
        behind = step(layer)
        if behind is None:
            break
        walked.insert(0, layer)
        if behind.get("class_name") in MODEL_CLASSES:  # a nested model: its own output layer
            behind, step = _output_and_previous(behind, where)
        activation = _activation_of(behind)
        if activation in ("softmax", "sigmoid") or (
                logits_behind and activation == "linear" and not _is_shape_only(behind)):
            return behind, step, tuple(_serialized(w) for w in walked)
        layer = behind
    return out, previous, ()


def find_head(model: dict, where: str = "the model") -> Head:
    """The head of a model config (config.json's content). UserError if the output is no classifier head."""
    out, previous = _output_and_previous(model, where)
    out, previous, after = _see_through(out, previous, where)
    feeder = previous(out)
    name, class_name, config = _layer_name(out), out.get("class_name", "?"), out.get("config", {})
    separate = class_name in ACTIVATION_LAYERS
    if class_name == "Softmax":
        activation = "softmax"
    elif separate or "activation" in config:
        activation = activation_name(config.get("activation"))
    else:
        return Head("unknown", name, class_name, False, None, None, policy_name(out), False,
                    reason=_unknown_reason(name, class_name, out.get("module")))
    if activation not in HEAD_KINDS:
        raise UserError(f"{where}: the output layer '{name}' ({class_name}) ends in "
                        f"activation {activation!r}, not a classifier head; the doctor examines outputs with "
                        f"activation {', '.join(repr(a) for a in HEAD_KINDS)} (linear: logits)")
    # A weightless layer in a Sequential stores no shape: then the width is the units of the layer feeding it.
    width = (_input_width(out) or _units(feeder)) if separate else _units(out)
    if not isinstance(width, int):
        raise UserError(f"{where}: cannot tell how many outputs layer '{name}' ({class_name}) has")
    kind = HEAD_KINDS[activation]
    if kind == "softmax" and width < 2:
        raise UserError(f"{where}: layer '{name}' is a softmax over {width} unit, which always "
                        "outputs 1.0; a binary classifier takes one sigmoid unit (or 2 softmax units)")
    return Head(
        kind=kind, layer=name, layer_class=class_name, activation_in_layer=not separate,
        logits_from=_layer_name(feeder) if separate and feeder else name, width=width, dtype=policy_name(out),
        pinned=feeder is not None and policy_name(feeder) != policy_name(out),
        layer_config=_serialized(out) if separate else None, after=after,
    )


def live_config(model) -> dict:
    """What `model.save` writes as config.json for a live Keras model: `find_head` reads it alike (through
    JSON, as the file holds it: lists where the live config has tuples)."""
    import keras

    config = keras.saving.serialize_keras_object(model)
    if not stores_graph(config) and getattr(model, "inputs", None):
        # A functional subclass that saves its options instead of its graph (keras_hub's classifiers):
        # the same layers, as a plain functional model, show the graph.
        config = keras.saving.serialize_keras_object(keras.Model(model.inputs, model.outputs, name=model.name))
    return json.loads(json.dumps(config))


def _unknown_reason(name: str, class_name: str, module: str | None = None) -> str:
    if module and not module.startswith("keras"):  # a subclassed model of the user's, saved whole
        return (f"the output comes from layer '{name}' ({module}.{class_name}), a subclassed model whose "
                "call() a saved graph does not show; the doctor reads graphs only, so seeing its head needs "
                "the class itself")
    if class_name == "Lambda":
        return (f"the output comes from layer '{name}' (Lambda), whose Python code the saved graph does not "
                "show; it may hold a softmax, but the doctor does not guess")
    return (f"the output comes from layer '{name}' ({class_name}); the doctor recognizes a head in a layer "
            "with an `activation` argument (Dense, Conv) and in Activation and Softmax layers")
