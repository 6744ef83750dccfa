"""`fix`: the doctor's fix, done: a copy of the model that outputs logits, its loss, and a model of probabilities.

The copy has the same weights, its softmax (or sigmoid) taken off and is compiled as the model was (its
optimizer's config and metrics kept) with the matching `from_logits=True` loss: categorical, sparse or
binary as the model's loss was, its other options kept. The inference model outputs softmax(logits / T)
(sigmoid for a sigmoid head), T fitted on `validation_data` where given (`evaluation.calibration`), else 1.
A model that saves its options instead of its graph (a keras_hub classifier) is built again from them
with `activation=None`. The model given is left as it was; the two models share their layers, so training
the logits model trains the inference model too. `recipe=doctor recipe.fix=true` saves them (`Fixed.save`).

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", name="probs")])
>>> model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
>>> logits_model, loss, inference_model, temperature = fix(model)
>>> loss.get_config()["from_logits"], type(logits_model.optimizer).__name__, temperature
(True, 'Adam', 1.0)
>>> x = np.random.default_rng(0).random((2, 4)).astype("float32")
>>> bool(np.allclose(inference_model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6))
True
>>> model.get_layer("probs").activation.__name__  # the model given is unchanged
'softmax'
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from keras_loss_recipes.evaluation.calibration import fit_temperature, with_temperature
from keras_loss_recipes.losses.keras_losses import KerasLoss
from keras_loss_recipes.recipes.doctor.diagnosis import check_fit, choose_loss, read_model
from keras_loss_recipes.reporting.doctor_report import probability_activation
from keras_loss_recipes.runtime.atomic import replacing
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import Head, find_head, live_config, stores_graph
from keras_loss_recipes.training.models import take_off_head

LOGITS_SUFFIX = ".logits.keras"  # model.keras -> model.logits.keras
INFERENCE_SUFFIX = ".inference.keras"  # model.keras -> model.inference.keras
PREDICT_BATCH = 256


class Fixed(NamedTuple):
    """What `fix` returns: unpack it as `logits_model, loss, inference_model, temperature = fix(model)`."""

    logits_model: object  # keras.Model: the logits, compiled with `loss`
    loss: object  # keras.losses.Loss, from_logits=True
    inference_model: object  # keras.Model: softmax (or sigmoid) of logits / temperature
    temperature: float

    def save(self, directory, stem: str = "model") -> tuple[Path, Path]:
        """Both models as `<stem>.logits.keras` and `<stem>.inference.keras` in `directory`; UserError, and
        nothing written, where either file exists already."""
        directory = Path(directory)
        paths = directory / f"{stem}{LOGITS_SUFFIX}", directory / f"{stem}{INFERENCE_SUFFIX}"
        for path in paths:
            if path.exists():
                raise UserError(f"{path}: exists already; the fixed models are never written over a file: "
                                "move it, or give another directory")
        for model, path in zip((self.logits_model, self.inference_model), paths):
            with replacing(path) as partial:
                model.save(partial)
        return paths


def fix(model_or_path, loss=None, validation_data=None) -> Fixed:
    """The logits model of `model_or_path` (a keras.Model, or the path of a `.keras` file), its
    from_logits=True loss and its inference model; see the module's docstring.

    loss             the loss's name, where the model was not compiled (or to use another crossentropy)
    validation_data  (x_val, y_val), integer or one-hot labels: T is fitted on them; default T = 1

    UserError where the head cannot be taken off (a softmax inside a Lambda, an op after the softmax),
    for the inputs `diagnose` refuses, and for validation data that does not fit the model.
    """
    saved, where = read_model(model_or_path)
    chosen, _ = choose_loss(saved, where, loss, None)
    check_fit(saved, where, chosen)
    check_fixable(saved.head, where)
    model = _loaded(model_or_path)
    logits_model = logits_copy(model, saved.head, where)
    fixed_loss = logits_loss(saved.compiled_loss if loss is None else None, chosen)
    _compile(logits_model, saved.compile_config, fixed_loss)
    activation = probability_activation(saved.head.kind, chosen.labels)
    temperature = fitted_temperature(logits_model, activation, validation_data)
    return Fixed(logits_model, fixed_loss, inference_model(logits_model, activation, temperature), temperature)


def check_fixable(head: Head, where: str) -> None:
    """UserError, in one line, where the doctor cannot see the head, so cannot take it off."""
    if head.kind == "unknown":
        raise UserError(f"{where}: the head cannot be taken off, as the doctor cannot see it: {head.reason}. "
                        "End the model in a layer whose activation is the softmax (Dense(..., activation="
                        "'softmax')) or an Activation or Softmax layer, or return the logits; then fix it")


def check_calibratable(activation: str, key: str, instead: str) -> None:
    """UserError naming `key` where the probabilities are no softmax: T is fitted on one softmax's NLL."""
    if activation != "softmax":
        raise UserError(f"{key}: temperature scaling fits one softmax over the classes, and this model's "
                        f"probabilities are a {activation}; {instead} (T = 1)")


