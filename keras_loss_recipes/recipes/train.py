"""The training recipe: train a classifier with one loss formulation and record what it did.

    metrics = run(cfg, run_dir)

1. Check the config, prepare the run directory (fresh, or resume an interrupted
   run), load the data.
2. Start a clean Keras session: CPU threads, device, precision, distribution.
3. Build and compile the network; measure the loss path Keras really takes.
4. Make the datasets, labels encoded as the formulation needs them.
5. Wire the callbacks: backup, stability figures, the NaN/inf guard,
   TensorBoard, history.csv, best/last models, throughput.
6. Fit.
7. Evaluate the model after the last epoch (saved as last.keras) on the test
   split: accuracy, the formulation's own loss, and the exact cross entropy and
   calibration error of the logits. best.keras (the best validation epoch) is
   kept beside it and named in the record.
8. Write the record: metrics.json and the TensorBoard HParams.

`run_dir` receives the TensorBoard logs (train/, validation/), history.csv,
best.keras, last.keras and metrics.json. A run killed mid-way is resumed from
its last saved epoch by running the same command with the same run directory; a
preemption signal stops it after its step and saves that step, where the same
command resumes it (keras_loss_recipes/training/preemption_stop.py).

Several processes may train one model (JAX, keras_loss_recipes/runtime/processes/):
they meet before the backend starts, process 0 alone writes `run_dir`, each
feeds its part of every (global) batch, and at the end they compare their
weights (`weights_match` in metrics.json).
"""
from __future__ import annotations

import functools
import logging
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from keras_loss_recipes import losses
from keras_loss_recipes.config.settings import validate
from keras_loss_recipes.data import Splits, load_splits
from keras_loss_recipes.data.pipeline import batch_of, batch_spec, fast_forward, make_dataset, scale_images
from keras_loss_recipes.data.splits import is_streamed
from keras_loss_recipes.reporting.calibration import expected_calibration_error
from keras_loss_recipes.reporting.failures import record_failure
from keras_loss_recipes.reporting.results import (
    RunAlreadyFinished, prepare_run_dir, read_history, truncate_history, write_metrics,
)
from keras_loss_recipes.reporting.tensorboard_views import write_run_views
from keras_loss_recipes.runtime import clock, preemption, processes, run_lock
from keras_loss_recipes.runtime.backends import activate_backend, select_device
from keras_loss_recipes.runtime.distribution import distribution_scope, jit_setting
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.execution import AUTO, steps_per_execution
from keras_loss_recipes.runtime.objective import VALIDATION_FIGURES
from keras_loss_recipes.runtime.quiet import start_backend
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HISTORY_FILE
from keras_loss_recipes.runtime.run_names import model_name
from keras_loss_recipes.runtime.session import fresh_session, precision_policy, set_cpu_threads
from keras_loss_recipes.training.network import build_network, measure_loss_path, predict_logits
from keras_loss_recipes.training.optimizers import make_optimizer
from keras_loss_recipes.training.saved_form import saved_files
from keras_loss_recipes.training.telemetry import StabilityTracker

log = logging.getLogger(__name__)


def run(cfg, run_dir) -> dict:
    """Step 1, then the rest (`train_prepared`)."""
    started = time.perf_counter()
    job_started = clock.job_started() or time.time()  # marked by train.py, or starting now
    run_dir = Path(run_dir)
    setup = validate(cfg)
    prepare = functools.partial(prepare_run_dir, overwrite=bool(cfg.trainer.get("overwrite", False)))
    group = processes.current()
    # Several processes: ends this one when the group stops moving, and records why.
    watchdog = processes.Watchdog(on_stall=lambda message: record_failure(cfg, run_dir, RuntimeError(message)))
    run_lock.acquire(run_dir)  # before anything reads or moves what the directory holds; a second process stops
    try:
        if group is None:
            mode = prepare(run_dir)
        else:
            processes.check_config(cfg, group)
            activate_backend("jax")
            processes.join(group, cfg.trainer.get("stall_timeout_s", processes.STALL_TIMEOUT_S), watchdog)
            mode = _prepare_with_others(group, run_dir, prepare)
        splits = load_splits(cfg.data)  # before TensorFlow starts: bad data fails fast
        watchdog.tick()
        return train_prepared(cfg, setup, splits, run_dir, resuming=mode == "resume", started=started,
                              job_started=job_started, watchdog=watchdog)
    finally:
        run_lock.release(run_dir)


