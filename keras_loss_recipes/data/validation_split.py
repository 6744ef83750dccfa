"""How many training images become the validation split: `data.val_examples`.

    data.val_examples = auto   10% of the training images, at most 5,000
                               (what the full MNIST's 60,000 get), so a small
                               data set works without a setting
    data.val_examples = N      exactly N; a clear error if the source holds too few
"""
from __future__ import annotations

import logging

import numpy as np

from keras_loss_recipes.data.splits import stratified_split
from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

AUTO = "auto"
AUTO_FRACTION = 0.1
AUTO_MAX = 5000


def auto_val_examples(train_count: int) -> int:
    """What `data.val_examples=auto` takes out of `train_count` training images."""
    return max(1, min(AUTO_MAX, int(train_count * AUTO_FRACTION)))


def val_examples_for(requested, train_count: int, where: str, key: str = "data.val_examples") -> int:
    """The validation size to use; a UserError naming a size that works if `requested` cannot be met."""
    if train_count < 2:
        raise UserError(f"{where}: {train_count} training images; splitting off validation needs at least 2")
    count = auto_val_examples(train_count) if requested == AUTO else requested
    if count >= train_count:
        raise UserError(
            f"{key}={requested}: {where} holds only {train_count} training images, and "
            f"the split must leave some for training; use e.g. {key}="
            f"{auto_val_examples(train_count)} (what {key}=auto takes)"
        )
    return count


def split_off_validation(labels: np.ndarray, requested, split_seed: int, where: str, key: str = "data.val_examples"):
    """(validation indices, training indices): a stratified, seeded split of one training set; `key` is the
    setting that asked for it, named in messages."""
    count = val_examples_for(requested, len(labels), where, key)
    taken, kept = stratified_split(labels, [count, len(labels) - count], split_seed)
    if requested == AUTO:  # the sizes the split made, which the run's first line repeats
        log.info("%s=auto: %d of the %d training images in %s: %d%% (at most %d), stratified by class; %d left",
                 key, len(taken), len(labels), where, round(AUTO_FRACTION * 100), AUTO_MAX, len(kept))
    return taken, kept
