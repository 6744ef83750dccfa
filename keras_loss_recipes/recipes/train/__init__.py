"""The training recipe: train a classifier with one loss formulation and record what it did.

    metrics = train(cfg, run)      # as train.py's job runs it, in a `Run` it opened
    metrics = run(cfg, run_dir)    # the same from Python (a script, a test)

1. Take the loss the config describes; start the run directory (fresh, or resume
   an interrupted run: `Run.prepare`); load the data.
2. Start a clean Keras session: CPU threads, device, precision, distribution.
3. Build and compile the network; measure the loss path Keras really takes.
4. Make the datasets, labels encoded as the formulation needs them.
5. Wire the callbacks: backup, stability figures, the NaN/inf guard,
   TensorBoard, history.csv, best/last models, throughput (callbacks.py).
6. Fit.
7. Evaluate the model after the last epoch (saved as last.keras) on the test
   split: accuracy, the formulation's own loss, and the exact cross entropy and
   calibration error of the logits (keras_loss_recipes/evaluation/). best.keras
   (the best validation epoch) is kept beside it and named in the record.
8. Write the record: metrics.json and the TensorBoard HParams (record.py).

`run_dir` receives the TensorBoard logs (train/, validation/), history.csv,
best.keras, last.keras and metrics.json. What happens around the steps (the
lock, resuming a killed run, preemption signals, several processes, the record
of a failure) is the run's (keras_loss_recipes/lifecycle/run.py): a run killed mid-way
is resumed from its last backup by the same command with the same run directory.
Several processes may train one model (JAX): each feeds its part of every batch,
and at the end they compare their weights (`weights_match` in metrics.json).
"""
from __future__ import annotations

import logging

from keras_loss_recipes.config.model_inputs import fill_vocabulary
from keras_loss_recipes.config.settings import check_loss
from keras_loss_recipes.data import load_splits, tasks
from keras_loss_recipes.data.inputs import input_dtype
from keras_loss_recipes.evaluation import held_out
from keras_loss_recipes.recipes.train.callbacks import make_callbacks
from keras_loss_recipes.recipes.train.context import Training
from keras_loss_recipes.recipes.train.record import log_setup, metrics_record, say_how_it_ended
from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.losses import MULTILABEL
from keras_loss_recipes.runtime import preemption
from keras_loss_recipes.runtime.distribution import jit_setting
from keras_loss_recipes.runtime.execution import steps_per_execution
from keras_loss_recipes.runtime.quiet import start_backend
from keras_loss_recipes.runtime.session import started_session
from keras_loss_recipes.training.network import build_network, measure_loss_path
from keras_loss_recipes.training.optimizers import make_optimizer
from keras_loss_recipes.training.telemetry import StabilityTracker

log = logging.getLogger(__name__)


def train(cfg, run: Run, splits=None) -> dict:
    """The eight steps, in `run` (opened by the job); `splits`: the data, when already loaded (benchmarks)."""
    setup = check_loss(cfg)  # 1.
    run.prepare()
    splits = load_splits(cfg.data) if splits is None else splits  # before the backend starts: bad data fails fast
    tasks.check_labels(splits, cfg.task)
    fill_vocabulary(cfg.model, splits)
    run.progress()
    start_backend()  # after the checks above: bad input fails before the backend's start-up
    run.progress()
    with started_session(cfg.trainer) as session:  # 2.
        job = Training(cfg, setup, splits, run, session)
        set_random_seed(cfg.seed)
        job.check_batch_split()
        log_setup(job)
        model, logits_model, tracker, removed = build_and_compile(job)  # 3.
        path = measure_loss_path(model, setup)
        run.progress()
        datasets = make_datasets(job)  # 4.
        callbacks = make_callbacks(job, model, tracker, datasets["train"])  # 5.
        fit(job, model, datasets, callbacks.all)  # 6.
        test = held_out.scores(model, logits_model, datasets["test"], splits, cfg.trainer.batch_size,  # 7.
                               job.split_over, job.shard, task=cfg.task)
        return write_record(job, model, metrics_record(job, model, path, test, callbacks, removed))  # 8.


run = in_process(train)


def set_random_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def build_and_compile(job: Training):
    """Step 3: the network (with its stability tracker when telemetry is on), compiled; and the head taken off
    the configured model so that `loss=` decides the loss (None when it output logits)."""
    cfg, setup = job.cfg, job.setup
    every_n_steps = cfg.telemetry.every_n_steps
    tracker = StabilityTracker(step_figures=bool(every_n_steps)) if cfg.telemetry.enabled else None
    model, logits_model, removed = build_network(cfg, setup, job.splits.x_train.shape[1:],
                                                 tasks.outputs(cfg.task, job.splits.num_classes), tracker,
                                                 input_dtype(job.splits.inputs))
    model.compile(
        optimizer=make_optimizer(cfg.optimizer),
        loss=setup.make_loss(),
        metrics=task_metrics(job),
        jit_compile=jit_setting(cfg.trainer.jit_compile, job.device[0],
                                distributed=cfg.trainer.distribution != "none"),
        steps_per_execution=steps_per_execution(cfg.trainer.steps_per_execution, cfg.backend, job.device[0],
                                                every_step=job.verbose == 1 or bool(every_n_steps)),
    )
    return model, logits_model, tracker, removed


def task_metrics(job: Training) -> list:
    """What the fit measures besides the loss: accuracy (of a sigmoid per unit: of every unit, the mean over
    the labels), and for task=multilabel the macro F1 over the labels."""
    metrics = [job.setup.accuracy_metric()]
    if job.cfg.task == MULTILABEL:
        from keras_loss_recipes.training.task_metrics import MacroF1

        metrics.append(MacroF1(job.splits.num_classes, threshold=0.0 if job.setup.head == "logits" else 0.5))
    return metrics


def make_datasets(job: Training) -> dict:
    """Step 4: train (reshuffled every epoch, seeded), validation and test batches."""
    splits = job.splits
    return {
        "train": job.dataset(splits.x_train, splits.y_train, shuffle=True),
        "val": job.dataset(splits.x_val, splits.y_val, shuffle=False),
        "test": job.dataset(splits.x_test, splits.y_test, shuffle=False),
    }


def fit(job: Training, model, datasets: dict, callbacks: list) -> None:
    """Step 6."""
    cfg = job.cfg
    log.info("training %d epochs, batch %d, run dir %s", cfg.trainer.epochs, cfg.trainer.batch_size, job.run.dir)
    # A preemption signal now stops the fit after its step (keras_loss_recipes/training/preemption_stop.py).
    with preemption.stops_at_steps(model):
        model.fit(
            datasets["train"],
            validation_data=datasets["val"],
            epochs=cfg.trainer.epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself each epoch, seeded
            # The console lines come from the callbacks (EpochLine or ProgressBar), never from a bar Keras adds.
            verbose=1 if job.verbose == 1 else 0,
        )
    if preemption.requested() is not None:  # it came as training ended: the last backup stands
        raise preemption.Preempted(preemption.requested())


def write_record(job: Training, model, metrics: dict) -> dict:
    """Step 8: metrics.json and the HParams summary (several processes compare their weights first); the closing
    lines."""
    written = job.run.finish(metrics, model)
    say_how_it_ended(metrics, written)
    return metrics
