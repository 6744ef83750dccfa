"""The run directory: refusing to clobber earlier runs, metrics.json, and history.csv."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from keras_loss_recipes.runtime import atomic
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HISTORY_FILE, HYDRA_FILES, METRICS_FILE


class RunAlreadyFinished(Exception):
    """The run directory already holds a finished run; its metrics are attached."""

    def __init__(self, run_dir: Path, metrics: dict):
        super().__init__(f"{run_dir} already holds a finished run")
        self.run_dir = run_dir
        self.metrics = metrics


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def read_history(run_dir: Path) -> list[dict]:
    """Per-epoch logs of this run, every attempt's (a resumed run appends to what it kept: HistoryFile)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    with path.open() as handle:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(handle)]


def truncate_history(run_dir: Path, epochs: int) -> list[dict]:
    """Keep the first `epochs` rows of history.csv (a resume from a backup older than the history trains the
    later epochs again); return the rows kept. Rewritten atomically."""
    rows = read_history(run_dir)
    path = Path(run_dir) / HISTORY_FILE
    if len(rows) <= epochs:
        return rows
    with path.open(newline="") as handle:  # rows end in \r\n, as csv writes them: kept as they are
        lines = handle.read().splitlines(keepends=True)
    atomic.write_text(path, "".join(lines[:epochs + 1]))  # the header and the rows kept
    return rows[:epochs]


# A run with one of these statuses can be taken up again by the same command.
RESUMABLE = ("interrupted", "preempted", "failed")
# What `move_aside` puts between a run directory's name and the time it moved its contents aside.
MOVED_ASIDE = ".previous-"


def move_aside(run_dir: Path) -> Path:
    """Move a run directory's contents to a sibling `<name>.previous-<time>`; nothing is deleted.

    Hydra's own `.hydra/` and `train.log` of the new run stay (copied, not moved).
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
        if entry.name in HYDRA_FILES:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target / entry.name)
        else:
            shutil.move(str(entry), str(target / entry.name))
    return target


def prepare_run_dir(run_dir: Path, overwrite: bool = False) -> str:
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
        record = run_dir / f"metrics.{metrics['status']}.json"
        n = 1
        while record.exists():
            n += 1
            record = run_dir / f"metrics.{metrics['status']}.{n}.json"
        metrics_path.rename(record)
    if (run_dir / BACKUP_DIR).is_dir():
        return "resume"
    if earlier_attempt:
        # An interrupted or failed attempt with no epoch to resume from: keep it, start over.
        moved = move_aside(run_dir)
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


def earlier_attempts(run_dir: Path) -> list[str]:
    """What stopped each earlier attempt of a resumed run, oldest first, from the records `prepare_run_dir`
    kept (metrics.<status>[.n].json): e.g. "preempted (SIGTERM) at epoch 3 step 2 of 5", "failed"."""
    def order(path: Path) -> tuple[float, str]:
        return path.stat().st_mtime, path.name

    said = []
    for path in sorted(Path(run_dir).glob("metrics.*.json"), key=order):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        text = str(record.get("status", "?"))
        if record.get("signal"):
            text += f" ({record['signal']})"
        if record.get("stopped_at"):
            text += f" at {record['stopped_at']}"
        said.append(text)
    return said


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


def finite_or_none(value):
    """JSON has no NaN/inf: a non-finite float becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_metrics(run_dir: Path, metrics: dict) -> Path:
    """Write metrics.json atomically (a reader never sees half a file)."""
    path = Path(run_dir) / METRICS_FILE
    atomic.write_text(path, json.dumps(finite_or_none(metrics), indent=2, sort_keys=False) + "\n")
    return path
