"""The classification recipe: build, compile, measure the loss path, fit, evaluate, write results.

    metrics = run(cfg, run_dir)

`cfg` is a composed config (see configs/train.yaml); `run_dir` receives the
TensorBoard logs (train/, validation/), history.csv, best.keras and
last.keras, and metrics.json. A run killed mid-way is resumed from its last
completed epoch by running the same command with the same run directory.
"""
from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

import losses
from recipes.data import load_splits
from recipes.data.pipeline import make_dataset, scale_images
from recipes.calibration import expected_calibration_error
from recipes.errors import UserError
from recipes.hparams import log_run
from recipes.results import BACKUP_DIR, prepare_run_dir, write_metrics
from recipes.settings import validate

log = logging.getLogger(__name__)


def measure_loss_path(model, setup):
    """The loss path of the compiled model's own head, measured on probe batches."""
    from losses.paths import detect_loss_path

    head = model.get_layer("softmax") if setup.head == "softmax" else None
    report = detect_loss_path(setup, head=head)
    log.info(report.describe())
    if report.warning:
        log.warning("WARNING: loss=%s: %s", setup.name, report.warning)
    return report


def predict_logits(logits_model, images, batch_size: int, replicas: int = 1):
    """Logits of every image; padded to a multiple of `replicas` (DataParallel splits batches evenly)."""
    pad = -len(images) % replicas
    padded = np.concatenate([images, images[:pad]]) if pad else images
    return logits_model.predict(padded, batch_size=batch_size, verbose=0)[: len(images)]


HISTORY_FILE = "history.csv"


def read_history(run_dir: Path) -> list[dict]:
    """Per-epoch logs of every attempt of this run (Keras CSVLogger appends on resume)."""
    import csv

    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    with path.open() as handle:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(handle)]


def run(cfg, run_dir) -> dict:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    setup = validate(cfg)
    mode = prepare_run_dir(run_dir, overwrite=bool(cfg.trainer.get("overwrite", False)))
    splits = load_splits(cfg.data)  # before TensorFlow starts: bad data fails fast
    return train_prepared(cfg, setup, splits, run_dir, resuming=mode == "resume", started=started)


def train_prepared(cfg, setup, splits, run_dir: Path, resuming: bool = False, started: float | None = None) -> dict:
    """Train on already loaded `splits` into a prepared `run_dir` (benchmarks call this directly)."""
    from recipes.backends import activate_backend

    activate_backend(cfg.get("backend", "tensorflow"))
    import keras

    from recipes.devices import distribution_scope, select_device
    from recipes.network import precision_policy, set_cpu_threads

    # A sweep runs jobs one after another in this process: start each from a clean
    # slate. (Before the precision policy: clear_session resets it to float32.)
    keras.backend.clear_session()
    set_cpu_threads(cfg.trainer.get("threads"))
    device = select_device(cfg.trainer.get("device", "auto"))
    with precision_policy(cfg.trainer.precision), \
            distribution_scope(cfg.trainer.get("distribution", "none"), cfg.trainer.get("devices")) as strategy:
        return _train(cfg, setup, splits, Path(run_dir), started or time.perf_counter(), resuming, device, strategy)


