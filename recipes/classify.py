"""The classification recipe: build, compile, fit, evaluate, write results.

    metrics = run(cfg, run_dir)

`cfg` is a composed config (see configs/train.yaml); `run_dir` receives the
TensorBoard logs (train/, validation/) and metrics.json.
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
from recipes.results import guard_run_dir, write_metrics
from recipes.settings import validate

log = logging.getLogger(__name__)


def build_models(cfg, setup: losses.LossSetup, num_classes: int):
    """The trained model (logits -> head) and a view of it that outputs the logits."""
    import keras

    from recipes.models import build_logits

    inputs = keras.Input(shape=(28, 28, 1), name="image")
    scaled_logits, outputs = setup.attach_head(build_logits(cfg.model, inputs, num_classes))
    model = keras.Model(inputs, outputs, name=f"{cfg.model.name}_{setup.name}")
    logits_model = keras.Model(inputs, scaled_logits, name=f"{cfg.model.name}_logits")
    return model, logits_model


def run(cfg, run_dir) -> dict:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    setup = validate(cfg)
    guard_run_dir(run_dir)

    import keras

    from recipes.optimizers import make_optimizer
    from recipes.timing import make_throughput_callback

    keras.utils.set_random_seed(cfg.seed)
    splits = load_splits(cfg.data)
    sizes = splits.sizes()
    log.info(
        "data=%s train/val/test=%d/%d/%d  model=%s  loss=%s (head=%s, labels=%s)  backend=%s",
        splits.name, sizes["train"], sizes["val"], sizes["test"],
        cfg.model.name, setup.name, setup.head, setup.labels, keras.backend.backend(),
    )
    log.info("loss computes: %s", setup.formulation.computes)

    model, logits_model = build_models(cfg, setup, splits.num_classes)
    model.compile(
        optimizer=make_optimizer(cfg.optimizer),
        loss=setup.make_loss(),
        metrics=[setup.accuracy_metric()],
    )

    def dataset(x, y, shuffle):
        labels = setup.encode_labels(y, splits.num_classes)
        return make_dataset(x, labels, cfg.trainer.batch_size, shuffle=shuffle, seed=cfg.seed)

    train_ds = dataset(splits.x_train, splits.y_train, shuffle=True)
    val_ds = dataset(splits.x_val, splits.y_val, shuffle=False)
    test_ds = dataset(splits.x_test, splits.y_test, shuffle=False)

    throughput = make_throughput_callback()(sizes["train"])
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir), write_graph=False),
        throughput,
    ]
    log.info("training %d epochs, batch %d, run dir %s", cfg.trainer.epochs, cfg.trainer.batch_size, run_dir)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.trainer.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself each epoch, seeded
        verbose=cfg.trainer.get("verbose", "auto"),
    )

    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    test_logits = logits_model.predict(scale_images(splits.x_test), batch_size=cfg.trainer.batch_size, verbose=0)
    test_exact_ce = float(np.mean(losses.exact_cross_entropy(test_logits, splits.y_test)))

    metrics = {
        "status": "ok",
        "loss": setup.name,
        "head": setup.head,
        "label_format": setup.labels,
        "data": splits.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "seed": int(cfg.seed),
        "backend": keras.backend.backend(),
        "epochs_completed": len(history.history.get("loss", [])),
        "train_examples": sizes["train"],
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_exact_ce": test_exact_ce,
        "train_samples_per_s": throughput.samples_per_s(),
        "wall_s": round(time.perf_counter() - started, 2),
        "params": int(model.count_params()),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    path = write_metrics(run_dir, metrics)
    log.info(
        "done: val_accuracy=%.4f test_accuracy=%.4f test_exact_ce=%.4f (%s)",
        metrics["val_accuracy"], metrics["test_accuracy"], test_exact_ce, path,
    )
    return metrics
