"""Which Keras backend runs: tensorflow (default), jax or torch.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice is
made before anything imports Keras. The config key `backend` defaults to the
KERAS_BACKEND environment variable, else tensorflow; `backend=...` on the
command line wins over both.

Everything runs on all three, except what is TensorFlow by nature: the tf.nn
formulations, tf.distribute (trainer.distribution=mirrored) and the TFDS data
sources. JAX adds keras.distribution.DataParallel (trainer.distribution=data_parallel).
"""
from __future__ import annotations

import importlib.util
import os
import sys

from recipes.errors import UserError

BACKENDS = ("tensorflow", "jax", "torch")
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def activate_backend(name: str) -> None:
    """Make Keras run on `name`; an error if that is no longer possible or not installed."""
    if name not in BACKENDS:
        raise UserError(f"backend={name!r}: valid choices: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise UserError(f"backend={name}: Keras already runs on {current} in this process; start a new one")
        return
    if importlib.util.find_spec(PACKAGES[name]) is None:
        extra = {"jax": "pip install -r requirements-jax.txt", "torch": "pip install torch"}.get(name, "")
        raise UserError(f"backend={name}: the {PACKAGES[name]} package is not installed ({extra})")
    os.environ["KERAS_BACKEND"] = name


def preselect_from_argv(argv: list[str]) -> None:
    """Honour a single `backend=X` override before anything (Hydra plugins, TensorFlow) imports Keras.

    TensorFlow imports Keras when it is imported, and a sweep's callbacks import
    TensorFlow before the first job: by then it is too late to pick the backend.
    A sweep over several backends (`backend=tensorflow,jax`) needs a launcher that
    starts a process per job (hydra/launcher=joblib or submitit_local).
    """
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "backend" and value in BACKENDS:
            os.environ["KERAS_BACKEND"] = value


def current_backend() -> str:
    import keras

    return keras.backend.backend()


def device_of_backend() -> tuple[str, str]:
    """("cpu"|"gpu", name) of the device a non-TensorFlow backend computes on."""
    backend = current_backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return ("gpu" if device.platform in ("gpu", "cuda", "rocm") else "cpu"), f"{device.device_kind} ({device.platform})"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return "gpu", torch.cuda.get_device_name(0)
    from recipes.devices import cpu_name

    return "cpu", cpu_name()
