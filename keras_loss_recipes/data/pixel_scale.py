"""The scale images are on, and the one conversion that puts arrays of yours on the scale the splits hold.

Splits hold images either as integer pixels 0..255 (what every built-in source
reads) or as float32 already in [0, 1]; `pipeline.scale_images` divides the
first by 255 and only casts the second, so every image is scaled exactly once.
Arrays of yours (`data=npz`, a data callable) are read as:

    integers 0..255                         pixels
    integers below 0 or above 255           an error naming the array, the value and what to do
    floats, none above 1 (a max of 1.0 too)  already scaled to [0, 1]: kept
    floats in [0, 255], some above 1        pixels: divided by 255 here, as integer pixels are later
    floats below 0 or above 255, NaN, inf   an error naming the array, the value and what to do
"""
from __future__ import annotations

import logging

import numpy as np

from keras_loss_recipes.data.splits import is_streamed
from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

PIXEL_MAX = 255
UNIT = "floats in [0, 1]"
PIXELS = "floats in [0, 255]"
HOW_READ = {UNIT: "taken as already scaled (not divided by 255)",
            PIXELS: "some above 1, so taken as pixels and divided by 255"}


def pixels_to_unit(images) -> np.ndarray:
    """Pixels 0..255 (integers or floats) as float32 in [0, 1]."""
    return np.asarray(images).astype(np.float32) / np.float32(PIXEL_MAX)


def _rows(images, kind) -> np.ndarray | None:
    """The images of numpy `kind` (np.floating, np.integer) one row each; None for any other array: not of
    that kind, streamed, or not images at all (check_images_and_labels says which)."""
    if images is None or is_streamed(images):
        return None
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, kind) or not images.size or not images.ndim:
        return None
    return images.reshape(len(images), -1)


def _outside_pixels(rows: np.ndarray) -> tuple[int, float] | None:
    """(the first image, its value) below 0 or above PIXEL_MAX, or None where every value lies in range."""
    low, high = rows.min(), rows.max()
    if low >= 0 and high <= PIXEL_MAX:
        return None
    value = low if low < 0 else high
    return int(np.argmax((rows == value).any(axis=1))), value


def float_scale(images, name: str, where: str) -> str | None:
    """UNIT or PIXELS for an array of float images, None for any other; a UserError for values no image holds."""
    rows = _rows(images, np.floating)
    if rows is None:
        return None
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        image = int(np.argmin(finite))
        value = rows[image][~np.isfinite(rows[image])][0]
        raise UserError(f"{where}: {name}[{image}] holds {value}; images must be finite numbers: drop or repair "
                        f"the {int(np.sum(~finite))} image(s) that are not")
    outside = _outside_pixels(rows)
    if outside is not None:
        image, value = outside
        raise UserError(f"{where}: {name}[{image}] holds {float(value):g}; float images must lie in [0, 1] (already "
                        f"scaled) or [0, {PIXEL_MAX}] (pixels): rescale them, e.g. x = (x - x.min()) / (x.max() - x.min())")
    return UNIT if rows.max() <= 1 else PIXELS


def check_integer_pixels(images, name: str, where: str) -> None:
    """Integer images must be pixels 0..255: a UserError naming the first value outside (uint16, negatives)."""
    rows = _rows(images, np.integer)
    outside = None if rows is None else _outside_pixels(rows)
    if outside is not None:
        image, value = outside
        raise UserError(f"{where}: {name}[{image}] holds {int(value)}; integer images must be pixels "
                        f"0..{PIXEL_MAX}: rescale them (e.g. x * 255 // x.max()) and save them as uint8")


def on_split_scale(arrays: dict, names: tuple[str, ...], where: str) -> dict:
    """`arrays` with the float images among `names` as float32 in [0, 1]; says once how it read them.

    One scale for all the float arrays: a test set in [0, 1] beside training pixels
    is a mistake to name, not a guess to make."""
    for name in names:
        check_integer_pixels(arrays.get(name), name, where)
    scales = {name: float_scale(arrays.get(name), name, where) for name in names}
    floats = {name: scale for name, scale in scales.items() if scale}
    if not floats:
        return arrays
    if len(set(floats.values())) > 1:
        described = "; ".join(f"{name} holds {scale}{' (max above 1)' if scale == PIXELS else ''}"
                              for name, scale in floats.items())
        raise UserError(f"{where}: {described}; give all images on one scale: all in [0, 1], or all pixels 0..255")
    scale = next(iter(floats.values()))
    log.info("%s: %s hold%s %s: %s", where, ", ".join(floats), "s" if len(floats) == 1 else "", scale,
             HOW_READ[scale])
    convert = pixels_to_unit if scale == PIXELS else (lambda x: np.asarray(x).astype(np.float32))
    return {**arrays, **{name: convert(arrays[name]) for name in floats}}
