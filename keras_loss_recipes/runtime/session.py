"""The process-wide Keras state one run sets: a clean session, CPU threads, the dtype policy.

A sweep runs its jobs one after another in one process, so every run starts
from a clean slate and leaves the global dtype policy as it found it.

    trainer.precision   float32 | mixed_float16 | mixed_bfloat16   (Keras's global dtype policy)
    trainer.threads     TensorFlow's CPU threads; null lets TensorFlow decide
"""
from __future__ import annotations

import contextlib
import dataclasses

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def fresh_session() -> None:
    """Forget the models and graphs of earlier runs in this process.

    Call it before `precision_policy`: clearing the session resets the policy to float32.
    """
    import keras

    keras.backend.clear_session()


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


@contextlib.contextmanager
def started_session(trainer):
    """A clean Keras session set up as `trainer` (the config's trainer group) says: CPU threads, the device,
    the precision policy and the distribution strategy, entered while inside. Yields the `Session`."""
    from keras_loss_recipes.runtime.backends import select_device
    from keras_loss_recipes.runtime.distribution import distribution_scope

    fresh_session()  # a sweep runs jobs one after another in this process
    set_cpu_threads(trainer.threads)
    device = select_device(trainer.device)
    with precision_policy(trainer.precision), distribution_scope(trainer.distribution, trainer.devices) as strategy:
        yield Session(device, strategy.num_replicas_in_sync if strategy is not None else 1)


@dataclasses.dataclass(frozen=True)
class Session:
    """What a started session trains on: `device` ("cpu" | "gpu", a readable name), and the replicas a
    distribution strategy keeps in sync (1 without one)."""

    device: tuple[str, str]
    replicas: int
