"""Stopping a fit at a step when a preemption signal comes (keras_loss_recipes/runtime/preemption.py), and resuming there.

The signal's handler sets `model.stop_training`: Keras ends its loop after the
step under way (after the call, with `steps_per_execution` > 1). `PreemptionStop`,
the fit's first callback, then sees where the epoch stands before anything records
it: in the middle, it saves the backup of that step (weights, optimizer, random
state and the epoch's running figures, keras_loss_recipes/training/backup.py) and raises
Preempted before validation; at the epoch's end, the epoch completes (validation,
history, logs) and the backup callback saves it and raises.

Several processes stop after the step they agree on: the wrapper tells the
preemption module each call made (`preemption.after_step`), which sets
`model.stop_training` at that step in every process.

Counting the steps takes no batch hook (which would make every step wait for the
device): `StepCounter` wraps the model's train function and counts its calls. On
a resume in the middle of epoch e at step s, its first calls pull their batches
from the data (the same order: the epoch's data are those of the run never
stopped) and train nothing, so step s + 1 trains on the batch it would have.
"""
from __future__ import annotations

import keras

from keras_loss_recipes.runtime import preemption, private_api


class StepCounter:
    """The model's train function (`wrap`), counting the calls of this epoch. `skip_first(steps, then)`: the
    next `steps` steps pass over their batches without training; `then()` runs before the first of them."""

    def __init__(self):
        self.calls = 0
        self.per_call = 1  # steps per call: the model's steps_per_execution
        self._function = None
        self._skip = 0
        self._then = None

    def wrap(self, model) -> None:
        self._function = private_api.fit_step_function(model)
        self.per_call = int(getattr(model, "steps_per_execution", 1) or 1)
        private_api.set_fit_step_function(model, self)

    def unwrap(self, model) -> None:
        if private_api.fit_step_function(model) is self:
            private_api.set_fit_step_function(model, self._function)

    def steps(self, of: int) -> int:
        """Steps of this epoch done (`of`: the epoch's steps; the last call may hold fewer than per_call)."""
        return min(self.calls * self.per_call, of)

    def skip_first(self, steps: int, then=None) -> None:
        if steps % self.per_call:
            raise ValueError(f"a backup at step {steps} cannot be resumed with {self.per_call} steps per execution")
        self._skip, self._then = steps // self.per_call, then

    def __call__(self, *args):
        self.calls += 1
        if self._then is not None:
            then, self._then = self._then, None
            then()
        if self._skip:
            self._skip -= 1
            logs = self._pass_over(*args)
        else:
            logs = self._function(*args)
        preemption.after_step()  # several processes: stop after the step they agreed on
        return logs

    def _pass_over(self, *args):
        """The call's batches are taken (the data move on as the stopped run's did); nothing trains. The step's
        logs are empty: the epoch's figures come from a later step, which the resume always has."""
        return private_api.pass_over_train_call(args, self.per_call)


class PreemptionStop(keras.callbacks.Callback):
    """The fit's first callback: wraps the train function in `steps` for the fit, and stops the fit at the step
    the preemption signal let finish, saving it with `backup` (a Backup)."""

    def __init__(self, steps: StepCounter, backup):
        super().__init__()
        self.steps = steps
        self.backup = backup
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.steps.wrap(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self.steps.calls = epoch, 0

    def on_test_begin(self, logs=None):
        self._stop_in_epoch()  # fit's validation: the epoch's steps are over, or the loop broke

    def on_epoch_end(self, epoch, logs=None):
        self._stop_in_epoch()  # a fit without validation data

    def on_train_end(self, logs=None):
        self.steps.unwrap(self.model)

    def _stop_in_epoch(self) -> None:
        signum = preemption.requested()
        if signum is None or not self.model.stop_training:
            return
        total = self.params.get("steps") or 0
        done = self.steps.steps(total)
        if not total or done >= total:
            return  # the epoch is whole: it completes, and the backup callback saves it at its end
        self.backup.save(self._epoch, done)
        raise preemption.Preempted(signum, kept=f"epoch {self._epoch + 1} step {done} of {total}")
