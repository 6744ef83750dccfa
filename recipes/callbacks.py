"""Callbacks of the classification recipe: throughput, stability logging, the NaN/inf guard, saved models."""
from __future__ import annotations

import logging
import math
import statistics
import time
from pathlib import Path

import keras

from recipes.telemetry import PREFIX

log = logging.getLogger(__name__)
# The figures worth a glance on the console each epoch.
SUMMARY = [PREFIX + n for n in (
    "logit_gap", "saturated_frac", "loss_gap", "logit_grad_norm", "grad_norm", "nonfinite_steps")]


class StabilityLogger(keras.callbacks.Callback):
    """Writes the tracker's figures to TensorBoard as `stability/<name>` per epoch.

    With `every_n_steps`, the latest step's figures also go out every N steps
    as `stability_steps/<name>` (their x axis is the global step, not the epoch).
    The epoch figures are kept in `epochs` (one dict per epoch) and summed up
    in one console line; they are not added to Keras's logs, which would make
    the progress lines unreadable.
    """

    def __init__(self, tracker, log_dir: Path, every_n_steps: int | None = None):
        super().__init__()
        self.tracker = tracker
        self.log_dir = str(log_dir)
        self.every_n_steps = every_n_steps
        self.global_step = 0
        self.epochs: list[dict] = []
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def _write(self, values: dict, step: int, prefix_from: str = PREFIX, prefix_to: str = PREFIX):
        import tensorflow as tf

        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(prefix_to + name[len(prefix_from):], value)

    def on_epoch_begin(self, epoch, logs=None):
        self.tracker.reset()

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.every_n_steps and self.global_step % self.every_n_steps == 0:
            self._write(self.tracker.latest(), self.global_step, prefix_to="stability_steps/")

    def on_epoch_end(self, epoch, logs=None):
        values = self.tracker.results()
        if PREFIX + "loss" in values and PREFIX + "exact_ce" in values:
            values[PREFIX + "loss_gap"] = values[PREFIX + "loss"] - values[PREFIX + "exact_ce"]
        self._write(values, epoch)
        self.writer.flush()
        self.epochs.append(values)
        log.info("stability, epoch %d: %s", epoch + 1, "  ".join(
            f"{name[len(PREFIX):]}={values[name]:.4g}" for name in SUMMARY if name in values))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class NonFiniteGuard(keras.callbacks.Callback):
    """Notes the first step with a NaN/inf loss or gradient; stops training if asked.

    The step itself was already kept out of the weights by `StabilityModel`
    (policies stop and skip), so what was trained so far stays usable.
    """

    def __init__(self, stop: bool):
        super().__init__()
        self.stop = stop
        self.global_step = 0
        self.epoch = 0
        self.first_nonfinite = None  # {"epoch": e, "step": s}, 1-based
        self.nonfinite_seen = 0  # counted here only when the model has no counter of its own
        self.last_finite_logs: dict = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        counted = getattr(self.model, "nonfinite_steps", None)
        if counted is None:  # Keras's own training step: watch the reported loss
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.nonfinite_seen += 1
            counted = self.nonfinite_seen
        if self.first_nonfinite is None and counted > 0:
            self.first_nonfinite = {"epoch": self.epoch + 1, "step": self.global_step}
            if self.stop:
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs and all(math.isfinite(v) for v in logs.values() if isinstance(v, (int, float))):
            self.last_finite_logs = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}


class SaveModels(keras.callbacks.Callback):
    """best.keras (highest validation accuracy so far) and last.keras in the run directory.

    `export` is a plain functional model sharing the trained layers, so the
    files load with `keras.models.load_model` and no custom classes.
    """

    def __init__(self, export, run_dir: Path, best_so_far: float | None = None):
        super().__init__()
        self.export = export
        self.run_dir = Path(run_dir)
        self.best = best_so_far if best_so_far is not None and math.isfinite(best_so_far) else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is not None and math.isfinite(value) and value > self.best:
            self.best = value
            self.export.save(self.run_dir / "best.keras")

    def on_train_end(self, logs=None):
        self.export.save(self.run_dir / "last.keras")


def seconds_since_process_start() -> float | None:
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or no process table: not worth failing a run
        return None


class TrainThroughput(keras.callbacks.Callback):
    """Seconds and samples/s of the training part of each epoch (validation excluded).

    The first epoch includes tracing and warm-up, so the summary is the median
    of the later epochs when there are any. Also notes the time from process
    start to the first training step (imports, data, model build).
    """

    def __init__(self, train_examples: int):
        super().__init__()
        self.train_examples = train_examples
        self.epoch_seconds: list[float] = []
        self.startup_s = None
        self._start = self._train_done = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.startup_s is None:
            self.startup_s = seconds_since_process_start()

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_done = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        # Called when fit starts validating: the training part is over.
        if self._start is not None and self._train_done is None:
            self._train_done = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append((self._train_done or time.perf_counter()) - self._start)

    def samples_per_s(self) -> float | None:
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        return self.train_examples / statistics.median(steady) if steady else None
