"""Numerically careful reference functions: softmax and cross entropy.

These are the yardsticks every formulation is measured against. They accept
numpy arrays (and lists) or backend tensors; the softmax returns the same kind
it was given, the cross entropy always returns float64 numpy.
"""
from __future__ import annotations

import numpy as np

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking the log when
# it cannot see the logits; -log(1e-7) = 16.118 is therefore the largest loss
# that path can ever report.
CLIP_EPSILON = 1e-7
ULPS_OF_SLACK = 4  # a correct computation may be off by a few units in the last place of its dtype


def tolerance(dtype: str, rel_tol: float) -> float:
    """The relative error a correct computation in `dtype` may still show: `rel_tol`, or a few of the dtype's
    ulps where that is more (a 16-bit dtype rounds coarser than any tolerance asked of float32).

    >>> tolerance("float32", 1e-3), tolerance("float16", 1e-3), tolerance("bfloat16", 1e-3)
    (0.001, 0.00390625, 0.03125)
    """
    return max(rel_tol, ULPS_OF_SLACK * epsilon(dtype))


def epsilon(dtype: str) -> float:
    """The gap between 1 and the next number of `dtype` (bfloat16 keeps 7 of float32's 23 fraction bits)."""
    if str(dtype) == "bfloat16":
        return 2.0**-7
    return float(np.finfo(str(dtype)).eps)


def largest_finite(dtype: str) -> float:
    """The largest finite number of `dtype`: past it a result overflows to inf.

    >>> largest_finite("float16"), largest_finite("bfloat16") == largest_finite("float32")
    (65504.0, False)
    """
    if str(dtype) == "bfloat16":
        return float(2.0**127 * (2.0 - 2.0**-7))  # float32's exponent range, 8 bits of precision
    return float(np.finfo(str(dtype)).max)


def _is_numpy_like(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic, list, tuple, float, int))


def to_numpy(x) -> np.ndarray:
    """Any array or backend tensor as a numpy array (host copy)."""
    if _is_numpy_like(x):
        return np.asarray(x)
    from keras import ops  # deferred: importing keras starts a backend

    return np.asarray(ops.convert_to_numpy(x))


def stable_softmax(logits, axis: int = -1, temperature: float = 1.0):
    """Softmax that subtracts the maximum first, so exp never overflows.

    >>> stable_softmax(np.array([2.0, 1.0, 0.1]))
    array([0.65900114, 0.24243297, 0.09856589])

    numpy (or a list) in gives numpy out; a backend tensor in gives a tensor
    out. `temperature` divides the logits first (T > 1 flattens, T < 1 sharpens).
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    if _is_numpy_like(logits):
        z = np.asarray(logits)
        if not np.issubdtype(z.dtype, np.floating):
            z = z.astype(np.float64)
        z = z / np.asarray(temperature, dtype=z.dtype)
        shifted = z - np.max(z, axis=axis, keepdims=True)
        e = np.exp(shifted)
        return e / np.sum(e, axis=axis, keepdims=True)
    from keras import ops

    z = logits / temperature
    shifted = z - ops.max(z, axis=axis, keepdims=True)
    e = ops.exp(shifted)
    return e / ops.sum(e, axis=axis, keepdims=True)


def log_softmax64(logits, axis: int = -1) -> np.ndarray:
    """log(softmax(z)) in float64 via log-sum-exp: exact for any finite z."""
    z = to_numpy(logits).astype(np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def exact_cross_entropy(logits, labels) -> np.ndarray:
    """Reference cross entropy from logits, per example, in float64: exact in relative terms too.

    `labels` are integer class ids (shape ``logits.shape[:-1]``) or one-hot /
    soft targets (same shape as `logits`).

    -log p_c is written as (max - z_c) + log1p(sum of the other classes' exp(z - max)),
    a sum of two terms that are never negative: no cancellation, so a confident right
    answer's tiny loss keeps its digits (log of a sum that rounds to 1 would give 0).

    >>> float(exact_cross_entropy([[2.0, 1.0, 0.1]], [2])[0])  # doctest: +ELLIPSIS
    2.31703...
    >>> float(exact_cross_entropy([[1000.0, 0.0, -1000.0]], [2])[0])
    2000.0
    >>> float(exact_cross_entropy([[60.0, 0.0]], [0])[0])  # exp(-60), not 0
    8.75651076269652e-27
    """
    neg_log_p = _negative_log_softmax64(logits)
    y = to_numpy(labels)
    if y.shape == neg_log_p.shape:
        return np.sum(y.astype(np.float64) * neg_log_p, axis=-1)
    if y.shape != neg_log_p.shape[:-1]:
        raise ValueError(
            f"labels of shape {y.shape} do not fit logits of shape {neg_log_p.shape}: "
            "expected integer ids of shape logits.shape[:-1] or one-hot of shape logits.shape"
        )
    ids = y.astype(np.int64)
    num_classes = neg_log_p.shape[-1]
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"label ids must be in 0..{num_classes - 1}, got {ids.min()}..{ids.max()}")
    return np.take_along_axis(neg_log_p, ids[..., None], axis=-1)[..., 0]


def _negative_log_softmax64(logits) -> np.ndarray:
    """-log(softmax(z)) per class in float64, every entry with a small relative error (see exact_cross_entropy)."""
    z = to_numpy(logits).astype(np.float64)
    top = np.argmax(z, axis=-1)[..., None]
    m = np.take_along_axis(z, top, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        others = np.exp(z - m)
        np.put_along_axis(others, top, 0.0, axis=-1)
        return (m - z) + np.log1p(np.sum(others, axis=-1, keepdims=True))


def exact_binary_cross_entropy(logits, targets) -> np.ndarray:
    """Reference sigmoid cross entropy from logits, per example (mean over the last axis), in float64.

    `targets` are 0/1 (or soft) values of the same shape as `logits`, one per
    output unit, as Keras's BinaryCrossentropy takes them. Written as
    max(z, 0) - z * y + log(1 + exp(-|z|)), which never overflows.

    >>> float(exact_binary_cross_entropy([[100.0]], [[0.0]])[0])
    100.0
    >>> round(float(exact_binary_cross_entropy([[0.0, 0.0]], [[1.0, 0.0]])[0]), 6)  # log 2 for each unit
    0.693147
    """
    z = to_numpy(logits).astype(np.float64)
    y = to_numpy(targets).astype(np.float64)
    if y.shape != z.shape:
        raise ValueError(f"targets of shape {y.shape} do not fit logits of shape {z.shape}: one target per unit")
    return np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z))), axis=-1)
