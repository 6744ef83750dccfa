"""Measure what a formulation really computes, through Keras's compiled path.

Keras may rewrite a loss behind the user's back (the TensorFlow backend reads
the logits back out of a softmax output), so the only honest way to know what a
formulation computes is to run it the way training does: a model with the
formulation's head, compiled with its loss, evaluated on given logits.
"""
from __future__ import annotations

import numpy as np

from losses.formulations import LossSetup


def compiled_loss(setup: LossSetup, logits, labels, head=None) -> float:
    """Mean loss that `model.evaluate` reports when the head receives `logits`.

    By default the head is built fresh from `setup` (temperature and softmax);
    pass `head` (a layer) to measure a trained model's own head layer instead.
    `labels` are integer class ids, encoded as the formulation expects.
    """
    import keras

    logits = np.asarray(logits, dtype=np.float32)
    num_classes = logits.shape[-1]
    inputs = keras.Input(shape=(num_classes,))
    outputs = head(inputs) if head is not None else setup.attach_head(inputs)[1]
    model = keras.Model(inputs, outputs)
    model.compile(loss=setup.make_loss())
    y = setup.encode_labels(np.asarray(labels), num_classes)
    # Under tf.distribute or DataParallel every replica needs examples: repeat the probe (the mean is unchanged).
    copies = _replicas_in_sync()
    logits, y = np.concatenate([logits] * copies), np.concatenate([y] * copies)
    return float(model.evaluate(logits, y, batch_size=len(logits), verbose=0))


def _replicas_in_sync() -> int:
    import keras

    if keras.backend.backend() != "tensorflow":
        # keras.distribution (JAX): the batch is split over the mesh's devices.
        distribution = keras.distribution.distribution()
        return int(distribution.device_mesh.devices.size) if distribution is not None else 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
