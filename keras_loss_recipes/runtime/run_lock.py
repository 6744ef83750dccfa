"""One process at a time in a run directory: an `fcntl` lock on its `.lock` file, held while the run trains.

A second process on the same directory (a resume started twice, a sweep job
launched again while the first still runs) stops at once with one line naming
the PID that holds it, instead of writing into a live run. The kernel drops
the lock when its process ends, however it ends: a lock left by a killed run
never blocks the resume.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.run_files import LOCK_FILE

_held: dict[Path, int] = {}  # run directory -> the descriptor that holds its lock, for the process's lifetime


def acquire(run_dir: Path) -> None:
    """Hold `run_dir`'s lock until this process ends; UserError if another process holds it."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(_in_use(run_dir)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[run_dir] = fd


def release(run_dir: Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the lock


def check_free(run_dir: Path) -> None:
    """UserError if a live process holds `run_dir`'s lock (taken and dropped again at once when it is free)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file() or Path(run_dir).resolve() in _held:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(_in_use(Path(run_dir))) from None
    finally:
        os.close(fd)


def _in_use(run_dir: Path) -> str:
    try:
        pid = (run_dir / LOCK_FILE).read_text().strip() or "?"
    except OSError:
        pid = "?"
    return (f"hydra.run.dir={run_dir} is in use by process {pid}, which holds {run_dir / LOCK_FILE}; wait for it "
            "to end (a killed run's lock goes with it), or choose another hydra.run.dir")
