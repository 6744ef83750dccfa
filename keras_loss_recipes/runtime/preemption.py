"""Preemption: the signal a scheduler sends before it stops a job ends the run cleanly, resumable.

SLURM sends SIGTERM when it preempts or cancels a job (and, with `--signal=USR1@60`,
SIGUSR1 a minute before its time limit); Kubernetes sends SIGTERM when it evicts a
pod; a spot VM's shutdown too. `trainer.preemption_signals` lists the signals a run
takes as preemption (default: SIGTERM).

On one, during training, the run finishes the step under way, writes a backup of
that step (keras_loss_recipes/training/preemption_stop.py), and then stops; anywhere else
(start-up, the test evaluation) it stops at once, its last backup standing. Either
way metrics.json says `"preempted"` and the process exits with 128 + the signal's
number (143 for SIGTERM), as a process the signal had killed would. The same
command resumes it exactly.

`trainer.preemption_grace_s` bounds the stop: a scheduler sends SIGKILL some
seconds after its SIGTERM (SLURM's KillWait, Kubernetes's grace period: 30 s by
default). If the step and its backup have not finished in that time, the run
records `"preempted"` with what it kept (its last backup) and exits at once, before
the kill can leave no record.

Several processes (a JAX group) stop after the same step: once they have met,
`stop_together` hands the signal to their agreement
(keras_loss_recipes/runtime/processes/stop_together.py), the signalled process
announces it, and every process stops after the step they agree on, saves it and
exits with the same code. `requested()` is then the agreed stop, `noticed()` the
notice as soon as it came.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP")  # SIGINT is Ctrl-C: "interrupted", exit code 130


class Preempted(BaseException):
    """Raised in the main thread once a preemption signal has been acted on. A BaseException, as
    KeyboardInterrupt: code that catches Exception does not swallow it. `kept`: what the run saved for its
    resume (e.g. "epoch 2 step 7 of 16"), None when it stopped outside training (its last backup stands)."""

    def __init__(self, signum: int, kept: str | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.kept = kept

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def check(names) -> list[str]:
    """The signal names of `trainer.preemption_signals`; UserError for another."""
    names = list(names or [])
    for name in names:
        if name not in SIGNALS:
            raise UserError(f"trainer.preemption_signals: {name!r}: valid choices: {', '.join(SIGNALS)}")
    return names


def check_grace(value) -> float | None:
    """`trainer.preemption_grace_s`: seconds (> 0), or null for no limit; UserError for another value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"trainer.preemption_grace_s={value!r}: valid choices: a number of seconds > 0, or null "
                        "(no limit)")
    return float(value)


class _Stop:
    """What the handler knows: the model in training (None outside `model.fit`), the signal once one came,
    and the grace timer."""

    def __init__(self):
        self.model = None
        self.signum: int | None = None
        self.at: float | None = None  # time.monotonic() when the signal came
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()  # the record of the end: written once, by the main thread or the timer
        self.ended = False
        self.grace_s: float | None = None
        self.on_grace_expired = None
        self.together = None  # several processes: their agreement on the step to stop after (StopTogether)
        self.agreed = False  # ... and whether this process has reached that step


_stop = _Stop()


def requested() -> int | None:
    """The preemption signal's number once the run must stop (several processes: at the step they agreed on),
    else None."""
    if _stop.together is not None and not _stop.agreed:
        return None
    return _stop.signum


def noticed() -> int | None:
    """The preemption signal's number as soon as this process knows of one (several processes: the group's
    notice, which may come from another process), else None."""
    return _stop.signum


def stop_together(together) -> None:
    """Several processes have met: a preemption signal from now on goes to `together` (a StopTogether), whose
    notice (`notice_from_group`) reaches every process, and the fit stops at the step they agree on
    (`after_step`)."""
    _stop.together = together


def notice_from_group(signum: int) -> None:
    """The group heard of a preemption (in the agreement's thread): from now on this process is stopping."""
    if _stop.signum is None:
        _stop.signum = signum
        if _stop.at is None:
            _stop.at = time.monotonic()
        _start_grace_timer(signum)


