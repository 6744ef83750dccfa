"""What a training run says and records: its setup in the log, and metrics.json's content (step 8)."""
from __future__ import annotations

import logging
import platform

import numpy as np
from omegaconf import OmegaConf

from keras_loss_recipes.recipes.train.context import Training
from keras_loss_recipes.reporting.calibration import verdict
from keras_loss_recipes.reporting.objective import VALIDATION_FIGURES
from keras_loss_recipes.training.saved_form import saved_files

log = logging.getLogger("keras_loss_recipes.recipes.train")


def log_setup(job: Training) -> None:
    import keras

    cfg, setup, sizes = job.cfg, job.setup, job.splits.sizes()
    log.info(
        "task=%s data=%s classes=%s train/val/test=%d/%d/%d  model=%s  loss=%s (head=%s, labels=%s)  "
        "backend=%s precision=%s device=%s (%s) replicas=%d",
        cfg.task, job.splits.name, job.splits.classes(), sizes["train"], sizes["val"],
        sizes["test"], cfg.model.name,
        setup.name, setup.head, setup.labels, keras.backend.backend(), cfg.trainer.precision, job.device[0],
        job.device[1], job.session.replicas,
    )
    log.info("loss computes: %s", setup.formulation.computes)


def metrics_record(job: Training, model, path, test: dict, callbacks, removed=None) -> dict:
    """metrics.json's content (wall_s is filled in when it is written): what ran, how training went, the test
    figures, and the config."""
    import keras

    cfg, guard = job.cfg, callbacks.guard
    history = job.run.history()
    diverged = guard.first_nonfinite is not None and cfg.trainer.on_nonfinite == "stop"
    last = history[-1] if history else {}
    metrics = {
        "status": "diverged" if diverged else "ok",
        **_what_ran(job, path),
        "epochs_completed": len(history) - (1 if diverged else 0),
        "resumed": job.run.resuming,
        "train_examples": job.splits.sizes()["train"],
        "input_shape": list(job.splits.x_train.shape[1:]),
        "inputs": job.splits.inputs,  # data.inputs: images, features or tokens
        "num_classes": job.splits.num_classes,
        "class_names": job.splits.class_names,
        # The last epoch's validation figures: what a sweeper can optimise (`optimized_metric`).
        **{key: float(last.get(key, float("nan"))) for key in VALIDATION_FIGURES},
        **test,
        "test_model": saved_files(job.run.dir)[0],  # the test figures above are this saved model's
        "best_model": _best_model(history, saved_files(job.run.dir)[1]),
        "nonfinite_steps": guard.nonfinite_steps,
        "telemetry": bool(cfg.telemetry.enabled),
        "first_nonfinite": guard.first_nonfinite,
        "nonfinite_origin": guard.origin,  # where it went non-finite (keras_loss_recipes/training/nonfinite_origin.py)
        # The softmax or sigmoid head taken off the configured model, so that loss= decides the loss.
        "removed_head": None if removed is None else {"kind": removed.kind, "layer": removed.layer,
                                                       "class": removed.layer_class},
        "train_samples_per_s": callbacks.throughput.samples_per_s(),
        "epoch_train_seconds": [round(x, 4) for x in callbacks.throughput.epoch_seconds],
        "epoch_wall_seconds": [round(x, 4) for x in callbacks.throughput.epoch_wall_seconds],
        "startup_s": callbacks.throughput.startup_s,
        "wall_s": None,
        "params": int(model.count_params()),
        "stability": callbacks.stability.epochs[-1] if callbacks.stability and callbacks.stability.epochs else {},
        "history": {k: [row.get(k) for row in history] for k in (history[0] if history else {}) if k != "epoch"},
        "python": platform.python_version(),
        "keras": keras.__version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if diverged:
        metrics["last_finite"] = guard.last_finite_logs
    return metrics


def best_epoch(history: list[dict]) -> tuple[float, int] | None:
    """(validation accuracy, 1-based epoch) of the best epoch: the highest finite validation accuracy over every
    attempt, the first of equal ones (as best.keras is saved); None before any."""
    scored = [(row["val_accuracy"], i + 1) for i, row in enumerate(history)
              if np.isfinite(row.get("val_accuracy", float("nan")))]
    return max(scored, key=lambda pair: (pair[0], -pair[1])) if scored else None


def _best_model(history: list[dict], best_file: str) -> dict:
    """Which epoch best.keras holds."""
    best = best_epoch(history)
    if best is None:
        return {"file": None, "epoch": None, "val_accuracy": None}
    return {"file": best_file, "epoch": best[1], "val_accuracy": best[0]}


def _what_ran(job: Training, path) -> dict:
    import keras

    cfg, setup = job.cfg, job.setup
    return {
        "task": cfg.task,
        "loss": setup.name,
        "loss_path": path.path,
        "warnings": [path.warning] if path.warning else [],
        "head": setup.head,
        "label_format": setup.labels,
        "data": job.splits.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "seed": int(cfg.seed),
        "backend": keras.backend.backend(),
        "precision": cfg.trainer.precision,
        "device": job.device[0],
        "device_name": job.device[1],
        "replicas": job.session.replicas,
        "processes": job.run.processes,
        "weights_match": None,  # several processes: whether all ended with process 0's weights
    }


def say_how_it_ended(metrics: dict, written) -> None:
    """The closing lines: a divergence said loudly, then one line of figures."""
    if metrics["status"] == "diverged":
        first = metrics["first_nonfinite"]
        log.warning(
            "DIVERGED: the loss or gradients became NaN/inf at epoch %d, step %d; training stopped "
            "(trainer.on_nonfinite=stop). Metrics of the last finite epoch are in metrics.json "
            "under last_finite.", first["epoch"], first["step"],
        )
    log.info(
        "done (%s): val_accuracy=%.4f test_accuracy=%.4f test_exact_ce=%.4f loss_path=%s (%s)",
        metrics["status"], metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_exact_ce"],
        metrics["loss_path"], written,
    )
    if metrics.get("test_macro_f1") is not None:
        log.info("multilabel: test macro F1 %.4f; test accuracy per label %s", metrics["test_macro_f1"],
                 ", ".join(f"{a:.4f}" for a in metrics["test_label_accuracy"]))
    if metrics.get("test_nll_calibrated") is not None:
        log.info("temperature scaling: T=%.3f fitted on the validation logits (%s); on the test split NLL "
                 "%.4f -> %.4f, ECE %.4f -> %.4f, Brier %.4f -> %.4f", metrics["temperature"],
                 verdict(metrics["temperature"]), metrics["test_nll"], metrics["test_nll_calibrated"],
                 metrics["test_ece"], metrics["test_ece_calibrated"], metrics["test_brier"],
                 metrics["test_brier_calibrated"])
