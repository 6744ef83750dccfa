"""Step 5 of the training recipe: the callbacks of the fit, each given its own inputs.

None reads what another one left in the epoch's logs, or removes anything from
them. The list's order follows the run's life: the preemption stop first (a
stop in the middle of an epoch is saved before anything records the epoch),
the backup last (it saves the epoch once the history, the event files and the
best weights have it, and restores the newest backup when the fit starts).
None has a batch hook unless asked for (`verbose=1`, step figures, several
processes): JAX and PyTorch then queue steps ahead of the device.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from keras_loss_recipes.data.pipeline import batch_of, batch_spec, fast_forward
from keras_loss_recipes.recipes.train.context import Training
from keras_loss_recipes.recipes.train.record import best_epoch
from keras_loss_recipes.runtime.run_files import HISTORY_FILE
from keras_loss_recipes.runtime.targets import resolve_target

log = logging.getLogger(__name__)


@dataclass
class Callbacks:
    """The callbacks of the fit, and the ones whose figures go into metrics.json."""

    all: list
    guard: object
    throughput: object
    stability: object | None


def make_callbacks(job: Training, model, tracker, train_data) -> Callbacks:
    """The fit's callbacks for `model` (with its stability `tracker`, None when telemetry is off), trained on
    the dataset `train_data`."""
    import keras

    # Imported here: the callbacks import Keras, which must wait for the backend choice.
    from keras_loss_recipes.training import callbacks as cb
    from keras_loss_recipes.training.preemption_stop import PreemptionStop, StepCounter

    cfg, run = job.cfg, job.run
    models = cb.SaveModels(keras.Model(model.inputs, model.outputs), run.dir)
    stability = cb.StabilityLogger(run.dir / "train") if tracker else None
    epoch_events = cb.EpochEventLogger(run.dir)
    steps = StepCounter()
    logged = [stability] if stability else []
    # The stability logger's last epoch goes into the backup too: a run resumed after its last epoch records it.
    backup = run.backup(extras=[models, *logged], before_save=[epoch_events.flush, *(s.flush for s in logged)],
                        steps=steps, fast_forward=functools.partial(fast_forward, train_data),
                        batch_spec=functools.partial(batch_spec, train_data))
    best = best_epoch(run.resumed_history())
    models.best = -np.inf if best is None else best[0]
    guard = cb.NonFiniteGuard(stop=cfg.trainer.on_nonfinite == "stop", diagnose=functools.partial(diagnose_step, job))
    throughput = cb.TrainThroughput(job.splits.sizes()["train"], run.job_started)
    every_n_steps = cfg.telemetry.every_n_steps
    console = {2: [cb.EpochLine(stability=bool(stability))], 1: [cb.ProgressBar()]}.get(job.verbose, [])
    callbacks = [
        PreemptionStop(steps, backup),
        *([stability] if stability else []),
        guard,
        *([cb.StepFigures(run.dir / "train", every_n_steps)] if stability and every_n_steps else []),
        *console,
        epoch_events,
        cb.HistoryFile(run.dir / HISTORY_FILE),
        models,
        throughput,
        # Several processes: every step tells the stall watchdog that the group still moves.
        *([cb.Progress(run.watchdog.tick)] if run.processes > 1 else []),
        backup,
    ]
    return Callbacks([*callbacks, *callbacks_from_environment(run)], guard, throughput, stability)


# Callbacks of yours in every run this environment starts: RECIPES_CALLBACKS=module:function, where function(run)
# (run: keras_loss_recipes.lifecycle.run.Run) returns a list of Keras callbacks. They come last, so an epoch is on
# disk when they see it. The tests stop runs at known points with it (tests/hold.py).
CALLBACKS_VAR = "RECIPES_CALLBACKS"


def callbacks_from_environment(run) -> list:
    named = os.environ.get(CALLBACKS_VAR, "").strip()
    if not named:
        return []
    return list(resolve_target(named.replace(":", "."), CALLBACKS_VAR)(run) or [])


def diagnose_step(job: Training, model, epoch: int, step: int) -> dict:
    """Where the first non-finite step went non-finite (keras_loss_recipes/training/nonfinite_origin.py), said in
    the log: its batch drawn again from a fresh training dataset, the model as it is at the end of that epoch."""
    from keras_loss_recipes.training.nonfinite_origin import diagnose

    policy = job.cfg.trainer.on_nonfinite
    weights = "from before the step" if policy == "stop" else f"of epoch {epoch}'s end: {policy} applied its later steps"
    where, started = {"epoch": epoch, "step": step}, time.perf_counter()
    try:
        x, y = batch_of(job.dataset(job.splits.x_train, job.splits.y_train, shuffle=True), epoch, step)[:2]
        origin = diagnose(model, x, y, job.setup, where, weights)
        origin["seconds"] = round(time.perf_counter() - started, 3)
    except Exception as err:  # the diagnosis must not end the run it diagnoses
        log.warning("the first non-finite step (epoch %d step %d) could not be diagnosed: %s: %s",
                    epoch, step, type(err).__name__, err)
        return {**where, "kind": None, "error": f"{type(err).__name__}: {err}",
                "text": f"first non-finite step at epoch {epoch} step {step}: not diagnosed ({type(err).__name__})"}
    log.warning("%s (diagnosed in %.2f s)", origin["text"], origin["seconds"])
    return origin
