"""When the current job started: the reference point of a run's `startup_s`.

train.py marks the moment it starts executing, before Hydra and TensorFlow are
imported (not the process's creation: a shell that `exec`s python, or a pip
install before it in the same shell, is not this job's start-up). In a sweep,
every later job in the same process is marked when it starts. A recipe called
directly (tests, benchmarks) is marked when it starts.
"""
from __future__ import annotations

import time

_job_started: float | None = None


def mark_job_start(at: float | None = None) -> None:
    """Note that a job starts now (or started at `at`, a time.time() value)."""
    global _job_started
    _job_started = time.time() if at is None else at


def job_started() -> float | None:
    """When the current job started (time.time()), if a job was marked."""
    return _job_started


def clear() -> None:
    global _job_started
    _job_started = None
