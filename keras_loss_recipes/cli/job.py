"""One job of train.py: the recipe that `recipe=` names, run once Hydra has composed the config.

How a job ends, decided in one place (`_stop`):

    it finished                     its `optimized_metric` (what a sweeper optimises)
    its run directory is finished   that run's, without training again
    bad input (UserError)           one `error:` line on stderr, exit code 2
    a full disk                     one `error:` line naming the file and the free space, exit code 2;
                                    the same command resumes once there is room
    Ctrl-C                          metrics.json says "interrupted" (resumable), exit code 130
    a preemption signal (SIGTERM)   in training, after the step under way and its backup (within
                                    trainer.preemption_grace_s); metrics.json says "preempted" (resumable),
                                    exit code 128 + its number
    an error in the user's code     one `error:` line naming their file and line, then their frames of the
                                    traceback; metrics.json says "failed" with that line; exit code 2
    a bug                           metrics.json says "failed" with the error; the traceback stays
In a sweep (multirun) a failed job stops nothing else: it is recorded, and its
objective is NaN. One of several processes training one model leaves at once.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from keras_loss_recipes.config.model_options import drop_foreign_options
from keras_loss_recipes.config.schema import typed
from keras_loss_recipes.recipes.registry import get_recipe
from keras_loss_recipes.lifecycle.directory import RunAlreadyFinished
from keras_loss_recipes.lifecycle.run import Run, run_recipe
from keras_loss_recipes.runtime import processes
from keras_loss_recipes.runtime.errors import UserError, disk_full, disk_full_message
from keras_loss_recipes.runtime.preemption import Preempted
from keras_loss_recipes.runtime.user_code import UserCodeError, raised_in_user_code

log = logging.getLogger("train")
DISK_FULL_EXIT = 2  # as bad input: the user must act (free space) before the same command goes on


class _NoRetracingNoise(logging.Filter):
    """Each run (and each loss-path probe) builds fresh models, so TensorFlow's
    "triggered tf.function retracing" advice is expected here, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoRetracingNoise())


def run_job(cfg, run_dir) -> float:
    """Run the configured recipe. Returns the validation figure `optimized_metric` names (NaN for a failed job
    of a sweep, or a run that has not that figure)."""
    run = Run(cfg, run_dir)
    try:
        run.cfg = cfg = checked_types(cfg)
        metrics = run_recipe(get_recipe(cfg.recipe.name), run)
    except RunAlreadyFinished as done:
        log.info("%s already holds a finished run (status %s); not retraining it",
                 done.run_dir, done.metrics.get("status"))
        metrics = done.metrics
    except (KeyboardInterrupt, Preempted, Exception) as err:
        _stop(run, err)  # returns only for a failed job of a sweep, which goes on
        return float("nan")  # a sweeper (Optuna) records a NaN objective as a failed trial
    value = metrics.get(cfg.optimized_metric)
    return float("nan") if value is None else float(value)


def checked_types(cfg):
    """The job's config typed (keras_loss_recipes/config/schema.py: a bad type is a UserError, before Keras
    starts), and the default model's options dropped from a model of yours."""
    from hydra.core.hydra_config import HydraConfig

    cfg = typed(cfg)
    if HydraConfig.initialized():
        drop_foreign_options(cfg, HydraConfig.get())
    return cfg


def _stop(run: Run, err: BaseException) -> None:
    """Record `err` in the run and say so; then exit with its code, unless it failed a job of a sweep."""
    group, run_dir = run.group, run.dir
    if isinstance(err, KeyboardInterrupt):
        run.record_interruption()
        if run.rank == 0:  # the others' run directories are scratch ones
            run.say_resumable(f"interrupted: {run_dir} keeps its last completed epoch")
        _exit(130, at_once=group is not None)
    if isinstance(err, Preempted):  # a sweep stops too: its process is what the scheduler preempts
        run.record_preemption(err)
        if run.rank == 0:
            where = f" at {err.kept}" if err.kept else ""
            kept = "a backup of that point" if err.kept else "its last saved epoch"
            run.say_resumable(f"preempted ({err.name}){where}: {run_dir} keeps {kept}")
        _exit(err.exit_code, at_once=group is not None)
    if not isinstance(err, UserError):
        err = raised_in_user_code(err) or err  # the user's builder, factory or data callable raised it
    full = disk_full(err)
    if full is not None:  # not a bug: one line, and the run resumes once there is room
        run.record_failure(err, quiet=True)
        print(f"error: {disk_full_message(run_dir, full)}", file=sys.stderr, flush=True)
        if in_sweep():
            return
        _exit(DISK_FULL_EXIT, at_once=group is not None)
    if in_sweep():
        run.record_failure(err)
        log.error("job failed, the sweep goes on: %s", _described(err))
        return
    if isinstance(err, UserCodeError):  # the user's file and line, their frames; the run records it failed
        run.record_failure(err)
        said = f"error: {_described(err)}"
        to_log_file(run_dir, said)
        print(said, file=sys.stderr, end="", flush=True)
        _exit(2, at_once=group is not None and processes.joined())
    if isinstance(err, UserError):
        if not run.discard_if_unused():  # a run directory that holds an earlier run stays, and says why
            to_log_file(run_dir, f"error: {err}")
        print(f"error: {err}", file=sys.stderr, flush=True)
        _exit(2, at_once=group is not None and processes.joined())
    run.record_failure(err)
    # Hydra prints the traceback on the console; the run's train.log gets it too.
    to_log_file(run_dir, f"run failed: {type(err).__name__}: {err}\n{traceback.format_exc()}")
    if group is None:
        raise err
    # A peer that died breaks the collectives: one line, then out at once.
    log.error("run failed:\n%s", traceback.format_exc())
    recorded = f"; {run_dir} records the run as failed; the same command resumes it" if group.rank == 0 else ""
    print(f"error: process {group.rank} of {group.count}: {type(err).__name__}: {_first_line(err)}{recorded}",
          file=sys.stderr, flush=True)
    _exit(1, at_once=True)


def _described(err: BaseException) -> str:
    """A failed sweep job in its log: the line of a user error (with the user's frames), else the traceback."""
    if isinstance(err, UserCodeError):
        return f"{err}\n{err.frames}"
    return str(err) if isinstance(err, UserError) else f"\n{traceback.format_exc()}"


def _exit(code: int, at_once: bool) -> None:
    """Exit with `code`; `at_once` for one of several processes, whose exit JAX's barrier would hold up
    waiting for peers that may be gone."""
    if at_once:
        processes.exit_now(code)
    raise SystemExit(code) from None


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def to_log_file(run_dir: Path, message: str) -> None:
    """Write `message` into the run's log file (train.log) only: the console already shows it."""
    record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == Path(run_dir).resolve():
            handler.handle(record)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"
