"""MNIST-style data sets through TensorFlow Datasets (mnist, fashion_mnist, kmnist, emnist).

Offline machines are the common case on clusters, so a missing data set is
reported at once with how to provide it, instead of minutes of download retries
ending in a stack trace.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

import numpy as np

from keras_loss_recipes.data.splits import Splits, check_images_and_labels
from keras_loss_recipes.data.validation_split import split_off_validation
from keras_loss_recipes.runtime.errors import UserError

# TFDS fetches prepared data and most source files from Google Cloud Storage.
DOWNLOAD_HOST = "storage.googleapis.com"
DOWNLOAD_MODES = ("auto", "true", "false")  # data.download


def default_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def host_resolves(host: str = DOWNLOAD_HOST) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def how_to_provide(name: str, data_dir: Path) -> str:
    return (
        f"Provide it: on a connected machine run `tfds build {name} --data_dir DIR`, copy DIR "
        f"here and pass data.data_dir=DIR (looked in {data_dir}); or train on the classic "
        "IDX files with data=idx data.dir=/path/to/idx-files"
    )


def ensure_prepared(builder, name: str, data_dir: Path, download) -> None:
    """Download and prepare `builder` if needed and allowed; a clear UserError if not."""
    if builder.is_prepared():
        return
    missing = f"TFDS data set {name!r} is not in {data_dir}"
    mode = str(download).lower()
    if mode not in DOWNLOAD_MODES:
        raise UserError(f"data.download={download!r}: valid choices: {', '.join(DOWNLOAD_MODES)}")
    if mode == "false":
        raise UserError(f"{missing} and data.download=false. {how_to_provide(name, data_dir)}")
    if mode == "auto" and not host_resolves():
        raise UserError(
            f"{missing} and cannot be downloaded ({DOWNLOAD_HOST} is unreachable). "
            f"{how_to_provide(name, data_dir)}"
        )
    print(f"Downloading {name} into {data_dir} (TFDS)...", flush=True)
    try:
        builder.download_and_prepare()
    except Exception as err:  # network, disk, checksum: all end the same way for the user
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{missing} and the download failed: {first_line[:300]}. "
                        f"{how_to_provide(name, data_dir)}") from None


def split_to_numpy(builder, split: str):
    # Read in large batches and stack: simpler than batch_size=-1, which
    # materialises the split as one tensor and crashes on mocked data.
    ds = builder.as_dataset(split=split, as_supervised=True).batch(10_000)
    parts = [(np.asarray(x), np.asarray(y)) for x, y in ds.as_numpy_iterator()]
    if not parts:
        raise UserError(f"TFDS split {split!r} of {builder.name!r} is empty")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class _MissingVariantFilter(logging.Filter):
    """TFDS warns that a data set's version folder "has no dataset_info.json" when the folder does not
    exist at all; `ensure_prepared` then says what is missing and how to provide it, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _no_missing_variant_warning():
    from absl import logging as absl_logging

    absl_log = absl_logging.get_absl_logger()  # TFDS logs through absl's own logger object
    quiet = _MissingVariantFilter()
    absl_log.addFilter(quiet)
    try:
        yield
    finally:
        absl_log.removeFilter(quiet)


def load_tfds(cfg, split_seed: int) -> Splits:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(
            f"data={cfg.name} needs tensorflow-datasets and TensorFlow: pip install -r requirements.txt"
        ) from None
    data_dir = Path(str(cfg.data_dir)).expanduser() if cfg.data_dir else default_data_dir()
    with _no_missing_variant_warning():
        try:
            builder = tfds.builder(cfg.tfds_name, data_dir=str(data_dir))
        except Exception as err:
            raise UserError(f"data.tfds_name={cfg.tfds_name!r}: not a TFDS data set ({err})") from None
        ensure_prepared(builder, cfg.tfds_name, data_dir, cfg.download)

    offset = cfg.label_offset
    loaded = {}
    for split in ("train", "test"):
        images, labels = split_to_numpy(builder, split)
        loaded[split] = check_images_and_labels(
            images, labels - offset, cfg.num_classes, f"{cfg.tfds_name}[{split}]"
        )
    (x_train, y_train), (x_test, y_test) = loaded["train"], loaded["test"]
    val_idx, train_idx = split_off_validation(y_train, cfg.val_examples, split_seed, f"{cfg.tfds_name}[train]")
    return Splits(
        cfg.name, cfg.num_classes,
        x_train[train_idx], y_train[train_idx],
        x_train[val_idx], y_train[val_idx],
        x_test, y_test,
    )
