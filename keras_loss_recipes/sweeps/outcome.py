"""Whether every job of a multirun gave its result: what decides the sweep's exit code.

A job's result is its run directory's metrics.json. A job that ended `ok` or
`diverged` gave one (a NaN is a finding about the formulation, not a fault).
A job counts as failed when its record says `failed` (an exception, bad input,
SLURM ended it), when it stopped resumable without finishing (`interrupted`, or
`preempted` and not requeued: its result is still missing, and the same command
resumes it), or when it left no metrics.json at all.

The jobs of a multirun are the job directories written since it started:
`note_start` marks that moment with a file in the sweep directory, whose time
the file system gives as it gives the jobs' files (no clock of another node is
compared). A sweep run again into the same directory, e.g. to resume one job,
is judged by the jobs it ran, not by those it left alone.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from keras_loss_recipes.runtime.run_files import METRICS_FILE, MOVED_ASIDE

RESULT_STATUSES = ("ok", "diverged")
STARTED_FILE = ".multirun_started"  # touched by SweepReport when a multirun starts
HYDRA_RECORD = Path(".hydra") / "hydra.yaml"  # Hydra writes it when a job starts


@dataclass
class Outcome:
    jobs: list[Path]
    failed: list[tuple[Path, str]]  # each failed job's directory and its status ("no record": no metrics.json)

    def line(self) -> str:
        """`2 of 6 jobs failed: <their directories>`; a job that can resume says so."""
        named = [f"{job} ({status}: the same command resumes it)" if status in ("interrupted", "preempted")
                 else f"{job} (no {METRICS_FILE})" if status == "no record" else str(job)
                 for job, status in self.failed]
        return f"{len(self.failed)} of {len(self.jobs)} jobs failed: {', '.join(named)}"


def note_start(sweep_dir: Path) -> None:
    path = Path(sweep_dir) / STARTED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # an existing file gets the time now: the start of this multirun


def started_at(sweep_dir: Path) -> float:
    """The time the latest multirun into `sweep_dir` started (0 where none was noted: every job counts)."""
    try:
        return (Path(sweep_dir) / STARTED_FILE).stat().st_mtime
    except OSError:
        return 0.0


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories under `sweep_dir`: those that hold Hydra's record or a metrics.json (a job SLURM
    ended before it started has only the latter). Runs moved aside (`<name>.previous-<time>`) are no jobs."""
    found = []
    for here, subdirs, files in os.walk(sweep_dir):
        here = Path(here)
        if here != Path(sweep_dir) and ((here / HYDRA_RECORD).is_file() or METRICS_FILE in files):
            found.append(here)
            subdirs.clear()  # a job's own folders (backup/, TensorBoard's) hold no jobs
            continue
        subdirs[:] = sorted(d for d in subdirs if MOVED_ASIDE not in d and not d.startswith("."))
    return sorted(found)


def _written_since(job: Path, since: float) -> bool:
    for path in (job / HYDRA_RECORD, job / METRICS_FILE):
        try:
            if path.stat().st_mtime >= since:
                return True
        except OSError:
            continue
    return False


def status_of(job: Path) -> str:
    try:
        return str(json.loads((job / METRICS_FILE).read_text()).get("status", "no record"))
    except (OSError, ValueError):
        return "no record"


def outcome(sweep_dir: Path) -> Outcome:
    """The jobs of the latest multirun into `sweep_dir`, and those of them that gave no result."""
    since = started_at(sweep_dir)
    jobs = [job for job in job_dirs(sweep_dir) if _written_since(job, since)]
    failed = [(job, status) for job in jobs if (status := status_of(job)) not in RESULT_STATUSES]
    return Outcome(jobs, failed)
