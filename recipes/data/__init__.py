"""Data sources. Every source yields the same `Splits`; one pipeline feeds them to Keras.

    data.source = embedded | idx | tfds   (chosen by the `data=` config group)
"""
from __future__ import annotations

from recipes.data.splits import Splits, cap_train
from recipes.errors import UserError

SOURCES = ("embedded", "idx", "tfds")


def load_splits(cfg) -> Splits:
    """Load the configured source, then cap the training split (class-balanced)."""
    source = cfg.source
    split_seed = int(cfg.get("split_seed", 0))
    if source == "embedded":
        from recipes.data.embedded import load_embedded

        splits = load_embedded(cfg.val_examples, cfg.test_examples, split_seed)
    elif source == "idx":
        from recipes.data.idx import load_idx

        splits = load_idx(cfg, split_seed)
    elif source == "tfds":
        from recipes.data.tfds_source import load_tfds

        splits = load_tfds(cfg, split_seed)
    else:
        raise UserError(f"data.source={source!r}: valid choices: {', '.join(SOURCES)}")
    return cap_train(splits, cfg.get("max_train_examples"), split_seed)


__all__ = ["SOURCES", "Splits", "load_splits"]
