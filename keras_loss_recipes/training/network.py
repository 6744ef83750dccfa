"""Assemble the trained network: model body -> logits -> stress -> formulation head.

    image -> body (cnn/mlp) -> Dense "logits"
          -> cast to float32            (under mixed precision, unless stress.unsafe_head_dtype)
          -> x stress.logit_scale       (stress knob; 1 = off)
          -> / loss.temperature -> softmax head, if the formulation has one

Also the ways back: the loss path of a built model's own head, and the logits
behind a saved model's output.
"""
from __future__ import annotations

import logging

import numpy as np

from keras_loss_recipes.losses import SIGMOID_LAYER, SOFTMAX_LAYER

log = logging.getLogger(__name__)
HEAD_LAYERS = {"softmax": SOFTMAX_LAYER, "sigmoid": SIGMOID_LAYER}  # a formulation's head -> its layer's name


def build_network(cfg, setup, input_shape: tuple, num_classes: int, tracker=None):
    """The StabilityModel to train, a model of the same layers that outputs its logits, and the head taken
    off the configured model (`models.without_head`; None if it output logits)."""
    import keras

    from keras_loss_recipes.training.models import build_logits
    from keras_loss_recipes.training.stability_model import StabilityModel

    stress = cfg.stress
    head_dtype = None if stress.unsafe_head_dtype else "float32"
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    logits, removed = build_logits(cfg.model, inputs, num_classes, stress.head_init_std)
    if head_dtype and keras.config.dtype_policy().compute_dtype != "float32":
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    if stress.logit_scale != 1:
        logits = keras.layers.Rescaling(float(stress.logit_scale), dtype=head_dtype, name="logit_scale")(logits)
    scaled_logits, outputs = setup.attach_head(logits, dtype=head_dtype)
    model = StabilityModel(
        inputs, outputs, scaled_logits, num_classes=num_classes, tracker=tracker,
        on_nonfinite=cfg.trainer.on_nonfinite, name=_safe(f"{cfg.model.name}_{setup.name}"),
    )
    logits_model = keras.Model(inputs, scaled_logits, name=_safe(f"{cfg.model.name}_logits"))
    return model, logits_model, removed


def _safe(name: str) -> str:
    """A Keras model name from a config's: a target's dots would read as a path."""
    return name.replace(".", "_")


def measure_loss_path(model, setup):
    """The loss path of the compiled model's own head, measured on probe batches (logged, warned)."""
    from keras_loss_recipes.losses.paths import detect_loss_path

    head = model.get_layer(HEAD_LAYERS[setup.head]) if setup.head in HEAD_LAYERS else None
    report = detect_loss_path(setup, head=head)
    log.info(report.describe())
    if report.warning:
        log.warning("loss=%s: %s", setup.name, report.warning)
    return report


def logits_model_of(model):
    """A model that outputs the logits behind `model`'s output (before its softmax or sigmoid head layer)."""
    import keras

    for layer in model.layers:  # the head layer `LossSetup.attach_head` adds
        if layer.name in HEAD_LAYERS.values() and isinstance(layer, keras.layers.Activation):
            return keras.Model(model.inputs, layer.input)
    return model


def predict_logits(logits_model, images, batch_size: int, replicas: int = 1, shard: tuple[int, int] = (0, 1)):
    """Logits of every image; padded to a multiple of `replicas` (DataParallel splits batches evenly).

    With `shard` (index, count) of several processes training one model, each
    computes the logits of its own equal part of the images from its copy of the
    weights (Keras's predict cannot fetch outputs that span processes), and
    every process gets them all.
    """
    part, parts = shard
    if parts > 1:
        from jax.experimental import multihost_utils

        size = -(-len(images) // parts)
        mine = np.concatenate([images, images[: size * parts - len(images)]])[part * size:(part + 1) * size]
        logits = _local_logits(logits_model, mine, max(1, batch_size // parts))
        return np.asarray(multihost_utils.process_allgather(logits, tiled=True))[: len(images)]
    pad = -len(images) % replicas
    padded = np.concatenate([images, images[:pad]]) if pad else images
    return logits_model.predict(padded, batch_size=batch_size, verbose=0)[: len(images)]


def _local_logits(logits_model, images, batch_size: int):
    """The model applied in this process alone (JAX), to this process's copy of the weights."""
    import jax

    def local(variables):
        return [v.value.addressable_data(0) for v in variables]

    weights = local(logits_model.trainable_variables), local(logits_model.non_trainable_variables)
    call = jax.jit(lambda trainable, other, x: logits_model.stateless_call(trainable, other, x, training=False)[0])
    return np.concatenate([np.asarray(call(*weights, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])
