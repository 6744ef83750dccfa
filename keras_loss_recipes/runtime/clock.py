"""When the current job started: the reference point of a run's `startup_s`.

The command notes when its process started (`mark_process_start`): train.py
marks the moment it starts executing, before Hydra and TensorFlow are imported
(not the process's creation: a shell that `exec`s python, or a pip install
before it in the same shell, is not this job's start-up). The first job of that
process started then; every later job (a sweep's) starts when it starts (`job`).
A recipe called directly (tests, benchmarks) counts from its own start.
"""
from __future__ import annotations

import contextlib
import os
import time

_process_start: dict = {}  # {"pid", "at"}: this process's start, until its first job takes it
_job_started: float | None = None


def mark_process_start(at: float) -> None:
    """Note that this process started at `at` (a time.time() value): its first job counts from there."""
    _process_start.update(pid=os.getpid(), at=at)


@contextlib.contextmanager
def job():
    """A job runs inside: it started with the process if it is the process's first, else now."""
    global _job_started
    first = _process_start.pop("at", None) if _process_start.get("pid") == os.getpid() else None
    _job_started = time.time() if first is None else first
    try:
        yield
    finally:
        _job_started = None


def job_started() -> float | None:
    """When the current job started (time.time()), if one runs inside `job()`."""
    return _job_started
