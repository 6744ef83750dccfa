"""The one tf.data pipeline every source goes through."""
from __future__ import annotations

import numpy as np


def scale_images(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images_uint8.astype(np.float32) / np.float32(255.0)


def make_dataset(images_uint8, labels, batch_size: int, shuffle: bool, seed: int):
    """Batched, prefetched tf.data.Dataset; reshuffled every epoch when `shuffle`.

    `labels` arrive already encoded (integer ids or one-hot) by the loss setup,
    so the formulation, not the user, decides the label format.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((scale_images(images_uint8), labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