def after_step() -> None:
    """The train function's call has been made (StepCounter): several processes that reached the step they
    agreed on stop the fit after it. Nothing to do for one process (its handler stops the fit itself)."""
    together = _stop.together
    if together is None or not together.step_done():
        return
    _stop.agreed = True
    if _stop.model is not None:
        _stop.model.stop_training = True


def seconds_since_signal() -> float | None:
    """How long ago the preemption signal came (None before one): what the stop took of the grace time."""
    return None if _stop.at is None else time.monotonic() - _stop.at


@contextlib.contextmanager
def stops_at_steps(model):
    """While inside (the fit), a preemption signal asks `model` to stop after the step under way
    (`model.stop_training`) instead of interrupting it; the fit's preemption callback then writes the backup
    and raises Preempted."""
    _stop.model = model
    try:
        yield
    finally:
        _stop.model = None


def finishing() -> bool:
    """The main thread is about to record the preemption: stop the grace timer. False when the timer has
    already taken the end over (its process is exiting)."""
    with _stop.lock:
        if _stop.ended:
            return False
        _stop.ended = True
        if _stop.timer is not None:
            _stop.timer.cancel()
        return True


@contextlib.contextmanager
def taken_as_preemption(names, grace_s: float | None = None, on_grace_expired=None):
    """While inside, each signal of `names` is a preemption: in training the model stops after its step,
    elsewhere Preempted is raised in the main thread at once. After `grace_s` seconds without the main thread
    having recorded it (`finishing`), `on_grace_expired(signum)` records the end and the process exits with
    128 + the signal's number. The handlers that were there come back afterwards (a sweep runs its jobs one
    after another in one process)."""
    global _stop
    _stop = _Stop()  # a sweep's next job starts with no signal seen
    _stop.grace_s, _stop.on_grace_expired = grace_s, on_grace_expired

    def preempt(signum, frame):
        together, model = _stop.together, _stop.model
        if together is not None and model is not None:
            # Several processes, in training: every one stops after the step they agree on (its notice
            # reaches this one too). The grace time counts from the signal.
            if _stop.at is None:
                _stop.at = time.monotonic()
                _start_grace_timer(signum)
                log.warning("%s: preemption; the processes agree on a step, finish it, then save it",
                            signal.Signals(signum).name)
                together.announce(signum)
            return
        if _stop.signum is not None:
            return  # already stopping: a second signal changes nothing
        _stop.signum, _stop.at = signum, time.monotonic()
        _start_grace_timer(signum)
        if model is not None:
            log.warning("%s: preemption; finishing the step under way, then saving it", signal.Signals(signum).name)
            model.stop_training = True
            return
        raise Preempted(signum)

    earlier = {}
    try:
        for name in check(names):
            number = getattr(signal, name)
            earlier[number] = signal.signal(number, preempt)
        yield
    finally:
        for number, handler in earlier.items():
            signal.signal(number, handler)
        if _stop.timer is not None:
            _stop.timer.cancel()


def _start_grace_timer(signum: int) -> None:
    """trainer.preemption_grace_s from now on: the timer records the end and exits if the main thread has not."""
    if _stop.grace_s is None or _stop.timer is not None:
        return
    _stop.timer = threading.Timer(_stop.grace_s, _grace_expired, args=(signum, _stop.grace_s, _stop.on_grace_expired))
    _stop.timer.daemon = True
    _stop.timer.start()


def _grace_expired(signum: int, grace_s: float, on_grace_expired) -> None:
    """In the timer's thread: the main thread has not finished its stop in time."""
    with _stop.lock:
        if _stop.ended:
            return
        _stop.ended = True
        started = time.monotonic()
        try:
            if on_grace_expired is not None:
                on_grace_expired(signum, grace_s)
        except BaseException as err:  # the exit below must happen whatever the record did
            log.error("recording the preemption failed: %s: %s (after %.1f s)", type(err).__name__, err,
                      time.monotonic() - started)
        finally:
            logging.shutdown()
            os._exit(128 + signum)
