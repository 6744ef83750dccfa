"""Measure what a formulation really computes, through Keras's compiled path.

Keras may rewrite a loss behind the user's back (the TensorFlow backend reads
the logits back out of a softmax output), so the only honest way to know what a
formulation computes is to run it the way training does: a model with the
formulation's head, compiled with its loss, evaluated on given logits
(`compiled_loss`), or the head and loss compiled as a training step compiles
them, with the gradient with respect to the logits (`loss_and_logit_grad`).
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes.losses.formulations import LossSetup


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


def loss_and_logit_grad(setup: LossSetup, logits: np.ndarray, labels, dtype: str, head=None, loss_dtype=None):
    """Per-example loss and |d loss / d logits| with head, loss and logits in `dtype`.

    `labels` are integer class ids (for a binary loss: its targets). Returns
    float64 arrays: the losses, the gradient norms, and the logits as rounded
    to `dtype`.

    `head` (a layer) replaces the formulation's own softmax or sigmoid, e.g. by a user's
    model's head with its dtype policy; `loss_dtype` is the dtype Keras casts
    the head's output to before the loss (training under a mixed policy: float32).
    Both default to what the probe measures: the formulation's head and loss in `dtype`.

    Compiled as training compiles it (tf.function on TensorFlow, jax.jit on
    JAX; PyTorch runs eagerly as Keras's torch trainer does), so what Keras
    rewrites in training it rewrites here too.
    """
    import keras
    from keras import ops

    num_classes = logits.shape[-1]
    if head is None and setup.head != "logits":  # the formulation's softmax or sigmoid, in `dtype`
        head = keras.layers.Activation(setup.head, dtype=dtype)
    loss_fn = setup.make_loss(dtype=loss_dtype or dtype, reduction="none")
    y = ops.convert_to_tensor(setup.encode_labels(np.asarray(labels), num_classes))

    def per_example(z):
        return loss_fn(y, head(z) if head is not None else z)

    z = ops.cast(ops.convert_to_tensor(logits.astype(np.float32)), dtype)

    def as_float64(t):
        return ops.convert_to_numpy(ops.cast(t, "float32")).astype(np.float64)

    values, grads = _LOSS_AND_GRAD[keras.backend.backend()](per_example, z)
    return as_float64(values), np.linalg.norm(as_float64(grads), axis=-1), as_float64(z)


def _tensorflow_loss_and_grad(per_example, z):
    import tensorflow as tf

    @tf.function
    def step(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            values = per_example(z)
            total = tf.reduce_sum(tf.cast(values, tf.float32))
        grads = tape.gradient(total, z)
        return values, tf.zeros_like(z) if grads is None else grads

    return step(z)


def _jax_loss_and_grad(per_example, z):
    import jax
    import jax.numpy as jnp

    def total(z):
        values = per_example(z)
        return jnp.sum(values.astype(jnp.float32)), values

    (_, values), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(z)
    return values, grads


def _torch_loss_and_grad(per_example, z):
    z = z.detach().clone().requires_grad_(True)
    values = per_example(z)
    values.float().sum().backward()
    return values.detach(), z.grad


_LOSS_AND_GRAD = {"tensorflow": _tensorflow_loss_and_grad, "jax": _jax_loss_and_grad, "torch": _torch_loss_and_grad}
