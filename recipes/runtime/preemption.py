"""Preemption: the signal a scheduler sends before it stops a job ends the run cleanly, resumable.

SLURM sends SIGTERM when it preempts or cancels a job (and, with `--signal=USR1@60`,
SIGUSR1 a minute before its time limit); Kubernetes sends SIGTERM when it evicts a
pod; a spot VM's shutdown too. `trainer.preemption_signals` lists the signals a run
takes as preemption (default: SIGTERM). On one, the run stops where it is, its
metrics.json says `"preempted"`, and the process exits with 128 + the signal's
number (143 for SIGTERM), as a process the signal had killed would. The same
command resumes it exactly, from its last backup (recipes/training/backup.py).
"""
from __future__ import annotations

import contextlib
import signal

from recipes.runtime.errors import UserError

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP")  # SIGINT is Ctrl-C: "interrupted", exit code 130


class Preempted(BaseException):
    """Raised in the main thread by a preemption signal. A BaseException, as KeyboardInterrupt: code that
    catches Exception does not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

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


@contextlib.contextmanager
def taken_as_preemption(names):
    """While inside, each signal of `names` raises Preempted in the main thread; the handlers that were there
    come back afterwards (a sweep runs its jobs one after another in one process)."""

    def preempt(signum, frame):
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
