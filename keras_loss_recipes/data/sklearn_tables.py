"""Two tables of feature vectors inside scikit-learn's wheel, read offline: `data=breast_cancer`, `data=wine`.

Each whole table is split into test, validation and training rows (stratified, seeded).

    breast_cancer   569 x 30 features, 2 classes (malignant, benign)
    wine            178 x 13 features, 3 classes (class_0, class_1, class_2)
"""
from __future__ import annotations

import numpy as np

from keras_loss_recipes.data.arrays import splits_from_arrays
from keras_loss_recipes.data.splits import Splits
from keras_loss_recipes.runtime.errors import UserError


def read_table(name: str) -> dict:
    """scikit-learn's table `name` as arrays: x_train (all rows), y_train, class_names."""
    try:
        from sklearn import datasets
    except ImportError:
        raise UserError(f"data={name} needs scikit-learn: pip install -r requirements.txt") from None
    table = getattr(datasets, f"load_{name}")()
    return {"x_train": table.data, "y_train": table.target, "class_names": np.asarray(table.target_names, dtype=str)}


def load_breast_cancer(cfg, split_seed: int) -> Splits:
    return splits_from_arrays(read_table("breast_cancer"), cfg, split_seed, "data=breast_cancer", None)


def load_wine(cfg, split_seed: int) -> Splits:
    return splits_from_arrays(read_table("wine"), cfg, split_seed, "data=wine", None)
