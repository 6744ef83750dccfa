"""Callbacks of the classification recipe: throughput, stability logging, the NaN/inf guard, saved models.

None of them has a batch hook in a default run (only `StepFigures`, `ProgressBar` and
`Progress` have one, when asked for), so Keras on JAX and PyTorch queues steps
ahead of the device instead of waiting for each step's figures.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import statistics
import time
from pathlib import Path

import keras
import numpy as np

from keras_loss_recipes.runtime import atomic
from keras_loss_recipes.runtime.errors import writing
from keras_loss_recipes.training.saved_form import MODEL_FILES, WEIGHTS_FILES, WEIGHTS_SUFFIX, not_saveable_whole
from keras_loss_recipes.training.backup import host_copy
from keras_loss_recipes.training.stability_model import NONFINITE_LOG
from keras_loss_recipes.training.telemetry import MEANS_LOG, PREFIX, STEP_LOG, unpack, with_loss_gap

log = logging.getLogger(__name__)
# The figures worth a glance on the console each epoch.
SUMMARY = [PREFIX + n for n in (
    "logit_gap", "saturated_frac", "loss_gap", "logit_grad_norm", "grad_norm", "nonfinite_steps")]
FRAMEWORK_LOGS = (NONFINITE_LOG, MEANS_LOG, STEP_LOG)  # the guard's and the telemetry's, not metrics
# TensorBoard event files are flushed at most this often, before each backup save and when training ends.
FLUSH_SECONDS = 10.0


def metric_logs(logs: dict | None) -> dict:
    """The epoch's logs without the framework's own figures (`FRAMEWORK_LOGS`): what a logger of metrics
    writes. Every callback reads the logs as Keras hands them over; none removes anything from them."""
    return {key: value for key, value in (logs or {}).items() if key not in FRAMEWORK_LOGS}


def stability_figures(logs: dict) -> dict:
    """The epoch's stability figures (`stability/<name>`) from its logs: the telemetry's means, the non-finite
    steps counted by the step itself, and the gap between the loss and the exact cross entropy."""
    means = logs.get(MEANS_LOG)
    values = unpack(means, PREFIX) if means is not None else {}
    values[PREFIX + "nonfinite_steps"] = float(_nonfinite(logs)[0])
    return with_loss_gap(values)


def stability_summary(logs: dict) -> str:
    """The figures worth a glance on the console (`SUMMARY`), from the epoch's logs."""
    values = stability_figures(logs)
    return "  ".join(f"{name[len(PREFIX):]}={values[name]:.4g}" for name in SUMMARY if name in values)


