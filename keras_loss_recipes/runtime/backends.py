"""Which Keras backend runs (tensorflow, jax or torch), and which device it computes on.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice is
made before anything imports Keras. The config key `backend` defaults to the
KERAS_BACKEND environment variable, else tensorflow; `backend=...` on the
command line wins over both.

    trainer.device   auto (GPU when the backend sees one) | cpu | gpu (an error where there is none)

Everything runs on all three, except what is TensorFlow by nature: the tf.nn
formulations, tf.distribute (trainer.distribution=mirrored) and the TFDS data
sources. JAX adds keras.distribution.DataParallel (see `distribution`).
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path

from keras_loss_recipes.losses import ALL_BACKENDS as BACKENDS  # the one tuple of backends: the formulations' registry holds it
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.install_hints import install_hint

DEVICES = ("auto", "cpu", "gpu")


def activate_backend(name: str) -> None:
    """Make Keras run on `name`; an error if that is no longer possible or not installed."""
    if name not in BACKENDS:
        raise UserError(f"backend={name!r}: valid choices: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise UserError(f"backend={name}: Keras already runs on {current} in this process; start a new one")
        return
    require_installed(name)
    os.environ["KERAS_BACKEND"] = name


def require_installed(name: str) -> None:
    if importlib.util.find_spec(name) is None:  # each backend's package bears its name
        raise UserError(f"backend={name}: the {name} package is not installed; {install_hint(name)}")


def preselect(value) -> None:
    """Honour a single `backend=X` override (`value`: its X, or None) before anything (Hydra plugins,
    TensorFlow) imports Keras; the job's config (`backend`) then resolves to it.

    TensorFlow imports Keras when it is imported, and a sweep's callbacks import
    TensorFlow before the first job: by then it is too late to pick the backend.
    A sweep over several backends (`backend=tensorflow,jax`) needs a launcher that
    starts a process per job (hydra/launcher=joblib or submitit_local).
    """
    if value in BACKENDS:
        os.environ["KERAS_BACKEND"] = value


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def select_device(choice: str) -> tuple[str, str]:
    """Make the backend use the chosen device kind; return ("cpu"|"gpu", a readable name)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _select_tensorflow_device(choice)
    kind, name = _device_of_backend(backend)
    if choice == "gpu" and kind != "gpu":
        raise UserError(f"trainer.device=gpu: Keras's {backend} backend sees no GPU (it uses {name})")
    if choice == "cpu" and kind == "gpu":
        raise UserError(f"trainer.device=cpu: hide the GPU from {backend} with CUDA_VISIBLE_DEVICES=")
    return kind, name


def _device_of_backend(backend: str) -> tuple[str, str]:
    """("cpu"|"gpu", name) of the device JAX or PyTorch computes on."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return ("gpu" if device.platform in ("gpu", "cuda", "rocm") else "cpu"), f"{device.device_kind} ({device.platform})"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return "gpu", torch.cuda.get_device_name(0)
    return "cpu", cpu_name()


def _select_tensorflow_device(choice: str) -> tuple[str, str]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if choice == "gpu" and not gpus:
        found = ", ".join(d.name for d in tf.config.list_physical_devices()) or "nothing"
        raise UserError(
            f"trainer.device=gpu: TensorFlow sees no GPU (it found: {found}); on a CUDA machine install "
            "requirements-gpu.txt, or use trainer.device=auto or cpu"
        )
    if choice == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            raise UserError(
                "trainer.device=cpu: TensorFlow already started on the GPU in this process; "
                "run in a new process (or set CUDA_VISIBLE_DEVICES=)"
            ) from None
        gpus = []
    if gpus and choice in ("auto", "gpu"):
        details = tf.config.experimental.get_device_details(gpus[0])
        return "gpu", f"{details.get('device_name', gpus[0].name)} x{len(gpus)}"
    return "cpu", cpu_name()