def _loaded(model_or_path):
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    from keras_loss_recipes.recipes.evaluate import load_model

    return load_model(Path(model_or_path).expanduser())


def logits_copy(model, head: Head, where: str):
    """A copy of `model` with its weights, outputting the logits behind `head`."""
    import keras

    config = keras.saving.serialize_keras_object(model)
    if stores_graph(config):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        copy = copy if head.kind == "logits" else take_off_head(copy, head, where)
    else:  # its constructor's options (a keras_hub classifier): built again with activation=None
        options = config["config"]
        if head.kind != "logits" and "activation" not in options:
            raise UserError(f"{where}: {type(model).__name__} saves its options, not its graph, and none of them "
                            f"is its {head.kind}; build it so that it outputs logits")
        options = options if head.kind == "logits" else {**options, "activation": None}
        config = {k: v for k, v in config.items() if k != "compile_config"}  # compiled below, with the new loss
        copy = keras.saving.deserialize_keras_object({**config, "config": options})
        copy.set_weights(model.get_weights())
    kind = find_head(live_config(copy), where).kind
    if kind != "logits":
        raise UserError(f"{where}: its copy without the {head.kind} still reads as {kind}, not logits; build the "
                        "model so that it outputs logits")
    return copy


def logits_loss(compiled_loss, chosen: KerasLoss):
    """`chosen`'s Keras loss with from_logits=True, the other options of `compiled_loss` (as compile
    stored it) kept where it is the same loss."""
    import keras

    cls = getattr(keras.losses, chosen.class_name)
    options = {}
    if isinstance(compiled_loss, dict) and compiled_loss.get("class_name") == chosen.class_name:
        options = dict(compiled_loss.get("config") or {})
    return cls.from_config({**options, "from_logits": True})


def _compile(model, compile_config: dict | None, loss) -> None:
    """`model` compiled as `compile_config` says (optimizer, metrics, ...), with `loss`."""
    import keras

    rest = {k: v for k, v in (compile_config or {}).items() if k != "loss"}
    model.compile(**keras.saving.deserialize_keras_object(rest), loss=loss)


def fitted_temperature(logits_model, activation: str, validation_data) -> float:
    """T fitted on `validation_data` (x, labels), 1.0 without it."""
    if validation_data is None:
        return 1.0
    check_calibratable(activation, "validation_data", "leave validation_data out")
    try:
        x, labels = validation_data
    except (TypeError, ValueError):
        raise UserError("validation_data: give a pair (x_val, y_val)") from None
    expected, given = tuple(logits_model.input_shape[1:]), tuple(np.shape(x)[1:])
    if len(expected) != len(given) or any(e not in (None, g) for e, g in zip(expected, given)):
        raise UserError(f"validation_data: examples of shape {given}, but the model takes {expected}; "
                        "calibrate on data of the model's input shape")
    logits = np.asarray(logits_model.predict(x, batch_size=PREDICT_BATCH, verbose=0), np.float64)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] == logits.shape[-1] > 1:  # one-hot rows
        labels = labels.argmax(axis=-1)
    return fit_temperature(logits, labels)


def inference_model(logits_model, activation: str, temperature: float):
    """activation(logits / T) over `logits_model`, nested whole (a keras_hub classifier stays one)."""
    import keras

    inputs = [keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype) for t in logits_model.inputs]
    x = inputs[0] if len(inputs) == 1 else inputs
    scaled = with_temperature(keras.Model(x, logits_model(x), name=logits_model.name), temperature)
    probabilities = keras.layers.Activation(activation, dtype="float32", name="probabilities")(scaled.outputs[0])
    return keras.Model(scaled.inputs, probabilities, name=f"{logits_model.name}_inference")
