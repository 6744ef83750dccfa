"""Model bodies. Each maps an image batch to logits; the loss setup adds any head.

    cnn: the keras.io "simple MNIST convnet" (34,826 parameters)
    mlp: Flatten -> Dense(128, relu) -> Dense(classes)
"""
from __future__ import annotations

from recipes.runtime.errors import UserError


def logits_layer(num_classes: int, head_init_std: float | None):
    """The last Dense: plain logits. `head_init_std` (a stress knob) sets its init scale."""
    from keras import initializers, layers

    init = "glorot_uniform" if head_init_std is None else initializers.RandomNormal(stddev=head_init_std)
    return layers.Dense(num_classes, kernel_initializer=init, name="logits")


def cnn(inputs, num_classes: int, cfg, head_init_std=None):
    from keras import layers

    x = layers.Conv2D(32, kernel_size=(3, 3), activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(64, kernel_size=(3, 3), activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(float(cfg.get("dropout", 0.5)))(x)
    return logits_layer(num_classes, head_init_std)(x)


def mlp(inputs, num_classes: int, cfg, head_init_std=None):
    from keras import layers

    x = layers.Flatten()(inputs)
    x = layers.Dense(int(cfg.get("hidden_units", 128)), activation="relu")(x)
    return logits_layer(num_classes, head_init_std)(x)


BUILDERS = {"cnn": cnn, "mlp": mlp}


def build_logits(cfg, inputs, num_classes: int, head_init_std: float | None = None):
    """The logits tensor of model `cfg.name` applied to `inputs`."""
    try:
        builder = BUILDERS[cfg.name]
    except KeyError:
        raise UserError(f"model.name={cfg.name!r}: valid choices: {', '.join(BUILDERS)}") from None
    return builder(inputs, num_classes, cfg, head_init_std)
