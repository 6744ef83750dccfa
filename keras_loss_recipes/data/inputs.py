"""What the arrays hold, `data.inputs`: images, feature vectors or token sequences, so that integers are never
mistaken for pixels.

    images     (N, H, W) or (N, H, W, C): pixels 0..255, or floats in [0, 1] (`pixel_scale`); the default
    features   (N, F) numbers, fed as float32; never pixel-scaled; optionally standardised (`data.standardize`)
    tokens     (N, T) integer ids 0..V-1, fed as int32 (an embedding's input); V = the largest id + 1

Each split is checked here (`checked_features`, `checked_tokens`); standardisation is fitted on the
training split only and applied to every split (`standardized`).
"""
from __future__ import annotations

import logging

import numpy as np

from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

IMAGES, FEATURES, TOKENS = "images", "features", "tokens"
KINDS = (IMAGES, FEATURES, TOKENS)
KEY = "data.inputs"
SHAPES = {IMAGES: "(N, H, W) or (N, H, W, C)", FEATURES: "(N, F)", TOKENS: "(N, T)"}
MAX_TOKEN_ID = np.iinfo(np.int32).max  # fed as int32
# data.standardize's default (for a callable of yours; the data configs write it too): on. Tabular columns
# come in their own units (breast_cancer: areas in the hundreds beside smoothness near 0.1), which leave an
# mlp's first layer dominated by the largest; standardising costs nothing where they are on one scale.
STANDARDIZE = True


def kind_of(cfg) -> str:
    """What a data config's source holds: its `data.inputs`; images for the image sources (tfds, idx, folder,
    the embedded digits), whose configs have no such key."""
    kind = cfg.inputs if "inputs" in cfg else IMAGES
    if kind not in KINDS:
        raise UserError(f"{KEY}={kind!r}: valid choices: {', '.join(KINDS)}")
    return kind


def _rows(x, kind: str, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not x.shape[1]:
        raise UserError(f"{where}: {KEY}={kind} takes arrays of shape {SHAPES[kind]}; this one has shape "
                        f"{x.shape}" + (f" (images? set {KEY}={IMAGES})" if x.ndim in (3, 4) else ""))
    return x


def checked_features(x, where: str) -> np.ndarray:
    """One split's feature vectors as float32 (N, F); a UserError for non-numbers, NaN or inf."""
    x = _rows(x, FEATURES, where)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise UserError(f"{where}: features of dtype {x.dtype}; expected numbers (floats or integers)")
    finite = np.isfinite(x)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise UserError(f"{where}: row {row}, feature {column} holds {x[row, column]}; features must be finite: "
                        f"drop or fill the {int(np.sum(~finite.all(axis=1)))} row(s) with NaN or inf")
    return x.astype(np.float32)


def checked_tokens(x, where: str) -> np.ndarray:
    """One split's token sequences as int32 ids (N, T); a UserError for ids that are not integers or negative."""
    x = _rows(x, TOKENS, where)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise UserError(f"{where}: token ids of dtype {x.dtype}; expected integer ids 0..V-1: save them as "
                        "integers, e.g. x.astype(np.int32)")
    if x.size and (x.min() < 0 or x.max() > MAX_TOKEN_ID):
        bad = x.min() if x.min() < 0 else x.max()
        row = int(np.argmax((x == bad).any(axis=1)))
        raise UserError(f"{where}: row {row} holds token id {int(bad)}; ids must lie in 0..{MAX_TOKEN_ID} "
                        "(0..V-1 for a vocabulary of V)")
    return x.astype(np.int32)


CHECKS = {FEATURES: checked_features, TOKENS: checked_tokens}


def check_same_width(train: np.ndarray, other: np.ndarray, kind: str, where: str) -> None:
    """Every split of one width: the model is built for one."""
    if other.shape[1:] != train.shape[1:]:
        what = "features" if kind == FEATURES else "tokens per sequence"
        raise UserError(f"{where}: test rows hold {other.shape[1]} {what}, training rows {train.shape[1]}; "
                        "every split must hold the same number")


def standardized(splits) -> None:
    """Features standardised in place: each column less the training split's mean, over its standard
    deviation there (a constant column: over 1); the validation and test splits with the same figures."""
    train = splits.x_train.astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    for name in ("x_train", "x_val", "x_test"):
        setattr(splits, name, ((getattr(splits, name).astype(np.float64) - mean) / std).astype(np.float32))
    log.info("data.standardize=true: %d features standardised with the mean and standard deviation of the %d "
             "training rows", len(mean), len(train))


def vocabulary_size(splits) -> int:
    """The token ids' vocabulary: one more than the largest id in any split."""
    return 1 + max(int(x.max()) for x in (splits.x_train, splits.x_val, splits.x_test) if x.size)


def input_dtype(kind: str) -> str | None:
    """The model input's dtype for `kind`: int32 for token ids; None (Keras's float) otherwise."""
    return "int32" if kind == TOKENS else None
