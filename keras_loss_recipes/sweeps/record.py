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

from keras_loss_recipes.reporting.objective import DEFAULT, OBJECTIVES, Objective

GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class Search:
    """A search's sweeper, what it optimises (`optimized_metric`, which says which way), and each searched key
    with its search space as written."""

    sweeper: str
    objective: Objective = OBJECTIVES[DEFAULT]
    spaces: dict[str, str] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return self.objective.direction

    @property
    def maximize(self) -> bool:
        return self.objective.maximize


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


def search_of(sweepers: list, optimized_metric=None) -> Search | None:
    """The search of jobs that recorded these `hydra.sweeper` configs and optimised `optimized_metric` (their
    config's; the default where they recorded none); None for a grid, or if none was recorded. The direction
    is the figure's own (the preset's sweeper reads it from there too)."""
    sweepers = [s for s in sweepers if isinstance(s, dict)]
    if not sweepers or sweepers[0].get("_target_", GRID_SWEEPER) == GRID_SWEEPER:
        return None
    sweeper = sweepers[0]
    return Search(
        sweeper=str(sweeper["_target_"]).rsplit(".", 1)[-1],
        objective=OBJECTIVES.get(optimized_metric or DEFAULT, OBJECTIVES[DEFAULT]),
        spaces={str(k): str(v) for k, v in (sweeper.get("params") or {}).items()},
    )
