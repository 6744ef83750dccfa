"""What Hydra recorded about a sweep's jobs: which sweeper ran them, what it searched, each job's number.

Hydra writes every job's `.hydra/hydra.yaml` before the job runs, with the
sweeper's config (`hydra.sweeper`) and the job's number (`hydra.job.num`), so a
partly finished or interrupted sweep tells the same as a finished one, with or
without the sweep root's own files. Hydra's BasicSweeper runs a grid (every
combination of the listed values); any other sweeper (Optuna, Nevergrad, Ax)
runs a search: trials it picks one after the other, towards an objective.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class Search:
    """A search's sweeper, which way it optimises, and each searched key with its search space as written."""

    sweeper: str
    direction: str = "maximize"
    spaces: dict[str, str] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return self.direction != "minimize"


def hydra_record(run_dir: Path) -> dict:
    """The `hydra` section of a job's `.hydra/hydra.yaml`; empty when the job has none."""
    import yaml

    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    try:
        return (yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get("hydra", {})
    except (OSError, yaml.YAMLError):
        return {}


def job_number(record: dict) -> int | None:
    num = (record.get("job") or {}).get("num")
    return num if isinstance(num, int) else None


def search_of(sweepers: list) -> Search | None:
    """The search of jobs that recorded these `hydra.sweeper` configs; None for a grid, or if none was recorded."""
    sweepers = [s for s in sweepers if isinstance(s, dict)]
    if not sweepers or sweepers[0].get("_target_", GRID_SWEEPER) == GRID_SWEEPER:
        return None
    sweeper = sweepers[0]
    direction = sweeper.get("direction", "maximize")
    if isinstance(direction, list):  # a multi-objective form; train.py returns one objective
        direction = direction[0] if direction else "maximize"
    return Search(
        sweeper=str(sweeper["_target_"]).rsplit(".", 1)[-1],
        direction=str(direction),
        spaces={str(k): str(v) for k, v in (sweeper.get("params") or {}).items()},
    )
