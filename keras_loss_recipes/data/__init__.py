"""The data: sources that all yield the same `Splits`, and one pipeline that feeds Keras.

Every data config names its loader with `_target_` (configs/data/*.yaml): the
project's (embedded, idx, tfds_source, arrays.load_npz, folder, table.load_csv,
sklearn_tables), or a callable of yours (`data._target_=my_data.load`) that returns
arrays (`arrays`). What the arrays hold, images, feature vectors or token ids, is
`data.inputs` (`inputs`).

May import `keras_loss_recipes.runtime` only; never the recipes, `training` or `reporting`.
"""
from __future__ import annotations

from keras_loss_recipes.data.arrays import splits_from_returned
from keras_loss_recipes.data.inputs import FEATURES, standardized
from keras_loss_recipes.data.splits import Splits, cap_train
from keras_loss_recipes.runtime.targets import parameters, resolve_target, target_path


def load_splits(cfg) -> Splits:
    """Load the data the config's `_target_` names, then cap the training split (class-balanced); feature
    vectors are then standardised with the figures of that training split, where `data.standardize` says so.

    The loader gets what its signature names: `cfg` (the data config), `split_seed`, or keys of the
    config; it returns `Splits`, or arrays (`arrays.splits_from_returned`)."""
    split_seed = cfg.split_seed
    target = target_path(cfg._target_, KEY)
    loader = resolve_target(target, KEY)
    supplied = {"cfg": cfg, "split_seed": split_seed, **cfg}
    made = loader(**{name: supplied[name] for name in parameters(loader) if name in supplied})
    splits = made if isinstance(made, Splits) else splits_from_returned(made, cfg, split_seed, f"{KEY}={target}")
    splits = cap_train(splits, cfg.max_train_examples, split_seed)
    if splits.inputs == FEATURES and cfg.standardize:  # features come from configs with data.standardize
        standardized(splits)
    return splits


KEY = "data._target_"


__all__ = ["Splits", "load_splits"]