class StabilityLogger(keras.callbacks.Callback):
    """Writes the training step's stability figures to TensorBoard as `stability/<name>` per epoch.

    The figures arrive in the epoch's logs (see `telemetry.StabilityTracker`),
    beside the metrics; the loggers of metrics leave them out (`metric_logs`).
    The epoch figures are kept in `epochs` (one dict per epoch). It has no batch
    hook: the figures stay on the device until the epoch ends.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.epochs: list[dict] = []
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from keras_loss_recipes.runtime.event_files import EventWriter

            self._writer = EventWriter(self.log_dir)
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        values = stability_figures(logs or {})
        for name, value in values.items():
            self.writer.scalar(name, value, epoch)
        self.writer.flush_every(FLUSH_SECONDS)
        self.epochs.append(values)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def backup_state(self) -> dict:
        """The last epoch's figures, kept in the backup: a run resumed after its last epoch trains none, and its
        record still names them."""
        return {name: np.float64(value) for name, value in (self.epochs[-1] if self.epochs else {}).items()}

    def restore_state(self, arrays: dict) -> None:
        last = {name: float(value) for name, value in arrays.items() if name.startswith(PREFIX)}
        self.epochs = [last] if last else []

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class StepFigures(keras.callbacks.Callback):
    """`telemetry.every_n_steps`: the step's own stability figures every N steps, as `stability_steps/<name>`
    (x axis: the global step). A user who asks for step figures asks for a read of them; Keras makes it in
    a worker thread (`async_safe`), so the steps still queue up ahead of the device."""

    async_safe = True

    def __init__(self, log_dir: Path, every_n_steps: int):
        super().__init__()
        from keras_loss_recipes.runtime.event_files import EventWriter

        self.every_n_steps = every_n_steps
        self.epoch = 0
        self._writer = EventWriter(log_dir)  # thread-safe: it queues events for a thread of its own

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # The global step from the epoch and the batch: worker threads may run these calls out of order.
        step = self.epoch * (self.params.get("steps") or 0) + batch + 1
        if step % self.every_n_steps:
            return
        values = (logs or {}).get(STEP_LOG)
        for name, value in (unpack(values, "stability_steps/") if values is not None else {}).items():
            self._writer.scalar(name, value, step)

    def on_train_end(self, logs=None):
        self._writer.close()


class EpochLine(keras.callbacks.Callback):
    """`trainer.verbose=2`: one console line per epoch, with the stability summary when telemetry is on.

    Keras's own verbose=2 line comes from its progress bar, which has a batch
    hook, so with it every step would wait for the device.
    """

    def __init__(self, stability: bool = False):
        super().__init__()
        self.stability = stability  # telemetry is on: the line ends with the stability summary
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        figures = " - ".join(f"{k}: {v:.4f}" for k, v in metric_logs(logs).items() if isinstance(v, (int, float)))
        line = f"epoch {epoch + 1}/{self.params.get('epochs', '?')} - {seconds:.1f}s - {figures}"
        if self.stability:
            line += " | stability: " + stability_summary(logs or {})
        log.info("%s", line)


class ProgressBar(keras.callbacks.ProgbarLogger):
    """`trainer.verbose=1`: Keras's progress bar, without the framework's own running figures (stability means,
    non-finite counts), which are for TensorBoard and metrics.json. A bar updated every step reads every step's
    figures: the price of `verbose=1` on a GPU."""

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, metric_logs(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, metric_logs(logs))


def _nonfinite(logs: dict) -> tuple[int, int, int]:
    """(non-finite steps, the first of them, steps) of the epoch, from its logs (zeros when absent)."""
    values = logs.get(NONFINITE_LOG)
    return (0, 0, 0) if values is None else tuple(int(v) for v in values)


class NonFiniteGuard(keras.callbacks.Callback):
    """Notes the first step with a NaN/inf loss or gradient, and stops training under the `stop` policy.

    The step itself counts them on the device (`StabilityModel`): this epoch's
    count, its first non-finite step and its step count arrive in the epoch's
    logs, read once per epoch. Under `stop` and `skip` the bad steps
    were already kept out of the weights (under `stop`, every step after the
    first bad one too), so what was trained before it stays usable.
    `diagnose(model, epoch, step)` (both 1-based; the step counts within its
    epoch), when given, is called once, for the first non-finite step, and
    `origin` keeps what it returns (keras_loss_recipes/training/nonfinite_origin.py).
    """

    def __init__(self, stop: bool, diagnose=None):
        super().__init__()
        self.stop, self.diagnose = stop, diagnose
        self.origin = None  # where the first non-finite step went non-finite
        self.steps_before = 0  # the steps of this fit's earlier epochs
        self.first_nonfinite = None  # {"epoch": e, "step": s}, 1-based; s counts from the fit's start
        self.nonfinite_steps = 0  # over the whole fit
        self.last_finite_logs: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        counted, first, steps = _nonfinite(logs or {})
        self.nonfinite_steps += counted
        if counted and self.first_nonfinite is None:
            self.first_nonfinite = {"epoch": epoch + 1, "step": self.steps_before + first}
            if self.diagnose is not None:
                self.origin = self.diagnose(self.model, epoch + 1, int(first))
        self.steps_before += steps
        if counted and self.stop:
            self.model.stop_training = True
        figures = {k: float(v) for k, v in metric_logs(logs).items() if isinstance(v, (int, float))}
        if figures and all(math.isfinite(v) for v in figures.values()):
            self.last_finite_logs = {"epoch": epoch + 1, **figures}


class EpochEventLogger(keras.callbacks.Callback):
    """The epoch scalars of Keras's TensorBoard callback, written with the tensorboard package on every backend.

    Same layout and tags: `train/epoch_<metric>` and `validation/epoch_<metric>`
    (the `val_` prefix dropped), the epoch as step. Keras's own callback has
    batch hooks, and needs TensorFlow.
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        self._writers: dict = {}

    def _writer(self, name: str):
        if name not in self._writers:
            from keras_loss_recipes.runtime.event_files import EventWriter

            self._writers[name] = EventWriter(self.run_dir / name)
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in metric_logs(logs).items():
            if not isinstance(value, (int, float)):
                continue
            run, name = ("validation", key[len("val_"):]) if key.startswith("val_") else ("train", key)
            self._writer(run).scalar(f"epoch_{name}", value, epoch)
        for writer in self._writers.values():
            writer.flush_every(FLUSH_SECONDS)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class Progress(keras.callbacks.Callback):
    """Calls `tick()` at every step of training, validation and prediction (a watchdog's sign of life).
    `tick` only notes the time, so Keras may call it from a worker thread (`async_safe`)."""

    async_safe = True

    def __init__(self, tick):
        super().__init__()
        self.tick = tick

    def on_train_begin(self, logs=None):
        self.tick()

    def on_train_batch_end(self, batch, logs=None):
        self.tick()

    def on_test_batch_end(self, batch, logs=None):
        self.tick()

    def on_predict_batch_end(self, batch, logs=None):
        self.tick()

    def on_epoch_end(self, epoch, logs=None):
        self.tick()


