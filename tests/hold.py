"""The tests' hold: a run holds still after a given epoch until a signal ends it.

Off unless the environment asks (`asked(...)` gives the variables, the hook
included): the package adds it to a run's callbacks through RECIPES_CALLBACKS
(keras_loss_recipes/recipes/train/callbacks.py), so nothing of it is in the package.
A test that stops a run (SIGKILL, Ctrl-C, `scancel`, a SLURM time limit) must
stop it at a known point, whatever the CPU's speed: on a fast machine a small
run can finish before a signal sent "after the first epoch" arrives. With

    RECIPES_HOLD_AFTER_EPOCH=N   hold after epoch N (1-based), once its backup,
                                 history.csv row and models are written, if
                                 epochs remain; a run of N epochs or fewer never holds
    RECIPES_HOLD_AFTER_STEP=S    hold in epoch N + 1 instead, after its step S (1-based):
                                 a signal then comes in the middle of an epoch
    RECIPES_HOLD_THROUGH_SIGNAL=1
                                 a preemption signal does not end the hold (a step that
                                 takes longer than trainer.preemption_grace_s)
    RECIPES_HOLD_PROCESS=K       several processes: only process K holds (default: each)
    RECIPES_HOLD_SECONDS=S       then go on, with a warning (default 600)

the run writes `held` into its backup directory (the file goes with the backup
when the run finishes), logs one line and sleeps. A test that waits for that
file, then signals, stops the run between epoch N and N + 1 (or after step S)
on any machine; one that removes the file lets the run go on (after changing the
world around it: filling its disk). A preemption signal ends the hold: the run
then stops as it would have after that step.
Nothing else changes: the epochs before the hold are those of an unheld run.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from keras_loss_recipes.recipes.train.callbacks import CALLBACKS_VAR
from keras_loss_recipes.runtime import preemption
from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

# Importable without Keras (scripts/exact_resume.py sets them for its child run).
EPOCH_VAR, PROCESS_VAR, SECONDS_VAR = "RECIPES_HOLD_AFTER_EPOCH", "RECIPES_HOLD_PROCESS", "RECIPES_HOLD_SECONDS"
STEP_VAR, THROUGH_VAR = "RECIPES_HOLD_AFTER_STEP", "RECIPES_HOLD_THROUGH_SIGNAL"
DEFAULT_SECONDS = 600.0
NOTICE = "held"  # written into the backup directory once the run holds
HOOK = "tests.hold:callbacks_for"  # what RECIPES_CALLBACKS names: `callbacks_for` below


def asked(**variables) -> dict:
    """The environment variables of a hold (e.g. `asked(**{EPOCH_VAR: "2"})`), the hook that adds it included."""
    return {CALLBACKS_VAR: HOOK, **variables}


def callbacks_for(run) -> list:
    """The hook: the hold the environment asks for in `run` (a keras_loss_recipes Run), as a list."""
    from keras_loss_recipes.runtime.run_files import BACKUP_DIR

    found = hold_from_environment(run.cfg.trainer.epochs, run.dir / BACKUP_DIR, run.rank, run.resuming)
    return [] if found is None else [found]


def ctrl_c_restored() -> None:
    """For Popen's `preexec_fn`: the child takes SIGINT as Ctrl-C, even where its parent was started as a
    shell's background job (`... &`), which ignores SIGINT and passes that on to its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_held(process, notice: Path, timeout: float | None = None) -> bool:
    """For whoever started the run (`process`, a Popen): poll until it holds (`notice` exists: True) or ends
    (False); TimeoutError once `timeout` seconds have passed without either."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not Path(notice).exists():
        if process.poll() is not None:
            return False
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the run never held ({notice} did not appear in {timeout:.0f} s)")
        time.sleep(0.05)
    return True


def _integer(name: str, minimum: int) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < minimum:
        raise UserError(f"{name}={raw}: must be an integer >= {minimum} (a test hook; unset it to train normally)")
    return int(raw)


def hold_from_environment(epochs: int, backup_dir: Path, rank: int = 0, resuming: bool = False):
    """The hold the environment asks for (a Keras callback, the fit's last), in a run of `epochs` epochs as
    process `rank`; None when none. A resumed run never holds (a requeued SLURM job keeps its environment)."""
    after = _integer(EPOCH_VAR, 1)
    step = _integer(STEP_VAR, 1)
    only = _integer(PROCESS_VAR, 0)
    if after is None or after >= epochs or (only is not None and only != rank) or resuming:
        return None
    seconds = float(os.environ.get(SECONDS_VAR) or DEFAULT_SECONDS)
    return _hold_class()(after, step, seconds, Path(backup_dir) / NOTICE, os.environ.get(THROUGH_VAR) == "1")


def _hold_class():
    # Built on first use: importing Keras at module import would fix its backend too early.
    import keras

    class Hold(keras.callbacks.Callback):
        """At the end of epoch `after` (1-based), or after step `step` of the next one: write `notice`, then
        sleep for at most `seconds`, until the notice is removed or (unless `through_signal`) a preemption
        signal comes."""

        def __init__(self, after: int, step: int | None, seconds: float, notice: Path, through_signal: bool):
            super().__init__()
            self.after, self.step, self.seconds, self.notice = after, step, seconds, notice
            self.through_signal = through_signal
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if self.step is None and epoch + 1 == self.after:
                self._hold(f"after epoch {self.after}")

        def on_train_batch_end(self, batch, logs=None):
            if self.step is not None and self._epoch == self.after and batch + 1 == self.step:
                self._hold(f"in epoch {self.after + 1} after step {self.step}")

        def _hold(self, where: str) -> None:
            self.notice.parent.mkdir(parents=True, exist_ok=True)
            self.notice.write_text(f"{where}\n")
            log.info("held %s (%s): waiting for a signal, at most %.0f s", where, EPOCH_VAR, self.seconds)
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if not self.notice.exists():
                    log.info("released %s: the run goes on", where)
                    return
                if preemption.noticed() is not None and not self.through_signal:
                    return
            log.warning("no signal came in %.0f s of hold %s: the run goes on", self.seconds, where)

    return Hold
