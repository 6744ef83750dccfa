"""The run directory: refusing to clobber earlier runs, and writing metrics.json."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from recipes.errors import UserError

METRICS_FILE = "metrics.json"
# Written by Hydra into the run directory before the recipe starts.
HYDRA_FILES = {".hydra", "train.log"}


class RunAlreadyFinished(Exception):
    """The run directory already holds a finished run; its metrics are attached."""

    def __init__(self, run_dir: Path, metrics: dict):
        super().__init__(f"{run_dir} already holds a finished run")
        self.run_dir = run_dir
        self.metrics = metrics


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def guard_run_dir(run_dir: Path) -> None:
    """Stop before a new run could overwrite or mix with an earlier one."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).exists():
        raise RunAlreadyFinished(run_dir, read_metrics(run_dir))
    if run_dir.is_dir():
        leftovers = sorted(p.name for p in run_dir.iterdir() if p.name not in HYDRA_FILES)
        if leftovers:
            raise UserError(
                f"hydra.run.dir={run_dir} already holds files of an unfinished run "
                f"({', '.join(leftovers[:5])}); choose a new hydra.run.dir"
            )


def _finite_or_none(value):
    """JSON has no NaN/inf: a non-finite float becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_metrics(run_dir: Path, metrics: dict) -> Path:
    """Write metrics.json atomically (a reader never sees half a file)."""
    path = Path(run_dir) / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite_or_none(metrics), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
