"""What the hardware can do, measured in the run: CPU features, matmul peak, model FLOPs.

    cpu_features()                   the vector and matrix extensions /proc/cpuinfo lists (or platform's words)
    matmul_peak(dtype)               GFLOP/s of a large square matmul through Keras's backend, best of several
    training_flops_per_sample(model) forward + backward FLOPs of one example, from the layers' shapes

The FLOPs count multiply-adds as two operations, in the convolution and dense
layers only (pooling, activations and dropout are a rounding error here). The
backward pass computes the gradient with respect to the layer's input and to
its weights, each as costly as the forward pass: training is 3x forward.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

# The extensions that decide how fast float32 and 16-bit matmuls can go on a CPU.
FEATURES = ("fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "f16c")
BACKWARD_FACTOR = 3  # forward, then gradients for inputs and for weights


def cpu_features() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [f for f in FEATURES if f in present]
    return [platform.machine(), platform.processor()]


def matmul_peak(dtype: str, n: int | None = None, repeats: int = 8) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on the active Keras backend, best of `repeats`.

    n defaults to 1024 on a CPU and 8192 on a GPU, where a smaller product is over before
    the launch costs are; only a scalar comes back to the host, so no copy is timed.
    """
    import keras
    import numpy as np

    from keras_loss_recipes.runtime.backends import select_device

    if n is None:
        n = 8192 if select_device("auto")[0] == "gpu" else 1024
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)), dtype=dtype)

    def product() -> None:  # to numpy: waits for the result on every backend
        keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.sum(keras.ops.matmul(a, b)), "float32"))

    product()  # warm-up: kernels chosen, memory mapped
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best / 1e9


def forward_flops_per_sample(model) -> int:
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, height, width, filters = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * height * width * filters * kh * kw * layer.input.shape[-1]
        elif kind == "Dense":
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)


def training_flops_per_sample(model) -> int:
    return BACKWARD_FACTOR * forward_flops_per_sample(model)
