"""Keras's own zoo as a model factory: any `keras.applications` class by name (configs/model/keras_app.yaml).

    python train.py model=keras_app model.architecture=MobileNetV3Small

The application is built for the data's image size and class count, with no
pretrained weights unless `weights` names a local weights file. Images smaller
than the architecture's minimum are resized in the model (a `Resizing` layer
first), and the application sees pixels in 0..255, the range its own
preprocessing expects. Its classifier ends in a softmax, which the recipe
takes off (`models.without_head`) so that `loss=` decides the loss.
"""
from __future__ import annotations

import re
from pathlib import Path

from keras_loss_recipes.runtime.errors import UserError

# How keras.applications refuses a small input: "Input size must be at least 32x32; Received: ...".
_MIN_SIZE = re.compile(r"at least (\d+)x(\d+)")


def architectures() -> list[str]:
    import keras

    return sorted(name for name in dir(keras.applications) if name[0].isupper())


def keras_application(input_shape, num_classes: int, architecture: str, weights: str | None = None, **options):
    """`keras.applications.<architecture>` for images of `input_shape`, with `num_classes` outputs."""
    import keras

    if architecture not in architectures():
        raise UserError(f"model.architecture={architecture!r}: valid choices: {', '.join(architectures())}")
    if weights not in (None, "imagenet") and not Path(str(weights)).expanduser().is_file():
        raise UserError(f"model.weights={weights}: no such file; give a local weights file, or null for "
                        "random weights")
    build = getattr(keras.applications, architecture)
    height, width, channels = (int(n) for n in input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    try:
        application = build(input_shape=(height, width, channels), classes=num_classes, weights=weights, **options)
        x = inputs
    except ValueError as err:  # smaller than the architecture's minimum: resize up to it, in the model
        found = _MIN_SIZE.search(str(err))
        if not found:
            raise
        size = max(height, int(found.group(1))), max(width, int(found.group(2)))
        application = build(input_shape=(*size, channels), classes=num_classes, weights=weights, **options)
        x = keras.layers.Resizing(*size, name="resize_to_minimum")(inputs)
    x = keras.layers.Rescaling(255.0, name="to_pixel_range")(x)
    return keras.Model(inputs, application(x), name=architecture)
