"""Callbacks of the classification recipe: throughput, stability logging, the NaN/inf guard, saved models."""
from __future__ import annotations

import logging
import math
import os
import statistics
import time
from pathlib import Path

import keras
import numpy as np

from recipes.runtime.run_files import BEST_MODEL, LAST_MODEL
from recipes.training.stability_model import NONFINITE_LOG
from recipes.training.telemetry import PREFIX, STEP_PREFIX

log = logging.getLogger(__name__)
# The figures worth a glance on the console each epoch.
SUMMARY = [PREFIX + n for n in (
    "logit_gap", "saturated_frac", "loss_gap", "logit_grad_norm", "grad_norm", "nonfinite_steps")]


class StabilityLogger(keras.callbacks.Callback):
    """Writes the training step's stability figures to TensorBoard as `stability/<name>` per epoch.

    The figures arrive in the step's logs (see `telemetry.StabilityTracker`);
    this callback takes them out of the logs, so it must come before Keras's own
    callbacks, which would otherwise print them on every progress line. With
    `every_n_steps`, the step's own figures also go out every N steps as
    `stability_steps/<name>` (their x axis is the global step, not the epoch).
    The epoch figures are kept in `epochs` (one dict per epoch) and summed up
    in one console line.
    """

    def __init__(self, log_dir: Path, every_n_steps: int | None = None):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.every_n_steps = every_n_steps
        self.global_step = 0
        self.epochs: list[dict] = []
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from recipes.runtime.event_files import EventWriter

            self._writer = EventWriter(self.log_dir)
        return self._writer

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        figures = _take(logs, STEP_PREFIX)
        _take(logs, PREFIX)
        if self.every_n_steps and self.global_step % self.every_n_steps == 0:
            for name, value in figures.items():
                self.writer.scalar("stability_steps/" + name[len(STEP_PREFIX):], value, self.global_step)

    def on_epoch_end(self, epoch, logs=None):
        _take(logs, STEP_PREFIX)
        values = _take(logs, PREFIX)
        values[PREFIX + "nonfinite_steps"] = float((logs or {}).get(NONFINITE_LOG, 0.0))
        if PREFIX + "loss" in values and PREFIX + "exact_ce" in values:
            values[PREFIX + "loss_gap"] = values[PREFIX + "loss"] - values[PREFIX + "exact_ce"]
        for name, value in values.items():
            self.writer.scalar(name, value, epoch)
        self.writer.flush()
        self.epochs.append(values)

    def summary_line(self, epoch: int) -> str:
        values = self.epochs[-1] if self.epochs else {}
        return f"stability, epoch {epoch + 1}: " + "  ".join(
            f"{name[len(PREFIX):]}={values[name]:.4g}" for name in SUMMARY if name in values)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class StabilityLine(keras.callbacks.Callback):
    """The console line of `StabilityLogger`'s epoch figures, placed after Keras's progress line.

    The logger itself must run before the progress bar (it takes its figures out
    of the logs); this callback runs after it, so the line reads as a footnote
    to the epoch it sums up.
    """

    def __init__(self, stability: StabilityLogger):
        super().__init__()
        self.stability = stability

    def on_epoch_end(self, epoch, logs=None):
        log.info("%s", self.stability.summary_line(epoch))


def _take(logs: dict | None, prefix: str) -> dict:
    """Remove the entries whose name starts with `prefix` from `logs`; return them."""
    if not logs:
        return {}
    return {name: float(logs.pop(name)) for name in [n for n in logs if n.startswith(prefix)]}