def _train(cfg, setup, splits, run_dir: Path, started: float, resuming: bool, device, strategy) -> dict:
    import keras

    from recipes.callbacks import NonFiniteGuard, SaveModels, StabilityLogger, TrainThroughput, epoch_logger
    from recipes.devices import jit_setting
    from recipes.network import build_network
    from recipes.optimizers import make_optimizer
    from recipes.telemetry import StabilityTracker

    keras.utils.set_random_seed(cfg.seed)
    sizes = splits.sizes()
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    # DataParallel splits every batch evenly over its devices; the other strategies need no even split.
    split_over = replicas if cfg.trainer.get("distribution") == "data_parallel" else 1
    if cfg.trainer.batch_size % split_over:
        raise UserError(f"trainer.batch_size={cfg.trainer.batch_size}: data_parallel splits every batch over "
                        f"{split_over} devices, so the batch size must be a multiple of {split_over}")
    log.info(
        "data=%s train/val/test=%d/%d/%d  model=%s  loss=%s (head=%s, labels=%s)  "
        "backend=%s precision=%s device=%s (%s) replicas=%d",
        splits.name, sizes["train"], sizes["val"], sizes["test"], cfg.model.name, setup.name,
        setup.head, setup.labels, keras.backend.backend(), cfg.trainer.precision, device[0], device[1], replicas,
    )
    log.info("loss computes: %s", setup.formulation.computes)

    telemetry = bool(cfg.telemetry.enabled)
    tracker = StabilityTracker() if telemetry else None
    model, logits_model = build_network(cfg, setup, splits.num_classes, tracker)
    model.compile(
        optimizer=make_optimizer(cfg.optimizer),
        loss=setup.make_loss(),
        metrics=[setup.accuracy_metric()],
        jit_compile=jit_setting(cfg.trainer.get("jit_compile", "auto"), device[0], strategy is not None),
    )
    path = measure_loss_path(model, setup)

    def dataset(x, y, shuffle):
        labels = setup.encode_labels(y, splits.num_classes)
        return make_dataset(x, labels, cfg.trainer.batch_size, shuffle=shuffle, seed=cfg.seed, replicas=split_over)

    train_ds = dataset(splits.x_train, splits.y_train, shuffle=True)
    val_ds = dataset(splits.x_val, splits.y_val, shuffle=False)
    test_ds = dataset(splits.x_test, splits.y_test, shuffle=False)

    throughput = TrainThroughput(sizes["train"])
    guard = NonFiniteGuard(stop=cfg.trainer.on_nonfinite == "stop")
    earlier = read_history(run_dir)
    stability = StabilityLogger(run_dir / "train", cfg.telemetry.get("every_n_steps")) if tracker else None
    callbacks = [
        # First, so a resumed run restores weights, optimizer and epoch before anything else.
        keras.callbacks.BackupAndRestore(backup_dir=str(run_dir / BACKUP_DIR)),
        # Before Keras's own loggers: these two take their figures out of the logs.
        *([stability] if stability else []),
        guard,
        epoch_logger(run_dir),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
        SaveModels(keras.Model(model.inputs, model.outputs), run_dir, best_so_far=max(
            (v for r in earlier if np.isfinite(v := r.get("val_accuracy", float("nan")))), default=None)),
        throughput,
    ]

    if resuming:
        log.info("resuming the interrupted run in %s after epoch %d", run_dir, len(earlier))
    log.info("training %d epochs, batch %d, run dir %s", cfg.trainer.epochs, cfg.trainer.batch_size, run_dir)
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.trainer.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself each epoch, seeded
        verbose=cfg.trainer.get("verbose", "auto"),
    )

    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    test_logits = predict_logits(logits_model, scale_images(splits.x_test), cfg.trainer.batch_size, split_over)
    with np.errstate(all="ignore"):
        test_exact_ce = float(np.mean(losses.exact_cross_entropy(test_logits, splits.y_test)))
        test_ece = expected_calibration_error(test_logits, splits.y_test) if np.all(np.isfinite(test_logits)) else None

    history = read_history(run_dir)
    diverged = guard.first_nonfinite is not None and cfg.trainer.on_nonfinite == "stop"
    last = history[-1] if history else {}
    metrics = {
        "status": "diverged" if diverged else "ok",
        "loss": setup.name,
        "loss_path": path.path,
        "warnings": [path.warning] if path.warning else [],
        "head": setup.head,
        "label_format": setup.labels,
        "data": splits.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "seed": int(cfg.seed),
        "backend": keras.backend.backend(),
        "precision": cfg.trainer.precision,
        "device": device[0],
        "device_name": device[1],
        "replicas": replicas,
        "epochs_completed": len(history) - (1 if diverged else 0),
        "resumed": resuming,
        "train_examples": sizes["train"],
        "val_accuracy": float(last.get("val_accuracy", float("nan"))),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_exact_ce": test_exact_ce,
        "test_ece": test_ece,
        "nonfinite_steps": guard.nonfinite_steps,
        "telemetry": telemetry,
        "first_nonfinite": guard.first_nonfinite,
        "train_samples_per_s": throughput.samples_per_s(),
        "epoch_train_seconds": [round(x, 4) for x in throughput.epoch_seconds],
        "startup_s": throughput.startup_s,
        "wall_s": None,
        "params": int(model.count_params()),
        "stability": stability.epochs[-1] if stability and stability.epochs else {},
        "history": {k: [row.get(k) for row in history] for k in (history[0] if history else {}) if k != "epoch"},
        "python": platform.python_version(),
        "keras": keras.__version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if diverged:
        metrics["last_finite"] = guard.last_finite_logs
        log.warning(
            "DIVERGED: the loss or gradients became NaN/inf at epoch %d, step %d; training stopped "
            "(trainer.on_nonfinite=stop). Metrics of the last finite epoch are in metrics.json "
            "under last_finite.", guard.first_nonfinite["epoch"], guard.first_nonfinite["step"],
        )
    metrics["wall_s"] = round(time.perf_counter() - started, 2)
    out = write_metrics(run_dir, metrics)
    log_run(run_dir, metrics)
    log.info(
        "done (%s): val_accuracy=%.4f test_accuracy=%.4f test_exact_ce=%.4f loss_path=%s (%s)",
        metrics["status"], metrics["val_accuracy"], metrics["test_accuracy"], test_exact_ce, path.path, out,
    )
    return metrics
