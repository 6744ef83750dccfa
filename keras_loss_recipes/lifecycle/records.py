"""What a run that did not finish leaves in its metrics.json: "failed" with the error, or "interrupted".

Either status is resumable: the same command takes the run up again
(`results.RESUMABLE`). A sweep's comparison lists a failed job with its error.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

from keras_loss_recipes.reporting.results import read_history, write_metrics
from keras_loss_recipes.reporting.tensorboard_views import write_run_views
from keras_loss_recipes.runtime.errors import UserError

log = logging.getLogger(__name__)


def record_failure(cfg, run_dir: Path, err: BaseException, quiet: bool = False) -> None:
    """metrics.json (and the run's TensorBoard summary) of a job that failed with `err`; `quiet`: say nothing
    if that cannot be written either (a full disk, already said in one line)."""
    metrics = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err),
        "loss": cfg.loss.name,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "config": config_record(cfg),
    }
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_metrics(run_dir, metrics)
        write_run_views(Path(run_dir), metrics, with_layout=False)
    except Exception:  # recording a failure must not hide the failure itself
        if quiet:
            return
        log.warning("could not record the failure in %s:\n%s", run_dir, traceback.format_exc())


def config_record(cfg) -> dict:
    """The config as a run records it: typed as every job's is (`25.0` for a float key given `25`), so that a
    sweep's report groups a failed job with the others; as given where it does not type (the failure itself)."""
    from omegaconf import OmegaConf

    from keras_loss_recipes.config.schema import typed

    try:
        cfg = typed(cfg)
    except UserError:
        pass
    return OmegaConf.to_container(cfg, resolve=True)


def record_interruption(cfg, run_dir: Path, status: str = "interrupted", signal_name: str | None = None,
                        stopped_at: str | None = None, stop_s: float | None = None) -> None:
    """Ctrl-C ("interrupted") or a preemption signal ("preempted"): say so in metrics.json, so the run is known
    to be resumable, not finished. `stopped_at`: the point a preemption saved (e.g. "epoch 2 step 7 of 16");
    `stop_s`: the seconds from the signal to this record (the step's end and its backup included)."""
    if cfg.recipe.name != "train" or not Path(run_dir).is_dir():
        return
    write_metrics(run_dir, {
        "status": status,
        **({"signal": signal_name} if signal_name else {}),
        **({"stopped_at": stopped_at} if stopped_at else {}),
        **({"stop_s": stop_s} if stop_s is not None else {}),
        "loss": cfg.loss.name,
        "seed": cfg.seed,
        "epochs_completed": len(read_history(run_dir)),
    })
