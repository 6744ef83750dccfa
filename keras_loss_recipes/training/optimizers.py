"""Optimizers named by the `optimizer=` config group (configs/optimizer/<name>.yaml)."""
from __future__ import annotations


def adam(cfg):
    import keras

    return keras.optimizers.Adam(learning_rate=cfg.learning_rate)


def sgd(cfg):
    import keras

    return keras.optimizers.SGD(
        learning_rate=cfg.learning_rate,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
    )


BUILDERS = {"adam": adam, "sgd": sgd}


def make_optimizer(cfg):
    """The optimizer `cfg.name` with its options (the config was validated by keras_loss_recipes.config.settings)."""
    return BUILDERS[cfg.name](cfg)
