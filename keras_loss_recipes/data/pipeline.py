"""The one input pipeline every source goes through: tf.data on TensorFlow, numpy elsewhere."""
from __future__ import annotations

import functools

import numpy as np

from keras_loss_recipes.data.inputs import FEATURES, IMAGES, TOKENS
from keras_loss_recipes.data.pixel_scale import pixels_to_unit
from keras_loss_recipes.data.splits import is_streamed


def scale_images(images) -> np.ndarray:
    """A split's images as the model takes them, float32 in [0, 1] (images streamed from files are read first:
    all of them). Integer pixels 0..255 are divided by 255 here; float images are in [0, 1] already (the
    loaders put them there: `pixel_scale`), so they are only cast: scaled once, whichever the source."""
    if is_streamed(images):
        images = images[np.arange(len(images))]
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32, copy=False)
    return pixels_to_unit(images)


def model_inputs(x, inputs: str = IMAGES) -> np.ndarray:
    """A split's inputs as the model takes them: images scaled (`scale_images`), feature vectors as float32,
    token ids as int32 (never divided by 255); `inputs` is the splits' `data.inputs`."""
    if inputs == TOKENS:
        return np.asarray(x).astype(np.int32, copy=False)
    if inputs == FEATURES:
        return np.asarray(x).astype(np.float32, copy=False)
    return scale_images(x)


def make_dataset(images, labels, batch_size: int, shuffle: bool, seed: int, replicas: int = 1,
                 shard: tuple[int, int] = (0, 1), inputs: str = IMAGES):
    """Batches for `model.fit`, reshuffled every epoch when `shuffle`.

    `labels` arrive already encoded (integer ids or one-hot) by the loss setup,
    so the formulation, not the user, decides the label format. On the
    TensorFlow backend this is a prefetched tf.data.Dataset; on JAX and PyTorch
    a `keras.utils.PyDataset` over numpy arrays, so they need no TensorFlow.
    With `replicas` > 1 (JAX's DataParallel splits every batch evenly over its
    devices) the last batch is cut to a multiple of `replicas`, dropping at
    most `replicas - 1` examples. With `shard` (index, count) of several processes
    training one model, every process draws the same orders and batches of
    `batch_size` (the global batch) and feeds its own part of each: the index-th
    of `count` equal slices. Images streamed from their files (a folder) go through
    the `PyDataset` on every backend, each batch read and scaled when it is taken.
    `inputs`: what `images` hold (`model_inputs`): images, features or tokens.
    """
    import keras

    streamed = is_streamed(images)
    if streamed or keras.backend.backend() != "tensorflow":
        return _array_batches_class()(images if streamed else model_inputs(images, inputs), labels, batch_size,
                                      shuffle, seed, replicas, shard, scale=scale_images if streamed else None)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((model_inputs(images, inputs), labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fast_forward(dataset, epochs: int) -> None:
    """Move a training dataset's shuffling on by `epochs` epochs, as if it had been iterated that often.

    A run resumed at epoch k starts with a fresh dataset, whose next order is
    the first epoch's; after this, it draws epoch k's order, as the uninterrupted
    run does, so both see the same batches. tf.data draws a new order each time
    an iterator is made (the shuffle's seed generator moves on), so making and
    dropping the iterators Keras would have made does it; the numpy batches draw
    their orders from their own generator, one per epoch.
    """
    if hasattr(dataset, "fast_forward"):
        dataset.fast_forward(epochs)
        return
    for _ in range(epochs * TF_ITERATORS_PER_EPOCH):
        iter(dataset)


def batch_spec(dataset) -> tuple:
    """(images, labels) of a training dataset's batches as Keras symbolic tensors: shapes and dtypes, read
    without drawing a batch order (a tf.data iterator would move the shuffling on)."""
    import keras

    if hasattr(dataset, "fast_forward"):
        arrays = dataset[0]
        return tuple(keras.KerasTensor((None, *a.shape[1:]), dtype=str(a.dtype)) for a in arrays)
    return tuple(keras.KerasTensor(tuple(spec.shape), dtype=spec.dtype.name) for spec in dataset.element_spec)


def batch_of(dataset, epoch: int, step: int):
    """The batch that training step `step` of epoch `epoch` (both 1-based) took from a training dataset made
    as `dataset` was: drawn again, from `dataset` fresh, in the same seeded order (for a diagnosis)."""
    fast_forward(dataset, epoch - 1)
    if hasattr(dataset, "fast_forward"):
        return dataset[step - 1]
    for index, batch in enumerate(dataset):  # tf.data: this iterator draws the epoch's order, as fit's did
        if index == step - 1:
            return batch
    raise IndexError(f"epoch {epoch} has no step {step}")


# Keras 3's TensorFlow fit makes two iterators of a training dataset of known length per
# epoch: one when the epoch starts and one, unused, when the epoch before has ended.
# Measured; tests/test_exact_resume.py fails if a Keras version changes it.
TF_ITERATORS_PER_EPOCH = 2


@functools.cache
def _array_batches_class():
    # Built on first use: importing Keras at module import would fix its backend too early.
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Numpy batches in a seeded order that changes every epoch."""

        def __init__(self, images, labels, batch_size: int, shuffle: bool, seed: int, replicas: int = 1,
                     shard: tuple[int, int] = (0, 1), scale=None):
            super().__init__()
            self.shard, self.scale = shard, scale  # scale: applied to each batch as it is read
            self.images, self.labels = images, np.asarray(labels)
            self.batch_size, self.shuffle = batch_size, shuffle
            self.used = len(self.labels) - (len(self.labels) % batch_size) % replicas
            self._rng = np.random.default_rng(seed)
            self._order = self._rng.permutation(len(self.labels)) if shuffle else np.arange(len(self.labels))

        def __len__(self) -> int:
            return -(-self.used // self.batch_size)

        def __getitem__(self, index: int):
            rows = self._order[index * self.batch_size:min((index + 1) * self.batch_size, self.used)]
            part, parts = self.shard
            rows = rows[part * len(rows) // parts:(part + 1) * len(rows) // parts]
            images = self.images[rows]
            return (self.scale(images) if self.scale else images), self.labels[rows]

        def on_epoch_end(self):
            if self.shuffle:
                self._order = self._rng.permutation(len(self.labels))

        def fast_forward(self, epochs: int) -> None:
            for _ in range(epochs):
                self.on_epoch_end()

    return ArrayBatches
