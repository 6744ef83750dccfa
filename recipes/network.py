"""Assemble the trained network: model body -> logits -> stress -> formulation head.

    image -> body (cnn/mlp) -> Dense "logits"
          -> cast to float32            (under mixed precision, unless stress.unsafe_head_dtype)
          -> x stress.logit_scale       (stress knob; 1 = off)
          -> / loss.temperature -> softmax head, if the formulation has one
"""
from __future__ import annotations

import contextlib


def set_cpu_threads(threads: int | None) -> None:
    """Cap TensorFlow's CPU thread pools, e.g. one thread per parallel sweep worker.

    Only possible before TensorFlow runs its first op; a worker process that
    already ran a job keeps the setting it has (the same one, in a sweep).
    """
    import keras

    if threads is None or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


@contextlib.contextmanager
def precision_policy(name: str):
    """Set Keras's global dtype policy for building and training; restore it after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_network(cfg, setup, num_classes: int, tracker=None):
    """The StabilityModel to train and a model of the same layers that outputs its logits."""
    import keras

    from recipes.models import build_logits
    from recipes.stability_model import StabilityModel

    stress = cfg.stress
    head_dtype = None if stress.unsafe_head_dtype else "float32"
    inputs = keras.Input(shape=(28, 28, 1), name="image")
    logits = build_logits(cfg.model, inputs, num_classes, stress.get("head_init_std"))
    if head_dtype and keras.config.dtype_policy().compute_dtype != "float32":
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    if stress.logit_scale != 1:
        logits = keras.layers.Rescaling(float(stress.logit_scale), dtype=head_dtype, name="logit_scale")(logits)
    scaled_logits, outputs = setup.attach_head(logits, dtype=head_dtype)
    model = StabilityModel(
        inputs, outputs, scaled_logits, num_classes=num_classes, tracker=tracker,
        on_nonfinite=cfg.trainer.on_nonfinite, name=f"{cfg.model.name}_{setup.name}",
    )
    logits_model = keras.Model(inputs, scaled_logits, name=f"{cfg.model.name}_logits")
    return model, logits_model