def _prepare_with_others(group: processes.Group, run_dir: Path, prepare) -> str:
    """Several processes: process 0 prepares its run directory (`prepare(run_dir)` -> "fresh" | "resume")
    and says how; the others copy its backup and history into their scratch `run_dir` and follow."""
    if group.rank == 0:
        try:
            mode = prepare(run_dir)
        except RunAlreadyFinished as done:
            processes.tell_others("run_dir", f"finished\n{done.metrics.get('status')}")
            raise
        except BaseException as err:
            processes.tell_others("run_dir", f"error\n{err}")
            raise
        processes.tell_others("run_dir", f"{mode}\n{run_dir.resolve()}")
        processes.announce_run_dir(run_dir)
        return mode
    mode, detail = processes.hear_from_process_0("run_dir").split("\n", 1)
    if mode == "finished":
        raise RunAlreadyFinished(run_dir, {"status": detail})
    if mode == "error":
        raise UserError(f"process 0 stopped: {detail}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if mode == "resume":
        source = Path(detail)
        shutil.copytree(source / BACKUP_DIR, run_dir / BACKUP_DIR, dirs_exist_ok=True)
        if (source / HISTORY_FILE).exists():
            shutil.copy2(source / HISTORY_FILE, run_dir / HISTORY_FILE)
    return mode


def train_prepared(cfg, setup, splits, run_dir: Path, resuming: bool = False, started: float | None = None,
                   job_started: float | None = None, watchdog: processes.Watchdog | None = None) -> dict:
    """Train on already loaded `splits` into a prepared `run_dir` (benchmarks call this directly)."""
    watchdog = watchdog or processes.Watchdog()  # alone: one that is never started
    activate_backend(cfg.get("backend", "tensorflow"))
    start_backend()  # after the checks above: bad input fails before the backend's start-up
    watchdog.tick()  # several processes: a phase done is progress
    fresh_session()  # a sweep runs jobs one after another in this process
    set_cpu_threads(cfg.trainer.get("threads"))
    device = select_device(cfg.trainer.get("device", "auto"))
    with precision_policy(cfg.trainer.precision), \
            distribution_scope(cfg.trainer.get("distribution", "none"), cfg.trainer.get("devices")) as strategy:
        group = processes.current()
        job = Job(cfg, setup, splits, Path(run_dir), started or time.perf_counter(), resuming, device,
                  replicas=strategy.num_replicas_in_sync if strategy is not None else 1,
                  job_started=job_started or time.time(),
                  shard=(group.rank, group.count) if group is not None else (0, 1), watchdog=watchdog)
        return _train(job)


@dataclass
class Job:
    """What every step of one training run needs to know."""

    cfg: object
    setup: losses.LossSetup
    splits: Splits
    run_dir: Path
    started: float
    resuming: bool
    device: tuple[str, str]  # ("cpu" | "gpu", a readable name)
    replicas: int
    job_started: float  # time.time() when the job started: the reference of startup_s
    shard: tuple[int, int] = (0, 1)  # (this process, processes): its part of every batch
    watchdog: processes.Watchdog = field(default_factory=processes.Watchdog)  # ticked at every step and phase

    @property
    def processes(self) -> int:
        return self.shard[1]

    @property
    def split_over(self) -> int:
        """DataParallel splits every batch evenly over its devices; the other strategies need no even split."""
        return self.replicas if self.cfg.trainer.get("distribution") == "data_parallel" else 1


@dataclass
class Callbacks:
    """The callbacks of the fit, and the ones whose figures go into metrics.json."""

    all: list
    guard: object
    throughput: object
    stability: object | None
    backup: object  # removed once the run's record is written


def _train(job: Job) -> dict:
    import keras

    keras.utils.set_random_seed(job.cfg.seed)
    _check_batch_split(job)
    _log_setup(job)
    model, logits_model, tracker, removed = build_and_compile(job)
    path = measure_loss_path(model, job.setup)
    job.watchdog.tick()
    datasets = make_datasets(job)
    callbacks = make_callbacks(job, model, tracker, datasets["train"])
    fit(job, model, datasets, callbacks.all)
    test = evaluate_test(job, model, logits_model, datasets["test"])
    metrics = metrics_record(job, model, path, test, callbacks, removed)
    if job.processes > 1:
        _compare_weights(model, metrics)
    metrics = write_record(job, metrics)
    callbacks.backup.remove()  # kept until now: a run stopped during its test evaluation resumes too
    return metrics


def _compare_weights(model, metrics: dict) -> None:
    """Every process's weights against process 0's; a mismatch fails the run."""
    metrics["weights_match"] = processes.weights_match(model)
    if not metrics["weights_match"]:
        metrics["status"] = "failed"
        metrics["error"] = f"the weights of the {metrics['processes']} processes differ at the end of training"


def _check_batch_split(job: Job) -> None:
    batch, split_over = job.cfg.trainer.batch_size, job.split_over
    if batch % split_over:
        raise UserError(f"trainer.batch_size={batch}: data_parallel splits every batch over "
                        f"{split_over} devices, so the batch size must be a multiple of {split_over}")


def _log_setup(job: Job) -> None:
    import keras

    cfg, setup, sizes = job.cfg, job.setup, job.splits.sizes()
    log.info(
        "data=%s classes=%s train/val/test=%d/%d/%d  model=%s  loss=%s (head=%s, labels=%s)  "
        "backend=%s precision=%s device=%s (%s) replicas=%d",
        job.splits.name, job.splits.classes(), sizes["train"], sizes["val"], sizes["test"], model_name(cfg.model),
        setup.name, setup.head, setup.labels, keras.backend.backend(), cfg.trainer.precision, job.device[0],
        job.device[1], job.replicas,
    )
    log.info("loss computes: %s", setup.formulation.computes)


def build_and_compile(job: Job):
    """Step 3: the network (with its stability tracker when telemetry is on), compiled; and the head taken off
    the configured model so that `loss=` decides the loss (None when it output logits)."""
    cfg, setup = job.cfg, job.setup
    tracker = StabilityTracker(step_figures=bool(cfg.telemetry.get("every_n_steps"))) if cfg.telemetry.enabled else None
    model, logits_model, removed = build_network(cfg, setup, job.splits.x_train.shape[1:], job.splits.num_classes,
                                                 tracker)
    model.compile(
        optimizer=make_optimizer(cfg.optimizer),
        loss=setup.make_loss(),
        metrics=[setup.accuracy_metric()],
        jit_compile=jit_setting(cfg.trainer.get("jit_compile", "auto"), job.device[0],
                                distributed=cfg.trainer.get("distribution", "none") != "none"),
        steps_per_execution=steps_per_execution(
            cfg.trainer.get("steps_per_execution", AUTO), cfg.get("backend", "tensorflow"), job.device[0],
            every_step=verbosity(cfg) == 1 or bool(cfg.telemetry.get("every_n_steps"))),
    )
    return model, logits_model, tracker, removed


def make_datasets(job: Job) -> dict:
    """Step 4: train (reshuffled every epoch, seeded), validation and test batches."""
    splits = job.splits
    return {
        "train": _dataset(job, splits.x_train, splits.y_train, shuffle=True),
        "val": _dataset(job, splits.x_val, splits.y_val, shuffle=False),
        "test": _dataset(job, splits.x_test, splits.y_test, shuffle=False),
    }


def _dataset(job: Job, x, y, shuffle: bool):
    """Batches of one split; a fresh training dataset draws the same seeded orders as the first."""
    labels = job.setup.encode_labels(y, job.splits.num_classes)
    return make_dataset(x, labels, job.cfg.trainer.batch_size, shuffle=shuffle, seed=job.cfg.seed,
                        replicas=job.split_over, shard=job.shard)


def diagnose_step(job: Job, model, epoch: int, step: int) -> dict:
    """Where the first non-finite step went non-finite (keras_loss_recipes/training/nonfinite_origin.py), said in the log: its batch
    drawn again from a fresh training dataset, the model as it is at the end of that epoch."""
    from keras_loss_recipes.training.nonfinite_origin import diagnose

    policy = job.cfg.trainer.on_nonfinite
    weights = "from before the step" if policy == "stop" else f"of epoch {epoch}'s end: {policy} applied its later steps"
    where, started = {"epoch": epoch, "step": step}, time.perf_counter()
    try:
        x, y = batch_of(_dataset(job, job.splits.x_train, job.splits.y_train, shuffle=True), epoch, step)[:2]
        origin = diagnose(model, x, y, job.setup, where, weights)
        origin["seconds"] = round(time.perf_counter() - started, 3)
    except Exception as err:  # the diagnosis must not end the run it diagnoses
        log.warning("the first non-finite step (epoch %d step %d) could not be diagnosed: %s: %s",
                    epoch, step, type(err).__name__, err)
        return {**where, "kind": None, "error": f"{type(err).__name__}: {err}",
                "text": f"first non-finite step at epoch {epoch} step {step}: not diagnosed ({type(err).__name__})"}
    log.warning("%s (diagnosed in %.2f s)", origin["text"], origin["seconds"])
    return origin


def make_callbacks(job: Job, model, tracker, train_data=None) -> Callbacks:
    """Step 5, in the order they must run. None has a batch hook unless asked for (`verbose=1`, step figures,
    several processes): JAX and PyTorch then queue steps ahead of the device."""
    import keras

    # Imported here: the callbacks module imports Keras, which must wait for the backend choice.
    from keras_loss_recipes.training.backup import Backup
    from keras_loss_recipes.training.save_schedule import parse_every
    from keras_loss_recipes.training.callbacks import (
        EpochEventLogger, EpochLine, HistoryFile, NonFiniteGuard, Progress, ProgressBar, SaveModels, StabilityLogger,
        StepFigures, TrainThroughput,
    )
    from keras_loss_recipes.training.hold import hold_from_environment
    from keras_loss_recipes.training.preemption_stop import PreemptionStop, StepCounter

    cfg, run_dir = job.cfg, job.run_dir
    models = SaveModels(keras.Model(model.inputs, model.outputs), run_dir)
    stability = StabilityLogger(run_dir / "train") if tracker else None
    epoch_events = EpochEventLogger(run_dir)
    steps = StepCounter()
    backup = Backup(run_dir / BACKUP_DIR, functools.partial(fast_forward, train_data) if train_data is not None else None,
                    parse_every(cfg.trainer.get("backup_every", 1)), extras=[models],
                    before_save=[epoch_events.flush, *([stability.flush] if stability else [])], steps=steps,
                    batch_spec=functools.partial(batch_spec, train_data) if train_data is not None else None)
    # A backup older than the history (saved every few epochs): the epochs after it are trained again.
    earlier = truncate_history(run_dir, backup.resumes_after) if job.resuming else read_history(run_dir)
    models.best = max((v for r in earlier if np.isfinite(v := r.get("val_accuracy", float("nan")))),
                      default=-np.inf)
    guard = NonFiniteGuard(stop=cfg.trainer.on_nonfinite == "stop", diagnose=functools.partial(diagnose_step, job))
    throughput = TrainThroughput(job.splits.sizes()["train"], job.job_started)
    every_n_steps = cfg.telemetry.get("every_n_steps")
    verbose = verbosity(cfg)
    if job.resuming:
        mark_restart(run_dir, backup.resumes_after)
    callbacks = [
        # First: a preemption in the middle of an epoch is saved before anything records the epoch.
        PreemptionStop(steps, backup),
        # Before Keras's own loggers: these two take their figures out of the logs.
        *([stability] if stability else []),
        guard,
        *([StepFigures(run_dir / "train", every_n_steps)] if stability and every_n_steps else []),
        *([EpochLine(stability)] if verbose == 2 else [ProgressBar()] if verbose == 1 else []),
        epoch_events,
        HistoryFile(run_dir / HISTORY_FILE),
        models,
        throughput,
        # Several processes: every step tells the stall watchdog that the group still moves.
        *([Progress(job.watchdog.tick)] if job.processes > 1 else []),
        # Last: it saves the epoch once the history, the logs and the best weights have it (it restores the
        # newest backup when the fit starts, before the first epoch).
        backup,
    ]
    # Tests only (off unless RECIPES_HOLD_AFTER_EPOCH is set): last, so the epoch is on disk when it holds.
    hold = hold_from_environment(cfg.trainer.epochs, run_dir / BACKUP_DIR, job.shard[0], job.resuming)
    if hold is not None:
        callbacks.append(hold)
    if job.resuming:
        at = f" and step {backup.resumes_at_step} of the next" if backup.resumes_at_step else ""
        log.info("resuming the interrupted run in %s after epoch %d%s", run_dir, backup.resumes_after, at)
    return Callbacks(callbacks, guard, throughput, stability, backup)


def mark_restart(run_dir: Path, epoch: int) -> None:
    """A resumed run trains again from `epoch`: TensorBoard is told to drop what the earlier attempt logged
    from there on (in train/ and validation/, where the epoch figures go)."""
    from keras_loss_recipes.runtime.event_files import summary_writer

    for name in ("train", "validation"):
        if (run_dir / name).is_dir():
            with summary_writer(run_dir / name) as writer:
                writer.restart_at(epoch)


def fit(job: Job, model, datasets: dict, callbacks: list) -> None:
    """Step 6."""
    cfg = job.cfg
    log.info("training %d epochs, batch %d, run dir %s", cfg.trainer.epochs, cfg.trainer.batch_size, job.run_dir)
    # A preemption signal now stops the fit after its step (keras_loss_recipes/training/preemption_stop.py).
    with preemption.stops_at_steps(model):
        model.fit(
            datasets["train"],
            validation_data=datasets["val"],
            epochs=cfg.trainer.epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself each epoch, seeded
            # The console lines come from the callbacks (EpochLine or ProgressBar), never from a bar Keras adds.
            verbose=1 if verbosity(cfg) == 1 else 0,
        )
    if preemption.requested() is not None:  # it came as training ended: the last backup stands
        raise preemption.Preempted(preemption.requested())


def verbosity(cfg) -> int:
    """trainer.verbose as Keras reads it ("auto" is 1, the progress bar)."""
    verbose = cfg.trainer.get("verbose", 2)
    return 1 if verbose == "auto" else int(verbose)


def evaluate_test(job: Job, model, logits_model, test_ds) -> dict:
    """Step 7: the model as it is after the last epoch, on the test split."""
    splits = job.splits
    scores = model.evaluate(test_ds, verbose=0, return_dict=True)
    test_loss, test_accuracy = scores["loss"], scores["accuracy"]
    logits = test_logits(job, logits_model)
    with np.errstate(all="ignore"):
        exact_ce = float(np.mean(losses.exact_cross_entropy(logits, splits.y_test)))
        ece = expected_calibration_error(logits, splits.y_test) if np.all(np.isfinite(logits)) else None
    return {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            "test_exact_ce": exact_ce, "test_ece": ece}


def test_logits(job: Job, logits_model) -> np.ndarray:
    """The logits of every test image; streamed images (a folder) a chunk at a time, as they are read."""
    images = job.splits.x_test
    chunk = STREAMED_CHUNK if is_streamed(images) else max(len(images), 1)
    return np.concatenate([
        predict_logits(logits_model, scale_images(images[i:i + chunk]), job.cfg.trainer.batch_size, job.split_over,
                       job.shard) for i in range(0, len(images), chunk)])


STREAMED_CHUNK = 1024  # test images read at once from a streamed source


def metrics_record(job: Job, model, path, test: dict, callbacks: Callbacks, removed=None) -> dict:
    """Step 8's content: what metrics.json holds (wall_s is filled in when it is written)."""
    import keras

    cfg, guard = job.cfg, callbacks.guard
    history = read_history(job.run_dir)
    diverged = guard.first_nonfinite is not None and cfg.trainer.on_nonfinite == "stop"
    last = history[-1] if history else {}
    metrics = {
        "status": "diverged" if diverged else "ok",
        **_what_ran(job, path),
        "epochs_completed": len(history) - (1 if diverged else 0),
        "resumed": job.resuming,
        "train_examples": job.splits.sizes()["train"],
        "input_shape": list(job.splits.x_train.shape[1:]),
        "num_classes": job.splits.num_classes,
        "class_names": job.splits.class_names,
        # The last epoch's validation figures: what a sweeper can optimise (`optimized_metric`).
        **{key: float(last.get(key, float("nan"))) for key in VALIDATION_FIGURES},
        **test,
        "test_model": saved_files(job.run_dir)[0],  # the test figures above are this saved model's
        "best_model": _best_model(history, saved_files(job.run_dir)[1]),
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


def _best_model(history: list[dict], best_file: str) -> dict:
    """Which epoch best.keras holds (the highest finite validation accuracy, over every attempt)."""
    scored = [(row["val_accuracy"], i + 1) for i, row in enumerate(history)
              if np.isfinite(row.get("val_accuracy", float("nan")))]
    if not scored:
        return {"file": None, "epoch": None, "val_accuracy": None}
    value, epoch = max(scored, key=lambda pair: (pair[0], -pair[1]))  # the first of equal epochs, as saved
    return {"file": best_file, "epoch": epoch, "val_accuracy": value}


def _what_ran(job: Job, path) -> dict:
    import keras

    cfg, setup = job.cfg, job.setup
    return {
        "loss": setup.name,
        "loss_path": path.path,
        "warnings": [path.warning] if path.warning else [],
        "head": setup.head,
        "label_format": setup.labels,
        "data": job.splits.name,
        "model": model_name(cfg.model),
        "optimizer": cfg.optimizer.name,
        "seed": int(cfg.seed),
        "backend": keras.backend.backend(),
        "precision": cfg.trainer.precision,
        "device": job.device[0],
        "device_name": job.device[1],
        "replicas": job.replicas,
        "processes": job.processes,
        "weights_match": None,  # several processes: whether all ended with process 0's weights
    }


def write_record(job: Job, metrics: dict) -> dict:
    """Step 8: metrics.json and the HParams summary; one closing log line."""
    if metrics["status"] == "diverged":
        first = metrics["first_nonfinite"]
        log.warning(
            "DIVERGED: the loss or gradients became NaN/inf at epoch %d, step %d; training stopped "
            "(trainer.on_nonfinite=stop). Metrics of the last finite epoch are in metrics.json "
            "under last_finite.", first["epoch"], first["step"],
        )
    metrics["wall_s"] = round(time.perf_counter() - job.started, 2)
    out = write_metrics(job.run_dir, metrics)
    write_run_views(job.run_dir, metrics)
    log.info(
        "done (%s): val_accuracy=%.4f test_accuracy=%.4f test_exact_ce=%.4f loss_path=%s (%s)",
        metrics["status"], metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_exact_ce"],
        metrics["loss_path"], out,
    )
    return metrics
