"""Whether a run directory starts fresh, resumes, or is refused; nothing already written is lost.

    prepare(run_dir)            "fresh" | "resume"; RunAlreadyFinished for a finished run
    move_aside(run_dir)         its contents to `<name>.previous-<time>` (trainer.overwrite=true)
    keep_as_attempt(run_dir)    an earlier attempt's metrics.json kept as metrics.<status>.json
    discard_if_unused(run_dir)  a directory bad input left holding only Hydra's files goes
"""
from __future__ import annotations

import re
from pathlib import Path

from keras_loss_recipes.reporting.results import RESUMABLE, read_metrics
from keras_loss_recipes.runtime import atomic
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HYDRA_FILES, METRICS_FILE, MOVED_ASIDE


KILLED = "killed"  # the status noted for an earlier attempt that left a backup but no record


class RunAlreadyFinished(Exception):
    """The run directory already holds a finished run; its metrics are attached."""

    def __init__(self, run_dir: Path, metrics: dict):
        super().__init__(f"{run_dir} already holds a finished run")
        self.run_dir = run_dir
        self.metrics = metrics


def move_aside(run_dir: Path, keep_attempts: bool = False) -> Path:
    """Move a run directory's contents to a sibling `<name>.previous-<time>`; nothing is deleted.

    Hydra's own `.hydra/` and `train.log` of the new run stay (copied, not moved); with `keep_attempts`, so do
    the records of its earlier attempts (metrics.<status>.json), which the run's report lists.
    """
    import shutil
    import time

    target = run_dir.parent / f"{run_dir.name}{MOVED_ASIDE}{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name}-{suffix}")
    target.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name in HYDRA_FILES or (keep_attempts and _is_attempt_record(entry.name)):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target / entry.name)
        else:
            shutil.move(str(entry), str(target / entry.name))
    return target


def prepare(run_dir: Path, overwrite: bool = False) -> str:
    """Decide how a run may use `run_dir`: "fresh" or "resume"; never clobber an earlier run.

    * a finished run (ok / diverged) raises RunAlreadyFinished, unless `overwrite`;
    * an interrupted or failed run with a backup of its last epoch is resumed
      (its old metrics.json is kept as metrics.<status>.json);
    * `overwrite` moves whatever is there to a sibling directory first;
    * other leftovers are refused.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        run_dir.mkdir(parents=True)
        return "fresh"
    contents = [p for p in run_dir.iterdir() if p.name not in HYDRA_FILES]
    if overwrite and contents:
        moved = move_aside(run_dir)
        print(f"trainer.overwrite=true: moved the earlier run in {run_dir} to {moved}", flush=True)
        return "fresh"
    metrics_path = run_dir / METRICS_FILE
    earlier_attempt = metrics_path.exists()
    if earlier_attempt:
        metrics = read_metrics(run_dir)
        if metrics.get("status") not in RESUMABLE:
            raise RunAlreadyFinished(run_dir, metrics)
        keep_as_attempt(run_dir, metrics["status"])
    if (run_dir / BACKUP_DIR).is_dir():
        if not earlier_attempt:
            _note_unrecorded_attempt(run_dir)
        return "resume"
    if earlier_attempt:
        # An interrupted or failed attempt with no epoch to resume from: keep it, start over (its record stays
        # beside the new attempt too, so that the run's report counts it).
        moved = move_aside(run_dir, keep_attempts=True)
        print(f"the earlier attempt in {run_dir} has no completed epoch; moved it to {moved}", flush=True)
        return "fresh"
    leftovers = sorted(
        p.name for p in run_dir.iterdir()
        if p.name not in HYDRA_FILES and not p.name.startswith("metrics.") and not atomic.is_partial(p)
    )
    if leftovers:
        raise UserError(
            f"hydra.run.dir={run_dir} holds files of an unfinished run that cannot be resumed "
            f"({', '.join(leftovers[:5])}); pass trainer.overwrite=true to move them aside and "
            "start over, or choose a new hydra.run.dir"
        )
    return "fresh"


def _is_attempt_record(name: str) -> bool:
    return name.startswith("metrics.") and name.endswith(".json") and name != METRICS_FILE


def _attempt_record(run_dir: Path, status: str) -> Path:
    """Where an earlier attempt's record is kept: metrics.<status>.json, or .2, .3, ... after the first."""
    record, n = run_dir / f"metrics.{status}.json", 1
    while record.exists():
        n += 1
        record = run_dir / f"metrics.{status}.{n}.json"
    return record


def keep_as_attempt(run_dir: Path, status: str) -> Path:
    """Move metrics.json (an earlier attempt's record, of `status`) to metrics.<status>[.n].json, where the run's
    report counts it among the attempts."""
    return (Path(run_dir) / METRICS_FILE).rename(_attempt_record(Path(run_dir), status))


def _note_unrecorded_attempt(run_dir: Path) -> None:
    """A backup and no metrics.json: the earlier attempt ended without writing its record (SIGKILL, a lost node,
    a power cut). Noted as metrics.killed[.n].json, so that the resumed run's report lists it among its attempts."""
    import json

    from keras_loss_recipes.reporting.results import read_history

    note = {"status": KILLED, "epochs_completed": len(read_history(run_dir)),
            "note": "ended without writing its record (SIGKILL, a lost node)"}
    atomic.write_text(_attempt_record(run_dir, KILLED), json.dumps(note, indent=2) + "\n")


def discard_if_unused(run_dir: Path) -> bool:
    """Remove `run_dir` if it holds only what Hydra wrote at start (`HYDRA_FILES`).

    A run stopped by bad input before it wrote anything leaves no directory
    behind, so "the latest run" is always a run. Anything else there (a run
    to resume, a user's files) is kept.
    """
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(p.name not in HYDRA_FILES for p in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir)
    # The day's folder of the default run directory (runs/<date>/), when this run would have been its first.
    day = run_dir.parent
    if day.parent.name == "runs" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", day.name) and not any(day.iterdir()):
        day.rmdir()
    return True
