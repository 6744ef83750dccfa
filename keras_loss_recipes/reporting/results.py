"""A run directory's records: metrics.json, history.csv, and what stopped its earlier attempts."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from keras_loss_recipes.runtime import atomic
from keras_loss_recipes.runtime.run_files import HISTORY_FILE, METRICS_FILE


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


def earlier_attempts(run_dir: Path) -> list[str]:
    """What stopped each earlier attempt of a resumed run, oldest first, from the records `runs.directory.prepare`
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
        if record.get("error") and record.get("status") == "failed":  # SLURM's end of it, or the exception
            text += f" ({_first_clause(str(record['error']))})"
        if record.get("signal"):
            text += f" ({record['signal']})"
        if record.get("stopped_at"):
            text += f" at {record['stopped_at']}"
        said.append(text)
    return said


def _first_clause(error: str, limit: int = 100) -> str:
    """`SlurmJobEnded: SLURM job 3_1 ended FAILED without a result: ...` -> `SLURM job 3_1 ended FAILED`."""
    error = error.split(" without a result")[0]
    error = error.split(": ", 1)[1] if error.startswith("SlurmJobEnded: ") else error
    return error if len(error) <= limit else error[:limit - 3] + "..."


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
