"""A quiet start: the backend's start-up chatter that means nothing on a CPU machine is dropped.

Importing TensorFlow prints, from C++ and before any log level applies,

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.

twice (two of its libraries log this way), and its first device query logs
`E0000 ... failed call to cuInit ... (303)` at error level. On a CPU that oneDNN
optimises for (AVX-512 and newer: many Intel Xeons, AMD Zen 4), each of those two
libraries also prints

    I0000 ... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

whatever TF_CPP_MIN_LOG_LEVEL says. JAX logs
`Unable to initialize backend 'tpu'` at INFO. No environment variable silences
the C++ lines, so `start_backend` imports Keras (and TensorFlow, which Keras
imports to seed it wherever it is installed) and queries the devices with the
process's stderr (file descriptor 2) sent to a temporary file, then writes back
every line that is not on the list below.

The CUDA lines are dropped only where the machine has no GPU device node: on a
machine with a GPU they report a real problem and stay.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from keras_loss_recipes.runtime import private_api

# Always noise: absl's notice that it has not been set up yet, and oneDNN's notice that it is on
# (it says how to turn it off; the project leaves TensorFlow's default as it is).
ABSL_PREAMBLE = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called")
ONEDNN_NOTICE = re.compile(r"port\.cc:\d+\] oneDNN custom operations are on\.")
ALWAYS_NOISE = (ABSL_PREAMBLE, ONEDNN_NOTICE)
# Noise only where there is no GPU to find.
NO_GPU_NOTICES = (
    re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used"),
    re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)"),
)
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def gpu_device_present() -> bool:
    """Whether the machine has a GPU device node (NVIDIA, WSL or ROCm), whatever the drivers say."""
    return any(Path(node).exists() for node in GPU_DEVICE_NODES)


def noise_patterns(gpu_present: bool) -> tuple[re.Pattern, ...]:
    return ALWAYS_NOISE if gpu_present else (*ALWAYS_NOISE, *NO_GPU_NOTICES)


def drop_lines(text: str, patterns) -> str:
    """`text` without the lines that match one of `patterns`."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(p.search(line) for p in patterns))


@contextlib.contextmanager
def filtered_native_stderr(patterns):
    """Within the block, what anything writes to file descriptor 2 (C++ included) is held back,
    then written out without the lines that match `patterns`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = drop_lines(held.read().decode("utf-8", "replace"), patterns)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quietly():
    """A block whose native stderr loses the CPU-machine chatter: for loading a model whose package
    (keras_hub, which imports tensorflow-text) brings TensorFlow's libraries in again."""
    return filtered_native_stderr(noise_patterns(gpu_device_present()))


_started = False


def start_backend() -> None:
    """Import Keras on the chosen backend and meet its devices, without the CPU-machine noise."""
    global _started
    logging.getLogger(private_api.JAX_BACKEND_LOGGER).setLevel(logging.WARNING)  # the "no TPU" INFO line
    if _started:
        return  # a sweep's later job: nothing new would be printed
    with filtered_native_stderr(noise_patterns(gpu_device_present())):
        import keras

        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow as tf  # Keras imports it anyway, to seed it

            if keras.backend.backend() == "tensorflow":
                tf.config.list_physical_devices("GPU")  # where TensorFlow calls cuInit
    _started = True
