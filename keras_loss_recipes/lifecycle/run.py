"""Run: a run directory's life, from the job that opens it to the record it leaves.

    run = Run(cfg, run_dir)
    with run.opened():                  # preemption signals taken, the lock released at the end
        metrics = recipe(cfg, run)      # which calls run.prepare(), then writes through `run`
    # stopped: run.record_failure(err), run.record_interruption(), run.record_preemption(err)

What a run's life needs, held here and nowhere else:

    the run directory and its lock          `prepare` (keras_loss_recipes/runtime/run_lock.py)
    a fresh start or a resume               `prepare`, `resumed_history` (lifecycle/directory.py)
    the backup and its schedule             `backup` (training/backup.py; trainer.backup_every)
    preemption signals and the grace time   `opened` (runtime/preemption.py; trainer.preemption_*)
    several processes and their watchdog    `group`, `watchdog` (lifecycle/group.py, runtime/processes/)
    the failure or interruption record      `record_*` (lifecycle/records.py)
    metrics.json and history.csv            `write_metrics`, `finish`, `history` (reporting/results.py)
"""
from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from keras_loss_recipes.reporting.results import read_history, truncate_history, write_metrics
from keras_loss_recipes.reporting.tensorboard_views import write_run_views
from keras_loss_recipes.lifecycle import directory, group as several, records
from keras_loss_recipes.runtime import clock, preemption, processes, run_lock
from keras_loss_recipes.runtime.run_files import BACKUP_DIR

log = logging.getLogger(__name__)


