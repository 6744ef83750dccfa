"""Data you hold as arrays: an `.npz` file (`data=npz`), or a callable of your own (`data._target_=...`).

    python train.py data=npz data.path=my_data.npz
    python train.py data._target_=my_data.load          # my_data.py importable from where you run

Both give the arrays `x_train`, `y_train` and, optionally, `x_test`, `y_test`
and `class_names`: images (N, H, W) or (N, H, W, C), either pixels 0..255
(integers, or floats with some above 1) or floats already scaled to [0, 1]
(`pixel_scale`); or, with `data.inputs=features`, feature vectors (N, F), or
with `data.inputs=tokens`, integer token ids (N, T) (`inputs`); integer labels
0..classes-1; one name per class, in label order. A callable returns them as a dict with those keys, or as a tuple
`(x_train, y_train)` or `(x_train, y_train, x_test, y_test)`. Without a test
split, `data.test_examples` images are split off the training arrays
(stratified, seeded); validation always comes out of the training arrays
(`data.val_examples`). The number of classes is `data.num_classes`, or one more
than the largest label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_loss_recipes.data import inputs
from keras_loss_recipes.data.pixel_scale import on_split_scale
from keras_loss_recipes.data.splits import Splits, check_images_and_labels, check_same_image_size, checked_labels, take
from keras_loss_recipes.data.validation_split import split_off_validation
from keras_loss_recipes.runtime.errors import UserError

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test")
IMAGES = ("x_train", "x_test")
NAMES = "class_names"


def load_npz(cfg, split_seed: int) -> Splits:
    path = Path(str(cfg.path or "")).expanduser()
    if not cfg.path:
        raise UserError("data.path is not set: data=npz needs data.path=/path/to/file.npz with arrays "
                        "x_train and y_train (x_test, y_test optional)")
    if not path.is_file():
        raise UserError(f"data.path={cfg.path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: _read(archive, name, f"data.path={cfg.path}") for name in archive.files}
    except (OSError, ValueError) as err:
        raise UserError(f"data.path={cfg.path}: not a numpy .npz file ({err})") from None
    return splits_from_arrays(arrays, cfg, split_seed, f"data.path={cfg.path}", cfg.num_classes)


def _read(archive, name: str, where: str) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise
        # An array of Python objects (class names as a list of str, saved as dtype=object) is not read: loading
        # one could run code.
        raise UserError(f"{where}: array {name} holds Python objects, which are not loaded; save it as plain "
                        f"numbers or strings, e.g. np.asarray({name}, dtype=str)") from None


def splits_from_returned(made, cfg, split_seed: int, where: str) -> Splits:
    """The splits of what a callable of the user's returned: a dict of arrays, or a tuple of 2 or 4."""
    if isinstance(made, (tuple, list)) and len(made) in (2, 4):
        made = dict(zip(REQUIRED + OPTIONAL, made))
    if not isinstance(made, dict):
        raise UserError(f"{where}: it returned {type(made).__name__}; return a dict with x_train, y_train "
                        "(x_test, y_test, class_names optional), or a tuple of 2 or 4 arrays")
    return splits_from_arrays(made, cfg, split_seed, where, cfg.num_classes)


def splits_from_arrays(arrays: dict, cfg, split_seed: int, where: str, num_classes: int | None) -> Splits:
    """Train, validation and test splits of `arrays` as `cfg` (a data config) says; `num_classes` None: one more
    than the largest label."""
    missing = [name for name in REQUIRED if name not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        missing = missing or [name for name in OPTIONAL if name not in arrays]
        raise UserError(f"{where}: no array {', '.join(missing)} (it holds: {', '.join(sorted(arrays)) or 'none'}); "
                        "needed: x_train, y_train, and x_test with y_test or neither")
    kind = inputs.kind_of(cfg)
    if kind == inputs.IMAGES:
        arrays = on_split_scale(arrays, IMAGES, where)
    labels = [np.asarray(arrays[n]) for n in ("y_train", "y_test") if n in arrays]
    configured, num_classes = num_classes, _num_classes(num_classes, labels, where)
    class_names = _class_names(arrays.get(NAMES), num_classes, configured, where)
    x_train, y_train = _checked(kind, arrays["x_train"], arrays["y_train"], num_classes, f"{where}: train")
    if "x_test" in arrays:
        x_test, y_test = _checked(kind, arrays["x_test"], arrays["y_test"], num_classes, f"{where}: test")
        if kind == inputs.IMAGES:
            check_same_image_size(x_train, x_test, where)
        else:
            inputs.check_same_width(x_train, x_test, kind, where)
    else:
        test_idx, rest = split_off_validation(y_train, cfg.test_examples, split_seed,
                                              f"{where} (the test split)", key="data.test_examples")
        x_test, y_test = take(x_train, test_idx), y_train[test_idx]
        x_train, y_train = take(x_train, rest), y_train[rest]
    val_idx, train_idx = split_off_validation(y_train, cfg.val_examples, split_seed, where)
    return Splits(cfg.name, num_classes, take(x_train, train_idx), y_train[train_idx],
                  take(x_train, val_idx), y_train[val_idx], x_test, y_test, class_names, kind)


def _checked(kind: str, x, labels, num_classes: int, where: str):
    """One split's inputs and labels, checked and normalised as `kind` (data.inputs) says."""
    if kind == inputs.IMAGES:
        return check_images_and_labels(x, labels, num_classes, where)
    x = inputs.CHECKS[kind](x, where)
    return x, checked_labels(np.asarray(labels), len(x), num_classes, where)


def _class_names(given, num_classes: int, configured, where: str) -> list[str] | None:
    """The classes' names as strings, one per class in label order; None where the arrays name none."""
    if given is None:
        return None
    given = np.asarray(given)
    if given.ndim != 1:
        raise UserError(f"{where}: {NAMES} has shape {given.shape}; expected one name per class, e.g. "
                        f"np.array(['cat', 'dog'])")
    names = [name.decode() if isinstance(name, bytes) else str(name) for name in given.tolist()]
    if len(names) != num_classes:
        counted = f"data.num_classes={configured}" if configured is not None else f"labels 0..{num_classes - 1}"
        raise UserError(f"{where}: {NAMES} holds {len(names)} names for {num_classes} classes ({counted}); "
                        "give one name per class, in label order")
    return names


def _num_classes(configured, labels: list[np.ndarray], where: str) -> int:
    if configured is not None:
        return int(configured)
    rows = [np.asarray(y).shape[1] for y in labels if np.asarray(y).ndim == 2]
    if rows:  # (N, K) labels, one column per class: K classes
        return rows[0]
    found = [int(np.max(y)) for y in labels if np.asarray(y).size]
    if not found:
        raise UserError(f"{where}: no labels")
    count = max(found) + 1
    if count < 2:
        raise UserError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return count