def save_atomically(model, path: Path) -> None:
    """`model.save(path)` whole or not at all (a kill or a full disk leaves the earlier file)."""
    with atomic.replacing(path) as partial:
        model.save(partial)


def save_weights_atomically(model, path: Path) -> None:
    """`model.save_weights(path)` whole or not at all; the temporary name ends in .weights.h5, as Keras wants."""
    partial = path.with_name(f".{path.name.removesuffix(WEIGHTS_SUFFIX)}.partial{WEIGHTS_SUFFIX}")
    with writing(path):
        model.save_weights(partial)
    os.replace(partial, path)


class HistoryFile(keras.callbacks.Callback):
    """history.csv: one row per epoch, in the format of Keras's CSVLogger (`epoch`, then the logs' keys sorted),
    the whole file written again under a temporary name and renamed at each epoch's end, so a kill or a full
    disk leaves the earlier rows whole. A resumed run's rows follow the kept ones (`truncate_history`)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.lines = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                self.lines = handle.read().splitlines(keepends=True)
        self.keys = next(csv.reader(self.lines[:1]))[1:] if self.lines else None

    def on_epoch_end(self, epoch, logs=None):
        logs = metric_logs(logs)
        if self.keys is None:
            self.keys = sorted(logs)
        out = io.StringIO()
        writer = csv.writer(out)
        if not self.lines:
            writer.writerow(["epoch", *self.keys])
        writer.writerow([epoch, *(logs.get(key, "NA") for key in self.keys)])
        self.lines += out.getvalue().splitlines(keepends=True)
        atomic.write_text(self.path, "".join(self.lines))


class SaveModels(keras.callbacks.Callback):
    """best.keras (the epoch with the highest validation accuracy) and last.keras in the run directory.

    `export` is a plain functional model sharing the trained layers, so the
    files load with `keras.models.load_model` and no classes of this project.
    Where it holds a subclassed model that a .keras file would not give back as
    trained (`saved_form`), best.weights.h5 and last.weights.h5 hold that
    model's weights instead, and the run says so once. An epoch
    that improves on the best keeps its weights in host memory; best.keras is
    written from them when training ends, and on the way at most every
    `write_every_s` seconds (writing a .keras file takes longer than a short
    epoch). The backup carries the best weights (`backup_state`), so a resumed
    run ends with the same best.keras as an uninterrupted one.
    """

    def __init__(self, export, run_dir: Path, write_every_s: float = 30.0):
        super().__init__()
        self.export = export
        self.run_dir = Path(run_dir)
        self.files = MODEL_FILES  # last, best
        self._weights_of = None  # the subclassed model whose weights are saved instead, if any
        found = not_saveable_whole(export)
        if found is not None:
            self._weights_of, why = found
            self.files = WEIGHTS_FILES
            cls = type(self._weights_of)
            log.info("model: %s saved as its weights (%s and %s), not as .keras files: %s. Load them into "
                     "%s.%s once built; recipe=evaluate builds it again from the run's model._target_",
                     cls.__name__, *self.files, why, cls.__module__, cls.__name__)
        self.write_every_s = write_every_s
        self.best = -math.inf  # the best validation accuracy so far (a resumed run sets it from its history)
        self.best_weights = None  # host copies of the best epoch's weights (the backup carries them)
        self._unwritten = False  # best.keras does not hold best_weights yet
        self._written = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is not None and math.isfinite(value) and value > self.best:
            self.best = value
            self.best_weights = [host_copy(w) for w in self.export.weights]
            self._unwritten = True
        if self._unwritten and time.monotonic() - self._written >= self.write_every_s:
            self._write_best()

    def on_train_end(self, logs=None):
        self._save(self.files[0])
        if self._unwritten:
            self._write_best()

    def _save(self, name: str) -> None:
        if self._weights_of is None:
            save_atomically(self.export, self.run_dir / name)
        else:
            save_weights_atomically(self._weights_of, self.run_dir / name)

    def _write_best(self) -> None:
        """best.keras from the kept weights; the layers get their current weights back afterwards."""
        current = [host_copy(w) for w in self.export.weights]
        self.export.set_weights(self.best_weights)
        try:
            self._save(self.files[1])
        finally:
            self.export.set_weights(current)
        self._written, self._unwritten = time.monotonic(), False

    # The backup's share (keras_loss_recipes/training/backup.py) ---------------------------------------------

    def backup_state(self) -> dict:
        if self.best_weights is None:
            return {}
        return {"best_value": np.float64(self.best), **{f"best_{i}": w for i, w in enumerate(self.best_weights)}}

    def restore_state(self, arrays: dict) -> None:
        if "best_value" in arrays:
            self.best = float(arrays["best_value"])
            count = sum(name.startswith("best_") and name != "best_value" for name in arrays)
            self.best_weights = [arrays[f"best_{i}"] for i in range(count)]
            self._unwritten = True  # the attempt that saved them may have been stopped before writing best.keras


class TrainThroughput(keras.callbacks.Callback):
    """Seconds and samples/s of the training part of each epoch (validation excluded),
    and the whole epoch as a user waits for it (`epoch_wall_seconds`: from the
    epoch's start to the next one's, so validation and every epoch-end callback
    are in it; the last epoch ends when training ends).

    The first epoch includes tracing and warm-up, so the summary is the median
    of the later epochs when there are any. With `job_started` (a time.time()
    value), also notes the time from the job's start to its first training step
    (imports, data, model build): `startup_s`.
    """

    def __init__(self, train_examples: int, job_started: float | None = None):
        super().__init__()
        self.train_examples = train_examples
        self.job_started = job_started
        self.epoch_seconds: list[float] = []
        self.epoch_wall_seconds: list[float] = []
        self.startup_s = None
        self._start = self._train_done = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.startup_s is None and self.job_started is not None:  # the first step comes next
            self.startup_s = round(time.time() - self.job_started, 3)
        now = time.perf_counter()
        if self._start is not None:
            self.epoch_wall_seconds.append(now - self._start)
        self._start, self._train_done = now, None

    def on_train_end(self, logs=None):
        if self._start is not None:
            self.epoch_wall_seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_test_begin(self, logs=None):
        # Called when fit starts validating: the training part is over.
        if self._start is not None and self._train_done is None:
            self._train_done = self._after_last_step()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append((self._train_done or self._after_last_step()) - self._start)

    def _after_last_step(self) -> float:
        """The time once the epoch's last step has computed. JAX and PyTorch on a GPU dispatch
        steps ahead of the device, so reading one weight back waits for the last update."""
        weights = getattr(self.model, "trainable_variables", None)
        if weights:
            keras.ops.convert_to_numpy(weights[-1])
        return time.perf_counter()

    def samples_per_s(self) -> float | None:
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        return self.train_examples / statistics.median(steady) if steady else None
