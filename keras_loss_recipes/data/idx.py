"""Read MNIST-format IDX files (the classic `train-images-idx3-ubyte` and friends): `data=idx`.

Parsed with numpy alone so anyone holding the four classic files (MNIST,
Fashion-MNIST, KMNIST all ship them) can train offline. Format: a 4-byte
magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the data. Only unsigned bytes (type
0x08) occur in these data sets.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from keras_loss_recipes.data.splits import Splits, check_images_and_labels, check_same_image_size
from keras_loss_recipes.data.validation_split import split_off_validation
from keras_loss_recipes.runtime.errors import UserError

UBYTE = 0x08
TYPE_NAMES = {0x08: "ubyte", 0x09: "byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}


def parse_idx(blob: bytes, expected_ndim: int, where: str) -> np.ndarray:
    """Decode one IDX file's bytes into a uint8 array, checking every header field."""
    if len(blob) < 4:
        raise UserError(f"{where}: {len(blob)} bytes is too short for an IDX header")
    zero1, zero2, type_code, ndim = blob[0], blob[1], blob[2], blob[3]
    if zero1 or zero2:
        raise UserError(
            f"{where}: bad magic number 0x{blob[:4].hex()}; an IDX file starts with two zero bytes"
        )
    if type_code != UBYTE:
        name = TYPE_NAMES.get(type_code, f"unknown type 0x{type_code:02x}")
        raise UserError(f"{where}: data type {name}; only ubyte (0x08) IDX files are supported")
    if ndim != expected_ndim:
        raise UserError(
            f"{where}: {ndim} dimensions in the header; expected {expected_ndim} "
            f"({'images' if expected_ndim == 3 else 'labels'} file)"
        )
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise UserError(f"{where}: truncated header ({len(blob)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    got = len(blob) - header
    if got != expected:
        state = "truncated" if got < expected else "has trailing bytes"
        raise UserError(
            f"{where}: {state}: header says {dims} = {expected} values, file holds {got}"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_file(path: Path, expected_ndim: int) -> np.ndarray:
    try:
        raw = path.read_bytes()
        blob = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"{path}: cannot read ({err})") from None
    return parse_idx(blob, expected_ndim, str(path))


def find_file(directory: Path, stem: str) -> Path:
    """`stem` or `stem.gz` inside `directory`."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(f"data.dir={directory}: no file {stem} or {stem}.gz there")


def check_directory(directory) -> Path:
    if directory in (None, ""):
        raise UserError(
            "data.dir is not set: data=idx needs data.dir=/path/to/folder with the four "
            "*-idx3-ubyte / *-idx1-ubyte files (optionally .gz)"
        )
    path = Path(str(directory)).expanduser()
    if not path.is_dir():
        raise UserError(f"data.dir={directory}: directory does not exist")
    return path


def load_pair(directory: Path, images_stem: str, labels_stem: str, num_classes: int):
    images = read_idx_file(find_file(directory, images_stem), expected_ndim=3)
    labels = read_idx_file(find_file(directory, labels_stem), expected_ndim=1)
    return check_images_and_labels(images, labels, num_classes, f"{directory}/{images_stem}")


def load_idx(cfg, split_seed: int) -> Splits:
    """Train/test from the IDX files; validation is a stratified slice of train."""
    directory = check_directory(cfg.dir)
    x_train, y_train = load_pair(directory, cfg.files.train_images, cfg.files.train_labels, cfg.num_classes)
    x_test, y_test = load_pair(directory, cfg.files.test_images, cfg.files.test_labels, cfg.num_classes)
    check_same_image_size(x_train, x_test, f"data.dir={directory}")
    val_idx, train_idx = split_off_validation(y_train, cfg.val_examples, split_seed, f"{directory}/{cfg.files.train_images}")
    return Splits(
        cfg.name, cfg.num_classes,
        x_train[train_idx], y_train[train_idx],
        x_train[val_idx], y_train[val_idx],
        x_test, y_test,
    )
