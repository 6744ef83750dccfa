"""What train.py does once Hydra has composed the config.

Single runs: a user error is one line on stderr and exit code 2; a bug keeps
its traceback. In a sweep (multirun) nothing stops the other jobs: a failed
job is recorded in its metrics.json with `status: "failed"` and the error.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from recipes.registry import get_recipe
from recipes.reporting.results import RunAlreadyFinished, discard_if_unused, read_history, write_metrics
from recipes.reporting.tensorboard_views import write_run_views
from recipes.runtime import clock, processes
from recipes.runtime.backends import activate_backend
from recipes.runtime.errors import UserError
from recipes.training.models import model_name

log = logging.getLogger("train")


class _NoRetracingNoise(logging.Filter):
    """Each run (and each loss-path probe) builds fresh models, so TensorFlow's
    "triggered tf.function retracing" advice is expected here, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoRetracingNoise())


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(cfg, run_dir: Path, err: BaseException) -> None:
    from omegaconf import OmegaConf

    metrics = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err),
        "loss": cfg.loss.name,
        "data": cfg.data.name,
        "model": model_name(cfg.model),
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_metrics(run_dir, metrics)
        write_run_views(Path(run_dir), metrics, with_layout=False)
    except Exception:  # recording a failure must not hide the failure itself
        log.warning("could not record the failure in %s:\n%s", run_dir, traceback.format_exc())


def to_log_file(run_dir: Path, message: str) -> None:
    """Write `message` into the run's log file (train.log) only: the console already shows it."""
    record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == Path(run_dir).resolve():
            handler.handle(record)


def record_interruption(cfg, run_dir: Path) -> None:
    """Ctrl-C: say so in metrics.json, so the run is known to be resumable, not finished."""
    if cfg.recipe.name != "train" or not Path(run_dir).is_dir():
        return
    write_metrics(run_dir, {
        "status": "interrupted",
        "loss": cfg.loss.name,
        "seed": cfg.seed,
        "epochs_completed": len(read_history(run_dir)),
    })


def main(cfg, run_dir, started_at: float | None = None) -> float:
    """Run the configured recipe. Returns the validation accuracy (what a sweeper optimises).

    `started_at` (time.time()) is when this job started, for its start-up figure; default: now.
    """
    run_dir = Path(run_dir)
    clock.mark_job_start(started_at)
    group = processes.current()
    processes.watchdog.on_stall = lambda message: record_failure(cfg, run_dir, RuntimeError(message))
    try:
        activate_backend(cfg.get("backend", "tensorflow"))  # before anything imports Keras
        metrics = get_recipe(cfg.recipe.name)(cfg, run_dir)
    except RunAlreadyFinished as done:
        log.info("%s already holds a finished run (status %s); not retraining it",
                 done.run_dir, done.metrics.get("status"))
        return _objective(done.metrics)
    except KeyboardInterrupt:
        record_interruption(cfg, run_dir)
        if group is not None and group.rank > 0:
            processes.exit_now(130)  # its run directory is a scratch one; process 0 says where the run is
        print(f"interrupted: {run_dir} keeps its last completed epoch; run the same command "
              f"(with hydra.run.dir={run_dir}) to resume", file=sys.stderr, flush=True)
        if group is not None:
            processes.exit_now(130)
        raise SystemExit(130) from None
    except UserError as err:
        if in_sweep():
            log.error("job failed: %s", err)
            record_failure(cfg, run_dir, err)
            return float("nan")  # a sweeper (Optuna) records a NaN objective as a failed trial
        if not discard_if_unused(run_dir):  # a run directory that holds an earlier run stays, and says why
            to_log_file(run_dir, f"error: {err}")
        print(f"error: {err}", file=sys.stderr, flush=True)
        if group is not None and processes.joined():
            processes.exit_now(2)
        raise SystemExit(2) from None
    except Exception as err:
        record_failure(cfg, run_dir, err)
        if in_sweep():
            log.error("job failed, the sweep goes on:\n%s", traceback.format_exc())
            return float("nan")
        # Hydra prints the traceback on the console; the run's train.log gets it too.
        to_log_file(run_dir, f"run failed: {type(err).__name__}: {err}\n{traceback.format_exc()}")
        if group is not None:
            # A peer that died breaks the collectives: one line, then out at once (JAX's exit
            # barrier would wait for the dead peer).
            log.error("run failed:\n%s", traceback.format_exc())
            recorded = f"; {run_dir} records the run as failed; the same command resumes it" if group.rank == 0 else ""
            print(f"error: process {group.rank} of {group.count}: {type(err).__name__}: {_first_line(err)}{recorded}",
                  file=sys.stderr, flush=True)
            processes.exit_now(1)
        raise
    finally:
        clock.clear()
    return _objective(metrics)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def _objective(metrics: dict) -> float:
    value = metrics.get("val_accuracy")
    return float("nan") if value is None else float(value)
