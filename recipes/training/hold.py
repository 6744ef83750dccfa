"""A test hook, off by default: the run holds still after a given epoch until a signal ends it.

A test that stops a run (SIGKILL, Ctrl-C, `scancel`, a SLURM time limit) must
stop it at a known point, whatever the CPU's speed: on a fast machine a small
run can finish before a signal sent "after the first epoch" arrives. With

    RECIPES_HOLD_AFTER_EPOCH=N   hold after epoch N (1-based), once its backup,
                                 history.csv row and models are written, if
                                 epochs remain; a run of N epochs or fewer never holds
    RECIPES_HOLD_PROCESS=K       several processes: only process K holds (default: each)
    RECIPES_HOLD_SECONDS=S       then go on, with a warning (default 600)

the run writes `held` into its backup directory (the file goes with the backup
when the run finishes), logs one line and sleeps. A test that waits for that
file, then signals, stops the run between epoch N and N + 1 on any machine;
one that removes the file lets the run go on (after changing the world around
it: filling its disk).
Nothing else changes: the epochs before the hold are those of an unheld run.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

# Importable without Keras (scripts/exact_resume.py sets them for its child run).
EPOCH_VAR, PROCESS_VAR, SECONDS_VAR = "RECIPES_HOLD_AFTER_EPOCH", "RECIPES_HOLD_PROCESS", "RECIPES_HOLD_SECONDS"
DEFAULT_SECONDS = 600.0
NOTICE = "held"  # written into the backup directory once the run holds


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


def hold_from_environment(epochs: int, backup_dir: Path, rank: int = 0):
    """The hold the environment asks for (a Keras callback, the fit's last), in a run of `epochs` epochs as
    process `rank`; None when none."""
    import keras

    after = _integer(EPOCH_VAR, 1)
    only = _integer(PROCESS_VAR, 0)
    if after is None or after >= epochs or (only is not None and only != rank):
        return None
    seconds = float(os.environ.get(SECONDS_VAR) or DEFAULT_SECONDS)
    return keras.callbacks.LambdaCallback(on_epoch_end=HoldAfterEpoch(after, seconds, Path(backup_dir) / NOTICE))


class HoldAfterEpoch:
    """At the end of epoch `after` (1-based): write `notice`, then sleep for at most `seconds`."""

    def __init__(self, after: int, seconds: float, notice: Path):
        self.after = after
        self.seconds = seconds
        self.notice = notice

    def __call__(self, epoch: int, logs=None) -> None:
        if epoch + 1 != self.after:
            return
        self.notice.parent.mkdir(parents=True, exist_ok=True)
        self.notice.write_text(f"{self.after}\n")
        log.info("held after epoch %d (%s): waiting for a signal, at most %.0f s", self.after, EPOCH_VAR,
                 self.seconds)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if not self.notice.exists():
                log.info("released after epoch %d: the run goes on", self.after)
                return
        log.warning("no signal came in %.0f s of hold after epoch %d: the run goes on", self.seconds, self.after)
