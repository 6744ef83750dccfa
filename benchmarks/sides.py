"""The sides the benchmark compares, each fit in this process and timed by one callback.

    plain           the keras.io convnet as a user writes it (numpy arrays, one-hot labels)
    plain_tfdata    the same, fed the framework's input pipeline with integer labels
    framework_off   the framework's training recipe, loss=sparse_from_logits, telemetry=off
    framework_on    the same with the stability telemetry (the default)

Every side trains the same model on the same images with the same batch and
validates on the same examples. Each fit returns per-epoch figures: `wall_s`,
the whole epoch as a user waits for it (training, validation and every
epoch-end callback: for the framework its backups, saved models, CSV, TensorBoard
and stability writes), and `step_s`, its training part only.
"""
from __future__ import annotations

import tempfile

from benchmarks.plain_convnet import fit_plain

SIDES = ("plain", "plain_tfdata", "framework_off", "framework_on")
FRAMEWORK_LOSS = "sparse_from_logits"


def epochs_of(timer) -> dict:
    return {"wall_s": list(timer.epoch_wall_seconds), "step_s": list(timer.epoch_seconds)}


def fit_side(side: str, splits, epochs: int, precision: str, batch: int) -> dict:
    if side == "plain":
        return epochs_of(fit_plain(splits, epochs, precision, "numpy", batch)[1])
    if side == "plain_tfdata":
        return epochs_of(fit_plain(splits, epochs, precision, "tfdata", batch)[1])
    if side in ("framework_off", "framework_on"):
        return fit_framework(splits, epochs, precision, batch, telemetry=side == "framework_on")
    raise ValueError(f"side {side!r}: valid choices: {', '.join(SIDES)}")


def framework_config(overrides: list[str]):
    from keras_loss_recipes.config.compose import compose_train

    return compose_train(overrides)


def fit_framework(splits, epochs: int, precision: str, batch: int, telemetry: bool, extra=()) -> dict:
    """The framework's recipe at these settings (`extra`: more config overrides, e.g. another model)."""
    import keras

    from keras_loss_recipes.recipes import train as train_recipe
    from keras_loss_recipes.lifecycle.run import Run

    cfg = framework_config([f"loss={FRAMEWORK_LOSS}", f"telemetry={'on' if telemetry else 'off'}",
                            f"trainer.epochs={epochs}", f"trainer.batch_size={batch}",
                            f"trainer.precision={precision}", "trainer.verbose=0",
                            f"backend={keras.backend.backend()}", *extra])
    with tempfile.TemporaryDirectory() as run_dir, Run(cfg, run_dir).opened() as run:
        metrics = train_recipe.train(cfg, run, splits=splits)
    return {"wall_s": metrics["epoch_wall_seconds"], "step_s": metrics["epoch_train_seconds"]}