class ExactResume(keras.callbacks.Callback):
    """What a resumed run needs, beyond Keras's BackupAndRestore, to go on exactly as if never stopped.

    BackupAndRestore keeps the weights, the optimizer and the epoch, but not
    * the random state of the layers (their SeedGenerators: dropout's masks) and, on
      PyTorch, of torch's global generator (Keras draws unseeded dropout from it),
      saved beside the backup after every epoch (`random_state.<epoch>.npz`, the last
      two, as Keras keeps its last two backups) and put back on resume;
    * where the training data's per-epoch shuffling is: a resumed run's fresh dataset
      would start the sequence of orders again, so `fast_forward(k)` moves it on
      before epoch k.
    Placed right after BackupAndRestore, which decides the epoch the fit starts at.
    """

    def __init__(self, backup_dir: Path, fast_forward):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.fast_forward = fast_forward
        self._started = False

    def _path(self, epoch: int) -> Path:
        """The random state at the start of `epoch` (0-based), i.e. after `epoch` epochs."""
        return self.backup_dir / f"random_state.{epoch}.npz"

    def _seed_states(self) -> list:
        return [v for v in self.model.variables if v.name == "seed_generator_state"]

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True
        if epoch == 0:
            return
        self.fast_forward(epoch)
        states = self._seed_states()
        saved = np.load(self._path(epoch)) if self._path(epoch).exists() else None
        layers_saved = sum(name.startswith("state_") for name in saved.files) if saved is not None else None
        if saved is None or int(saved["epoch"]) != epoch or layers_saved != len(states):
            log.warning("resumed at epoch %d without the layers' random state of that epoch: the run goes on, "
                        "but not exactly as an uninterrupted one would", epoch + 1)
            return
        for i, state in enumerate(states):
            state.assign(saved[f"state_{i}"])
        if "torch_rng" in saved.files:
            import torch

            torch.set_rng_state(torch.from_numpy(saved["torch_rng"]))
        log.info("resumed at epoch %d with the data order and the random state of that epoch", epoch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if not self.backup_dir.is_dir():
            return  # no backup to go with
        states = {f"state_{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(self._seed_states())}
        if keras.backend.backend() == "torch":
            import torch

            states["torch_rng"] = torch.get_rng_state().numpy()
        partial = self.backup_dir / "partial_random_state.npz"
        np.savez(partial, epoch=epoch + 1, **states)
        os.replace(partial, self._path(epoch + 1))  # a kill mid-write leaves the earlier files whole
        self._path(epoch - 1).unlink(missing_ok=True)


class NonFiniteGuard(keras.callbacks.Callback):
    """Notes the first step with a NaN/inf loss or gradient; stops training if asked.

    It takes the step's `nonfinite_steps` log (this epoch's count so far, from
    `StabilityModel`) out of the logs, so it comes before Keras's own callbacks;
    the step itself was already kept out of the weights
    (policies stop and skip), so what was trained so far stays usable.
    """

    def __init__(self, stop: bool):
        super().__init__()
        self.stop = stop
        self.global_step = 0
        self.epoch = 0
        self.first_nonfinite = None  # {"epoch": e, "step": s}, 1-based
        self.nonfinite_steps = 0  # over the whole fit
        self._in_epoch = 0.0
        self.last_finite_logs: dict = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._in_epoch = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        # Taken out of the logs: a count of zero on every progress line is noise.
        counted = float((logs or {}).pop(NONFINITE_LOG, 0.0))
        if counted > self._in_epoch:
            self.nonfinite_steps += int(counted - self._in_epoch)
            self._in_epoch = counted
            if self.first_nonfinite is None:
                self.first_nonfinite = {"epoch": self.epoch + 1, "step": self.global_step}
                if self.stop:
                    self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        (logs or {}).pop(NONFINITE_LOG, None)
        if logs and all(math.isfinite(v) for v in logs.values() if isinstance(v, (int, float))):
            self.last_finite_logs = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}


def epoch_logger(run_dir: Path) -> keras.callbacks.Callback:
    """Per-epoch logs as TensorBoard scalars under <run_dir>/train and <run_dir>/validation.

    Keras's TensorBoard callback on TensorFlow; `EpochEventLogger`, which needs
    no TensorFlow, on the other backends.
    """
    if keras.backend.backend() == "tensorflow":
        return keras.callbacks.TensorBoard(log_dir=str(run_dir), write_graph=False)
    return EpochEventLogger(run_dir)


class EpochEventLogger(keras.callbacks.Callback):
    """The epoch scalars of Keras's TensorBoard callback, written with the tensorboard package.

    Same layout and tags: `train/epoch_<metric>` and `validation/epoch_<metric>`
    (the `val_` prefix dropped), the epoch as step.
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        self._writers: dict = {}

    def _writer(self, name: str):
        if name not in self._writers:
            from recipes.runtime.event_files import EventWriter

            self._writers[name] = EventWriter(self.run_dir / name)
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if not isinstance(value, (int, float)):
                continue
            run, name = ("validation", key[len("val_"):]) if key.startswith("val_") else ("train", key)
            self._writer(run).scalar(f"epoch_{name}", value, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class Progress(keras.callbacks.Callback):
    """Calls `tick()` at every step of training, validation and prediction (a watchdog's sign of life)."""

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
            self.export.save(self.run_dir / BEST_MODEL)

    def on_train_end(self, logs=None):
        self.export.save(self.run_dir / LAST_MODEL)


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

    def on_train_batch_begin(self, batch, logs=None):
        if self.startup_s is None and self.job_started is not None:
            self.startup_s = round(time.time() - self.job_started, 3)

    def on_epoch_begin(self, epoch, logs=None):
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