class Run:
    """One run directory's life. `cfg` is the job's (typed) config; `dir` the run directory."""

    def __init__(self, cfg, run_dir):
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.started = time.perf_counter()  # wall_s counts from here
        self.job_started = clock.job_started() or time.time()  # marked by train.py, or starting now
        self.group = processes.current()  # None: this process trains alone
        # Several processes: ends this one when the group stops moving, and records why.
        self.watchdog = processes.Watchdog(on_stall=lambda message: self.record_failure(RuntimeError(message)))
        self.resuming = False
        self._backup = None

    @property
    def rank(self) -> int:
        return 0 if self.group is None else self.group.rank

    @property
    def processes(self) -> int:
        return 1 if self.group is None else self.group.count

    # The life ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def opened(self):
        """While inside, the signals of trainer.preemption_signals stop the run resumable; the lock taken by
        `prepare` is released on the way out, however the recipe ended."""
        trainer = self.cfg.trainer
        try:
            with preemption.taken_as_preemption(trainer.preemption_signals, trainer.preemption_grace_s,
                                                on_grace_expired=self._grace_expired):
                yield self
        finally:
            run_lock.release(self.dir)

    def prepare(self) -> None:
        """Take the directory's lock (a second process stops), meet the other processes if any, and start
        fresh or resume; RunAlreadyFinished when it holds a finished run."""
        run_lock.acquire(self.dir)  # before anything reads or moves what the directory holds
        prepare = functools.partial(directory.prepare, overwrite=self.cfg.trainer.overwrite)
        if self.group is None:
            mode = prepare(self.dir)
        else:
            several.join(self.cfg, self.group, self.watchdog)
            mode = several.prepare_with_others(self.group, self.dir, prepare)
        self.resuming = mode == "resume"
        self.progress()

    def progress(self) -> None:
        """A phase of the run is done: several processes tell their stall watchdog that the group still moves."""
        self.watchdog.tick()

    # The backup and the resume -------------------------------------------------------------------------

    def backup(self, *, extras, before_save, steps, fast_forward=None, batch_spec=None):
        """The backup callback, saved on trainer.backup_every's schedule; a resumed run restores it when the fit
        starts. Removed once the run's record is written (`finish`)."""
        from keras_loss_recipes.training.backup import Backup
        from keras_loss_recipes.training.save_schedule import parse_every

        self._backup = Backup(self.dir / BACKUP_DIR, fast_forward, parse_every(self.cfg.trainer.backup_every),
                              extras=extras, before_save=before_save, steps=steps, batch_spec=batch_spec)
        return self._backup

    def resumed_history(self) -> list[dict]:
        """The epochs the fit goes on from. A resumed run's history is cut back to its backup (saved every few
        epochs, it may be older: those epochs are trained again), and TensorBoard drops what the earlier attempt
        logged from there on."""
        if not self.resuming:
            return read_history(self.dir)
        after, step = self._backup.resumes_after, self._backup.resumes_at_step
        kept = truncate_history(self.dir, after)
        _mark_restart(self.dir, after)
        at = f" and step {step} of the next" if step else ""
        log.info("resuming the interrupted run in %s after epoch %d%s", self.dir, after, at)
        return kept

    # The records ---------------------------------------------------------------------------------------

    def history(self) -> list[dict]:
        return read_history(self.dir)

    def write_metrics(self, metrics: dict) -> Path:
        return write_metrics(self.dir, metrics)

    def finish(self, metrics: dict, model=None) -> Path:
        """metrics.json (with the run's wall time) and its TensorBoard views; then the backup goes, kept until
        now so that a run stopped during its test evaluation resumes too. Several processes first compare the
        weights of the `model` they trained (a mismatch fails the run)."""
        if self.processes > 1 and model is not None:
            several.compare_weights(model, metrics)
        metrics["wall_s"] = round(time.perf_counter() - self.started, 2)
        out = write_metrics(self.dir, metrics)
        write_run_views(self.dir, metrics)
        if self._backup is not None:
            self._backup.remove()
        return out

    def record_failure(self, err: BaseException, quiet: bool = False) -> None:
        records.record_failure(self.cfg, self.dir, err, quiet=quiet)

    def record_interruption(self) -> None:
        records.record_interruption(self.cfg, self.dir)

    def record_preemption(self, err: preemption.Preempted) -> None:
        """metrics.json says "preempted", with what was kept and how long the stop took. When the grace timer
        has already taken the end over, wait for it to end the process."""
        if not preemption.finishing():
            threading.Event().wait()  # the grace timer is recording the end and exiting the process
        seconds = preemption.seconds_since_signal()
        records.record_interruption(self.cfg, self.dir, status="preempted", signal_name=err.name,
                                    stopped_at=err.kept, stop_s=None if seconds is None else round(seconds, 3))
        if err.kept and seconds is not None:
            log.info("saved %s %.2f s after %s (trainer.preemption_grace_s=%s)", err.kept, seconds, err.name,
                     self.cfg.trainer.preemption_grace_s)

    def discard_if_unused(self) -> bool:
        return directory.discard_if_unused(self.dir)

    def say_resumable(self, what: str) -> None:
        """The one line of a run that stopped resumable: what it kept, and the command that goes on."""
        print(f"{what}; run the same command (with hydra.run.dir={self.dir}) to resume", file=sys.stderr,
              flush=True)

    def _grace_expired(self, signum: int, grace_s: float) -> None:
        """The step under way and its backup took longer than trainer.preemption_grace_s: record the preemption
        now (the timer's thread then ends the process), with the last backup written before the signal."""
        name = signal.Signals(signum).name
        records.record_interruption(self.cfg, self.dir, status="preempted", signal_name=name, stopped_at=None)
        self.say_resumable(f"preempted ({name}): the step under way and its backup did not finish within "
                           f"trainer.preemption_grace_s={grace_s:g}; {self.dir} keeps its last saved epoch")


def _mark_restart(run_dir: Path, epoch: int) -> None:
    """TensorBoard is told to drop what an earlier attempt logged from `epoch` on (in train/ and validation/,
    where the epoch figures go)."""
    from keras_loss_recipes.runtime.event_files import summary_writer

    for name in ("train", "validation"):
        if (run_dir / name).is_dir():
            with summary_writer(run_dir / name) as writer:
                writer.restart_at(epoch)


def run_recipe(recipe, run: Run) -> dict:
    """`recipe(cfg, run)`, as the job runs it: the config checked once, the backend started as `cfg.backend`
    says, the run opened."""
    from keras_loss_recipes.config.settings import validate
    from keras_loss_recipes.runtime.backends import activate_backend

    validate(run.cfg)
    activate_backend(run.cfg.backend)  # before anything imports Keras
    with run.opened():
        return recipe(run.cfg, run)


def in_process(recipe):
    """`recipe(cfg, run)` as `run(cfg, run_dir) -> metrics`: a recipe called from Python (a script, a test)."""
    @functools.wraps(recipe)
    def run(cfg, run_dir) -> dict:
        return run_recipe(recipe, Run(cfg, run_dir))

    run.__doc__ = f"Run this recipe in `run_dir` from Python, as train.py's job does.\n\n{recipe.__doc__ or ''}"
    return run
