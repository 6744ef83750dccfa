"""Data you hold as arrays: an `.npz` file (`data=npz`), or a callable of your own (`data._target_=...`).

    python train.py data=npz data.path=my_data.npz
    python train.py data._target_=my_data.load          # my_data.py importable from where you run

Both give the arrays `x_train`, `y_train` and, optionally, `x_test`, `y_test`:
images (N, H, W) or (N, H, W, C) with pixels 0..255 (uint8 best), integer
labels 0..classes-1. A callable returns them as a dict with those keys, or as a
tuple `(x_train, y_train)` or `(x_train, y_train, x_test, y_test)`. Without a
test split, `data.test_examples` images are split off the training arrays
(stratified, seeded); validation always comes out of the training arrays
(`data.val_examples`). The number of classes is `data.num_classes`, or one more
than the largest label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_loss_recipes.data.splits import Splits, check_images_and_labels, check_same_image_size, is_streamed, take
from keras_loss_recipes.data.validation_split import split_off_validation
from keras_loss_recipes.runtime.errors import UserError

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test")


def load_npz(cfg, split_seed: int) -> Splits:
    path = Path(str(cfg.get("path") or "")).expanduser()
    if not cfg.get("path"):
        raise UserError("data.path is not set: data=npz needs data.path=/path/to/file.npz with arrays "
                        "x_train and y_train (x_test, y_test optional)")
    if not path.is_file():
        raise UserError(f"data.path={cfg.path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise UserError(f"data.path={cfg.path}: not a numpy .npz file ({err})") from None
    return splits_from_arrays(arrays, cfg, split_seed, f"data.path={cfg.path}")


def splits_from_returned(made, cfg, split_seed: int, where: str) -> Splits:
    """The splits of what a callable of the user's returned: a dict of arrays, or a tuple of 2 or 4."""
    if isinstance(made, (tuple, list)) and len(made) in (2, 4):
        made = dict(zip(REQUIRED + OPTIONAL, made))
    if not isinstance(made, dict):
        raise UserError(f"{where}: it returned {type(made).__name__}; return a dict with x_train, y_train "
                        "(x_test, y_test optional), or a tuple of 2 or 4 arrays")
    return splits_from_arrays(made, cfg, split_seed, where)


def splits_from_arrays(arrays: dict, cfg, split_seed: int, where: str) -> Splits:
    missing = [name for name in REQUIRED if name not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        missing = missing or [name for name in OPTIONAL if name not in arrays]
        raise UserError(f"{where}: no array {', '.join(missing)} (it holds: {', '.join(sorted(arrays)) or 'none'}); "
                        "needed: x_train, y_train, and x_test with y_test or neither")
    for name in ("x_train", "x_test"):
        _check_pixels(arrays.get(name), f"{where}: {name}")
    labels = [np.asarray(arrays[n]) for n in ("y_train", "y_test") if n in arrays]
    num_classes = _num_classes(cfg.get("num_classes"), labels, where)
    x_train, y_train = check_images_and_labels(arrays["x_train"], arrays["y_train"], num_classes, f"{where}: train")
    if "x_test" in arrays:
        x_test, y_test = check_images_and_labels(arrays["x_test"], arrays["y_test"], num_classes, f"{where}: test")
        check_same_image_size(x_train, x_test, where)
    else:
        test_idx, rest = split_off_validation(y_train, cfg.get("test_examples", "auto"), split_seed,
                                              f"{where} (the test split)", key="data.test_examples")
        x_test, y_test = take(x_train, test_idx), y_train[test_idx]
        x_train, y_train = take(x_train, rest), y_train[rest]
    val_idx, train_idx = split_off_validation(y_train, cfg.get("val_examples", "auto"), split_seed, where)
    return Splits(cfg.get("name") or "arrays", num_classes, take(x_train, train_idx), y_train[train_idx],
                  take(x_train, val_idx), y_train[val_idx], x_test, y_test)


def _check_pixels(images, where: str) -> None:
    if images is None or is_streamed(images):
        return
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.floating) and images.size and np.nanmax(images) <= 1.0:
        raise UserError(f"{where} holds floats in [0, 1]; the pipeline expects pixels 0..255: "
                        "save (x * 255).astype('uint8')")


def _num_classes(configured, labels: list[np.ndarray], where: str) -> int:
    if configured is not None:
        return int(configured)
    found = [int(np.max(y)) for y in labels if np.asarray(y).size]
    if not found:
        raise UserError(f"{where}: no labels")
    count = max(found) + 1
    if count < 2:
        raise UserError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return count
