"""Data splits held in memory, and seeded class-balanced splitting and capping."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_loss_recipes.data.inputs import IMAGES
from keras_loss_recipes.runtime.errors import UserError

@dataclass
class Splits:
    """Inputs and integer labels per split: class ids (N,), or (N, K) of 0/1 for K labels at once. Images
    (N, H, W, C) are integer pixels 0..255 (uint8 from the built-in sources) or float32 already in [0, 1]
    (arrays of floats: `pixel_scale`); feature vectors (N, F) float32, token sequences (N, T) int32 ids
    (`inputs`: which of the three)."""

    name: str
    num_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None  # where the source names its classes (a folder per class)
    inputs: str = IMAGES  # what x_* hold: images, features or tokens (data/inputs.py)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def classes(self, shown: int = 3) -> str:
        """How many classes and the first few names (the labels where the source names none): '10 (0, 1, 2, ..., 9)'."""
        names = [str(name) for name in self.class_names or range(self.num_classes)]
        if len(names) > shown + 2:
            names = [*names[:shown], "...", names[-1]]
        return f"{self.num_classes} ({', '.join(names)})"


def is_streamed(images) -> bool:
    """Images that stay in their files until indexed (`folder.ImageFiles`), not an array."""
    return hasattr(images, "subset")


def take(images, rows):
    """The images at `rows`: an array's rows, or a streamed source's part, still unread."""
    return images.subset(rows) if is_streamed(images) else images[rows]


def check_images_and_labels(images, labels, num_classes: int, where: str):
    """Validate and normalise one split: images to (N, H, W, C), labels to int64 (streamed images: their labels)."""
    if is_streamed(images):
        return images, checked_labels(np.asarray(labels), len(images), num_classes, where)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or not all(images.shape[1:]):
        hint = "; rows of numbers are feature vectors: set data.inputs=features (or tokens)" if images.ndim == 2 else ""
        raise UserError(
            f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C){hint}"
        )
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise UserError(f"{where}: images of dtype {images.dtype}; expected pixels 0..255 (uint8)")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        bad = int(np.sum(~np.isfinite(images).all(axis=(1, 2, 3))))
        raise UserError(f"{where}: {bad} images contain NaN or inf values")
    return images, checked_labels(labels, len(images), num_classes, where)


def check_same_image_size(train, test, where: str) -> None:
    """Training and test images of one size: the model is built for one."""
    if test.shape[1:] != train.shape[1:]:
        raise UserError(f"{where}: test images are {test.shape[1:]}, training images {train.shape[1:]}; "
                        "both must hold images of one size")


def checked_labels(labels: np.ndarray, count: int, num_classes: int, where: str) -> np.ndarray:
    if labels.ndim == 2 and len(labels) == count:  # several labels per example (task=multilabel checks their values)
        return _checked_label_rows(labels, num_classes, where)
    if labels.ndim != 1 or len(labels) != count:
        raise UserError(
            f"{where}: {count} images but labels of shape {labels.shape}; "
            "expected one integer label per image"
        )
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{where}: labels range {labels.min()}..{labels.max()}; "
            f"expected 0..{num_classes - 1} for {num_classes} classes"
        )
    return labels


def _checked_label_rows(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """(N, K) labels, one column per label: K columns for K classes, whole numbers (int64)."""
    if labels.shape[1] != num_classes:
        raise UserError(f"{where}: labels of shape {labels.shape}, {labels.shape[1]} per example; expected "
                        f"{num_classes}, one per class")
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise UserError(f"{where}: labels of shape {labels.shape} hold values that are not whole numbers; "
                        "expected 0/1, one per class")
    return labels.astype(np.int64)


def strata(labels: np.ndarray) -> np.ndarray:
    """What splitting balances: the class of each example, or, for (N, K) labels, its combination of labels
    (each distinct row one stratum), so every split holds the combinations in the same ratio."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1)
    return labels


def stratified_split(labels: np.ndarray, counts: list[int], seed: int) -> list[np.ndarray]:
    """Split indices into parts of the given total sizes, each part class-balanced.

    Every class is shuffled with `seed` and dealt out in proportion, so the
    parts are disjoint and each holds the classes in the same ratio as the whole.
    Each part but the last gets exactly its count; the last takes what is left.
    """
    rng = np.random.default_rng(seed)
    labels = strata(labels)
    total = len(labels)
    if sum(counts[:-1]) >= total:
        raise UserError(f"cannot take {counts[:-1]} examples out of {total}")
    classes, class_sizes = np.unique(labels, return_counts=True)
    takes = [apportion(count, class_sizes) for count in counts[:-1]]
    parts: list[list[np.ndarray]] = [[] for _ in counts]
    for c, cls in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for k, take in enumerate(takes):
            parts[k].append(idx[start : start + take[c]])
            start += take[c]
        parts[-1].append(idx[start:])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def apportion(count: int, class_sizes: np.ndarray) -> np.ndarray:
    """`count` examples dealt over classes of `class_sizes` in proportion, to exactly `count`: every class
    the whole part of its share, then one more to each of the classes with the largest fractions left
    (rounding each share on its own can miss the total: 161 asked, 160 taken)."""
    shares = count * class_sizes.astype(np.int64)
    takes, fractions = shares // class_sizes.sum(), shares % class_sizes.sum()
    takes[np.argsort(-fractions, kind="stable")[: count - takes.sum()]] += 1
    return takes


def balanced_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most `limit` examples with the classes as balanced as possible."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    labels = strata(labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    # Deal round-robin over the shuffled classes: balanced, and exact in total.
    chosen = []
    depth = 0
    while len(chosen) < limit:
        for idx in by_class:
            if depth < len(idx) and len(chosen) < limit:
                chosen.append(idx[depth])
        depth += 1
    return rng.permutation(np.asarray(chosen))


def cap_train(splits: Splits, limit: int | None, seed: int) -> Splits:
    keep = balanced_subset(splits.y_train, limit, seed)
    splits.x_train, splits.y_train = take(splits.x_train, keep), splits.y_train[keep]
    return splits
