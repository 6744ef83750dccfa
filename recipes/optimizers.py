"""Optimizers named by the `optimizer=` config group."""
from __future__ import annotations


def make_optimizer(cfg):
    import keras

    if cfg.name == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(
            learning_rate=cfg.learning_rate,
            momentum=cfg.get("momentum", 0.0),
            nesterov=bool(cfg.get("nesterov", False)),
        )
    raise ValueError(f"optimizer.name={cfg.name!r}")  # settings.validate catches this first
