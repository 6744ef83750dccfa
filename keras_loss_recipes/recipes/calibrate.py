"""Calibrate a saved classifier by temperature scaling, and save the calibrated model.

    python train.py recipe=calibrate checkpoint=runs/2026-11-25/10-00-00.000000_cnn_sparse_from_logits
    python train.py recipe=calibrate checkpoint=path/to/model.keras data=idx data.dir=/data/mnist

One temperature T is fitted on the logits of the configured data's validation
split (the split a run of this project validated on, for the same `data=`)
by minimising their exact float64 negative log-likelihood
(keras_loss_recipes/evaluation/calibration.py: `calibrate`). The test split is
scored before and after dividing its logits by T: accuracy (which T does not
change), NLL, ECE and Brier score. `checkpoint` is taken as recipe=evaluate
takes it (a run directory: its last.keras). Writes into its own run directory:
    calibrated.keras   the model, its output the logits divided by T (T a weight of a
                       built-in Keras layer: plain keras.models.load_model loads it)
    reliability.png    the test split's reliability diagram before and after
    metrics.json       temperature and test_{nll,ece,brier}[_calibrated], with the accuracies
    calibrate/         the same figures and diagram for TensorBoard
"""
from __future__ import annotations

import logging

import numpy as np

from keras_loss_recipes.data import load_splits
from keras_loss_recipes.data.pipeline import model_inputs
from keras_loss_recipes.evaluation.calibration import (
    calibrate, calibration_figures, calibration_logits_model, checked_outputs, plot_calibration)
from keras_loss_recipes.evaluation.held_out import all_logits
from keras_loss_recipes.evaluation.task_scores import scored_as
from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.recipes.evaluate import check_width, resolve_checkpoint, saved_logits_model
from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS, ECE_BINS, verdict
from keras_loss_recipes.runtime.quiet import start_backend

log = logging.getLogger(__name__)
CALIBRATED_MODEL = "calibrated.keras"
RELIABILITY_PNG = "reliability.png"
BATCH_SIZE = 256  # images per predict step: only the speed depends on it


def calibrate_checkpoint(cfg, run: Run) -> dict:
    """T fitted on the validation split, the test split scored before and after, the calibrated model saved."""
    checkpoint = resolve_checkpoint(cfg.checkpoint, "calibrate")
    run.prepare()
    splits = load_splits(cfg.data)
    start_backend()
    where = f"checkpoint={checkpoint}"
    logits_model = calibration_logits_model(saved_logits_model(checkpoint, splits, cfg.task), where)
    test_logits = checked_outputs(all_logits(logits_model, splits.x_test, BATCH_SIZE, inputs=splits.inputs), where)
    check_width(test_logits.shape[-1], splits, checkpoint, cfg.task)
    temperature, calibrated = calibrate(logits_model, model_inputs(splits.x_val, splits.inputs), splits.y_val, BATCH_SIZE)
    calibrated_logits = all_logits(calibrated, splits.x_test, BATCH_SIZE, inputs=splits.inputs)  # the saved model's own, as it predicts
    scored, scored_calibrated = (scored_as(cfg.task, z, splits.y_test) for z in (test_logits, calibrated_logits))
    result = {
        "status": "ok",
        "recipe": "calibrate",
        "checkpoint": str(checkpoint),
        "model_file": checkpoint.name,
        "data": splits.name,
        "val_examples": len(splits.y_val),
        "test_examples": len(splits.y_test),
        "task": cfg.task,
        "test_accuracy": float(np.mean(scored[0].argmax(-1) == scored[1])),
        "test_accuracy_calibrated": float(np.mean(scored_calibrated[0].argmax(-1) == scored_calibrated[1])),
        **calibration_figures(*scored, temperature),
        "ece_bins": ECE_BINS,
        "calibrated_model": CALIBRATED_MODEL,
    }
    calibrated.save(run.dir / CALIBRATED_MODEL)
    png = run.dir / RELIABILITY_PNG
    plot_calibration(*scored, temperature, png,
                     f"{checkpoint.parent.name}/{checkpoint.name} on {splits.name}'s test split "
                     "(T fitted on its validation split)")
    write_tensorboard(run, result)
    run.write_metrics(result)
    log.info("calibrate %s on %s: T=%.4f (%s); test accuracy %.4f -> %.4f, NLL %.4f -> %.4f, ECE %.4f -> %.4f, "
             "Brier %.4f -> %.4f; wrote %s", checkpoint, splits.name, temperature, verdict(temperature),
             result["test_accuracy"], result["test_accuracy_calibrated"], result["test_nll"],
             result["test_nll_calibrated"], result["test_ece"], result["test_ece_calibrated"], result["test_brier"],
             result["test_brier_calibrated"], run.dir / CALIBRATED_MODEL)
    return result


run = in_process(calibrate_checkpoint)


def write_tensorboard(run: Run, result: dict) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(run.dir / "calibrate") as writer:
        for key in ("test_accuracy", "test_accuracy_calibrated", *CALIBRATION_KEYS):
            writer.scalar(f"calibrate/{key}", result[key], 0)
        writer.png("calibrate/reliability", run.dir / RELIABILITY_PNG)
