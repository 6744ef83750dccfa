"""Evaluate a saved model: accuracy, exact cross entropy, calibration (ECE) and a reliability diagram.

`checkpoint` is a run directory or a .keras file. In a run directory it takes
last.keras, the model whose test figures the run recorded (so evaluating a run
with the same data gives the run's numbers); `checkpoint=<run dir>/best.keras`
evaluates the epoch with the best validation accuracy instead. The test split comes from the configured data (`data=`), so a model
trained on the embedded digits can be checked on full MNIST.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from keras_loss_recipes import losses
from keras_loss_recipes.data import load_splits
from keras_loss_recipes.data.pipeline import scale_images
from keras_loss_recipes.reporting.calibration import expected_calibration_error, plot_reliability
from keras_loss_recipes.reporting.results import prepare_run_dir, write_metrics
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.quiet import start_backend
from keras_loss_recipes.runtime.run_files import BEST_MODEL, LAST_MODEL
from keras_loss_recipes.training.network import logits_model_of

log = logging.getLogger(__name__)
MODEL_FILES = (LAST_MODEL, BEST_MODEL)  # in a run directory, the first that exists


def resolve_checkpoint(checkpoint) -> Path:
    if checkpoint in (None, ""):
        raise UserError("checkpoint is not set: recipe=evaluate needs checkpoint=<run dir or .keras file>")
    path = Path(str(checkpoint)).expanduser()
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"checkpoint={checkpoint}: the directory holds no {' or '.join(MODEL_FILES)}")
    if not path.exists():
        raise UserError(f"checkpoint={checkpoint}: no such file or directory")
    if path.suffix != ".keras":
        raise UserError(f"checkpoint={checkpoint}: not a .keras model file (or a run directory holding one)")
    return path


def load_model(path: Path):
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # zip, JSON or layer errors all mean the same to the user
        raise UserError(f"checkpoint={path}: not a loadable Keras model ({type(err).__name__}: {str(err)[:200]})") from None


def run(cfg, run_dir) -> dict:
    run_dir = Path(run_dir)
    checkpoint = resolve_checkpoint(cfg.get("checkpoint"))
    prepare_run_dir(run_dir)
    splits = load_splits(cfg.data)
    start_backend()
    model = load_model(checkpoint)
    logits = np.asarray(logits_model_of(model).predict(scale_images(splits.x_test), batch_size=256, verbose=0), np.float64)
    if logits.shape[-1] != splits.num_classes:
        raise UserError(
            f"checkpoint={checkpoint}: the model has {logits.shape[-1]} outputs but data={splits.name} "
            f"has {splits.num_classes} classes"
        )
    bins = int(cfg.recipe.get("bins", 15))
    result = {
        "status": "ok",
        "recipe": "evaluate",
        "checkpoint": str(checkpoint),
        "model_file": checkpoint.name,
        "data": splits.name,
        "test_examples": len(splits.y_test),
        "test_accuracy": float(np.mean(logits.argmax(-1) == splits.y_test)),
        "test_exact_ce": float(np.mean(losses.exact_cross_entropy(logits, splits.y_test))),
        "test_ece": expected_calibration_error(logits, splits.y_test, bins),
        "ece_bins": bins,
    }
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    png = run_dir / "reliability.png"
    plot_reliability(logits, splits.y_test, png, f"{checkpoint.parent.name}/{checkpoint.name} on {splits.name}", bins)
    write_tensorboard(run_dir, result, png)
    write_metrics(run_dir, result)
    log.info("evaluate %s on %s: accuracy=%.4f exact_ce=%.4f ECE=%.4f (%s)", checkpoint, splits.name,
             result["test_accuracy"], result["test_exact_ce"], result["test_ece"], run_dir / "eval.json")
    return result


def write_tensorboard(run_dir: Path, result: dict, png: Path) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(run_dir / "evaluate") as writer:
        for key in ("test_accuracy", "test_exact_ce", "test_ece"):
            writer.scalar(f"evaluate/{key}", result[key], 0)
        writer.png("evaluate/reliability", png)
