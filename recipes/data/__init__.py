"""The data layer: sources that all yield the same `Splits`, and one pipeline that feeds them to Keras.

    data.source = embedded | idx | tfds | npz | folder   (chosen by the `data=` config group)
    data._target_ = my_data.load                           (a callable of yours that returns arrays)

May import `recipes.runtime` only; never the recipes, `training` or `reporting`.
"""
from __future__ import annotations

from recipes.data.splits import Splits, cap_train
from recipes.runtime.errors import UserError


def _embedded(cfg, split_seed: int) -> Splits:
    from recipes.data.embedded import load_embedded

    return load_embedded(cfg.val_examples, cfg.test_examples, split_seed)


def _idx(cfg, split_seed: int) -> Splits:
    from recipes.data.idx import load_idx

    return load_idx(cfg, split_seed)


def _tfds(cfg, split_seed: int) -> Splits:
    from recipes.data.tfds_source import load_tfds

    return load_tfds(cfg, split_seed)


def _npz(cfg, split_seed: int) -> Splits:
    from recipes.data.arrays import load_npz

    return load_npz(cfg, split_seed)


def _folder(cfg, split_seed: int) -> Splits:
    from recipes.data.folder import load_folder

    return load_folder(cfg, split_seed)


LOADERS = {"embedded": _embedded, "idx": _idx, "tfds": _tfds, "npz": _npz, "folder": _folder}
SOURCES = tuple(LOADERS)


def load_splits(cfg) -> Splits:
    """Load the configured source (a callable of the user's where `data._target_` names one), then cap the
    training split (class-balanced)."""
    split_seed = int(cfg.get("split_seed", 0))
    if cfg.get("_target_"):
        from recipes.data.arrays import load_callable

        splits = load_callable(cfg, split_seed)
    elif cfg.source not in LOADERS:
        raise UserError(f"data.source={cfg.source!r}: valid choices: {', '.join(SOURCES)}")
    else:
        splits = LOADERS[cfg.source](cfg, split_seed)
    return cap_train(splits, cfg.get("max_train_examples"), split_seed)


__all__ = ["SOURCES", "Splits", "load_splits"]
