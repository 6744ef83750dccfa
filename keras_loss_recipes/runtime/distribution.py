"""Training on several devices, and whether to compile with XLA.

    trainer.distribution  none
                          | mirrored       TensorFlow: tf.distribute.MirroredStrategy over all
                                           visible GPUs, or trainer.devices
                          | data_parallel  JAX: keras.distribution.DataParallel over all devices,
                                           or the first trainer.devices (a number); over the
                                           devices of every process where several train one
                                           model (keras_loss_recipes/runtime/processes/)
    trainer.jit_compile   auto | true | false (XLA; forced on a CPU it was about 6x slower here)
"""
from __future__ import annotations

import contextlib
import logging

from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)
DISTRIBUTIONS = ("none", "mirrored", "data_parallel")
# The backend each distribution needs.
DISTRIBUTION_BACKENDS = {"mirrored": "tensorflow", "data_parallel": "jax"}
JIT_CHOICES = ("auto", True, False)


@contextlib.contextmanager
def distribution_scope(distribution: str, devices=None):
    """Yield the strategy (or None) with its scope entered.

    The strategy is a tf.distribute strategy, or for data_parallel a
    `DataParallelReplicas`; both tell `num_replicas_in_sync`.
    """
    if distribution == "none":
        yield None
        return
    if distribution == "data_parallel":
        with data_parallel(devices) as replicas:
            yield replicas
        return
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    log.info("MirroredStrategy over %d replicas: %s", strategy.num_replicas_in_sync,
             ", ".join(strategy.extended.worker_devices))
    with strategy.scope():
        yield strategy


class DataParallelReplicas:
    """What the recipe needs to know of a keras.distribution.DataParallel."""

    def __init__(self, devices: list[str]):
        self.num_replicas_in_sync = len(devices)


@contextlib.contextmanager
def data_parallel(count=None):
    """keras.distribution.DataParallel over all devices (or the first `count`), set globally inside."""
    import jax
    import keras

    found = keras.distribution.list_devices()  # every process's, where several train one model
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(found):
            raise UserError(f"trainer.devices={count!r}: with data_parallel, a number of devices from 1 to "
                            f"{len(found)} (found: {', '.join(found)})")
        found = found[:count]
    previous = keras.distribution.distribution()
    # Several processes: each feeds its own part of every batch (keras_loss_recipes/data/pipeline.py).
    several = jax.process_count() > 1
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found,
                                                                        auto_shard_dataset=not several))
    log.info("DataParallel over %d devices: %s", len(found), ", ".join(found))
    try:
        yield DataParallelReplicas(found)
    finally:
        keras.distribution.set_distribution(previous)


def jit_setting(value, device: str, distributed: bool):
    """What to pass to compile(jit_compile=...); warns where forcing XLA is known to hurt."""
    if value is True and device == "cpu":
        log.warning("trainer.jit_compile=true on a CPU: XLA made this convnet about 6x slower "
                    "here; trainer.jit_compile=auto lets Keras decide")
    if value is True and distributed:
        log.warning("Keras turns XLA off under tf.distribute; trainer.jit_compile=true is ignored")
    return value
