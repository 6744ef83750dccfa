"""The SLURM launcher of the `hydra/launcher=slurm_*` presets: submitit's, with every job's end recorded.

Hydra's `submitit_slurm` launcher waits for the jobs' results in order and raises
at the first job that left none (cancelled, killed, past its time limit, its
node lost): the sweep stops with a traceback, later jobs are not waited for, and
no report is written. This launcher submits the same job array, waits for every
job, and records each one that ended without a result as `failed` in its run
directory's metrics.json, with SLURM's end state and SLURM's own line about it
(`CANCELLED AT ...`, `DUE TO TIME LIMIT`). The run directory keeps its backup,
so the same command resumes that job (keras_loss_recipes.lifecycle.directory.prepare).

A job stopped by a preemption signal (SLURM's preemption, `scancel --signal=TERM`)
saves the step it was at and exits with 128 + the signal's number
(keras_loss_recipes/runtime/preemption.py). With `requeue_preempted` (the presets' default),
the job then requeues itself (`scontrol requeue`, as submitit does for its own
checkpoints): SLURM starts it again, it resumes from that step, and the sweep gets
its result as from any other job; its metrics.json says `resumed: true`, and
metrics.preempted.json keeps the stopped attempt's record.

A job SLURM ended without a result through a fault (its process killed, its node
lost, past its time limit, out of memory) is submitted again into its run directory,
where it resumes from its backup, up to `max_resubmits` times (0 in the presets);
a job a person cancelled (`scancel`) or whose code raised is not. A job SLURM
requeues itself (a node failure, with SLURM's JobRequeue) is waited for as it runs
again: a requeue is no end.

Submitit learns a job's end state from `sacct`: the cluster needs accounting
(slurmdbd), or a killed job is never known to have ended. It asks less and less
often as a sweep ages (up to 10 minutes apart); `poll_interval_s` bounds that, and
`result_wait_s` how long a result file is waited for once SLURM says the job ended.
"""
from __future__ import annotations

import copy
import functools
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf, open_dict

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:
    # requirements-sweeps.txt is not installed. Hydra imports every module under hydra_plugins at
    # start-up and warns about any that fails, on every run: without submitit this module defines
    # no launcher (the class below is then no Hydra plugin), and the slurm presets cannot be used.
    BaseQueueConf, SlurmLauncher = None, object

log = logging.getLogger(__name__)
# Launcher settings that configure the executor itself rather than each job.
EXECUTOR_KEYS = ("submitit_folder", "max_num_timeout", "requeue_preempted", "poll_interval_s", "result_wait_s",
                 "max_resubmits")
# The exit codes of a run a preemption signal stopped, its step saved (keras_loss_recipes/runtime/preemption.py).
PREEMPTED_EXITS = {128 + getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP")}
# SLURM's end states of a job that a fault ended without a result: worth submitting again (`max_resubmits`).
# CANCELLED (a person's scancel) is not among them, nor a job that left a result (its own error).
FAULT_STATES = ("FAILED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED")
# SLURM's states of a job still (or again) in the queue: one requeued by SLURM itself is not over.
QUEUED_STATES = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                 "RESIZING", "SUSPENDED")


class SlurmJobEnded(RuntimeError):
    """SLURM ended a job before it returned (the message says how)."""


class RecordingSlurmLauncher(SlurmLauncher):
    def __call__(self, *args, **kwargs):
        """The job, on its node. Stopped by a preemption signal (its step saved), it requeues itself when
        `requeue_preempted`: SLURM runs it again and it resumes there."""
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as stop:
            if self.params.get("requeue_preempted", True) and stop.code in PREEMPTED_EXITS:
                requeue_this_job()
            raise

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        executor = submitit.AutoExecutor(folder=self.params["submitit_folder"], cluster="slurm",
                                         slurm_max_num_timeout=self.params.get("max_num_timeout", 0))
        executor.update_parameters(**job_parameters(self.params))
        importable_in_jobs()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        arguments = [(list(overrides), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state())
                     for n, overrides in zip(numbers, job_overrides)]
        jobs = executor.map_array(self, *zip(*arguments))
        for job, overrides in zip(jobs, job_overrides):
            log.info("SLURM job %s: %s", job.job_id, " ".join(overrides))
        resubmit = functools.partial(executor.submit, self)
        return [self._outcome(job, list(overrides), n, functools.partial(resubmit, *arguments[i]))
                for i, (job, overrides, n) in enumerate(zip(jobs, job_overrides, numbers))]

    def _outcome(self, job, overrides: list[str], number: int, resubmit) -> JobReturn:
        """The job's own return, or, when SLURM ended it, a failure recorded in its run directory. A job a fault
        ended without a result is submitted again (`resubmit()`, the same job), up to max_resubmits times."""
        import submitit

        cfg, run_dir = self._job_config(overrides, number)
        resubmits_left = int(self.params.get("max_resubmits") or 0)
        while True:
            if wait_for_end(job, self.params["poll_interval_s"], self.params["result_wait_s"]):  # config.py's
                try:
                    return job.results()[0]
                except submitit.core.utils.UncompletedJobError as err:  # a crash: its traceback for a result
                    ended = SlurmJobEnded(end_reason(job, err))
                    break
            if queued_again(job.job_id):
                log.warning("SLURM job %s was requeued by SLURM: waiting for it to run again", job.job_id)
                time.sleep(1.0)
                continue
            ended = SlurmJobEnded(end_reason(job, None))
            if finished_record(run_dir) or resubmits_left <= 0 or str(job.state).split()[0] not in FAULT_STATES:
                break
            resubmits_left -= 1
            # Recorded first: the next attempt keeps this one's record (metrics.failed.json), as every resume does.
            record_end(cfg, run_dir, ended, job.job_id)
            job = resubmit()
            log.warning("%s; submitted again as SLURM job %s, to resume from its backup (%d more allowed)", ended,
                        job.job_id, resubmits_left)
        earlier = finished_record(run_dir)
        if earlier:
            # Ended between writing its record and handing back its result: the record stands.
            log.warning("%s, after it had finished (%s); its record is kept", ended, earlier.get("status"))
            value = earlier.get("val_accuracy")
        else:
            log.error("%s; recorded as failed in %s", ended, run_dir)
            record_end(cfg, run_dir, ended, job.job_id)
            value = None
        # NaN for a failed job, as keras_loss_recipes.cli.job returns: a sweeper records it as a failed trial.
        return JobReturn(overrides=overrides, cfg=cfg, working_dir=str(run_dir), status=JobStatus.COMPLETED,
                         _return_value=float("nan") if value is None else float(value))

    def _job_config(self, overrides: list[str], number: int):
        """The config a job's task saw, and its run directory, composed as the job composed them."""
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.num = number  # as the job itself sets it; run directory names may use it
        run_dir = Path(str(self.config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        task_config = copy.deepcopy(sweep_config)
        with open_dict(task_config):
            del task_config["hydra"]
        return task_config, run_dir


def importable_in_jobs() -> None:
    """Put the project on the jobs' PYTHONPATH: they unpickle this launcher and import the recipes.

    sbatch hands the submitting environment on; without this, a sweep started
    from outside the repository (python /path/to/train.py -m ...) has jobs that
    cannot import either.
    """
    import keras_loss_recipes

    root = str(Path(keras_loss_recipes.__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


def finished_record(run_dir: Path) -> dict:
    """The run directory's metrics.json if it records a finished run (ok, diverged), else {}."""
    # Imported here: Hydra imports this module at every start.
    from keras_loss_recipes.reporting.results import RESUMABLE, read_metrics
    from keras_loss_recipes.runtime.run_files import METRICS_FILE

    record = read_metrics(run_dir) if (run_dir / METRICS_FILE).is_file() else {}
    return record if record and record.get("status") not in RESUMABLE else {}


def record_end(cfg, run_dir: Path, ended: SlurmJobEnded, job_id: str) -> None:
    """Record that SLURM ended job `job_id` without a result: `failed`, with SLURM's reason. A record that an
    earlier attempt of the job wrote (preempted, interrupted: it saved a step, requeued, and SLURM then ended
    the next attempt) is kept as that attempt's, so that the report counts both."""
    from keras_loss_recipes.lifecycle.directory import keep_as_attempt
    from keras_loss_recipes.lifecycle.records import record_failure
    from keras_loss_recipes.reporting.results import read_metrics
    from keras_loss_recipes.runtime.run_files import METRICS_FILE

    path = run_dir / METRICS_FILE
    status = read_metrics(run_dir).get("status") if path.is_file() else None
    if status in ("preempted", "interrupted"):
        started = last_start(job_id)
        # Written before the last attempt started (no attempt writes its record within a second of its start).
        if started is not None and path.stat().st_mtime < started + 1.0:
            keep_as_attempt(run_dir, status)
    record_failure(cfg, run_dir, ended)


def last_start(job_id: str) -> float | None:
    """When SLURM last started job `job_id` (its latest attempt), as a time.time() value; None if unknown."""
    import datetime

    shown = subprocess.run(["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", "Start"], capture_output=True,
                           text=True, timeout=60)
    starts = [line.strip() for line in shown.stdout.splitlines()
              if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+", line.strip())]
    return datetime.datetime.fromisoformat(starts[-1]).timestamp() if starts else None


def queued_again(job_id: str) -> bool:
    """Whether SLURM holds job `job_id` in its queue again (it requeued the job itself, e.g. after a node
    failure), although its last attempt ended."""
    shown = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                           timeout=60)
    return shown.returncode == 0 and any(state in QUEUED_STATES for state in shown.stdout.split())


def requeue_this_job() -> None:
    """`scontrol requeue` this job (an array's task by its `12_3` id, as submitit does), if it still runs: a
    signal alone (`scancel --signal=TERM`, sbatch's `--signal`) leaves it RUNNING, while a cancelled or timed-out
    job (SIGTERM, then SIGKILL) has ended and stays so."""
    import submitit

    job_id = submitit.JobEnvironment().job_id
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60)
    state = re.search(r"\bJobState=(\w+)", shown.stdout)
    if state is None or state[1] != "RUNNING":
        log.warning("SLURM job %s is %s: not requeued", job_id, state[1] if state else "unknown to scontrol")
        return
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    if done.returncode:
        log.error("SLURM job %s could not be requeued (%s); the same command resumes it", job_id,
                  (done.stderr or done.stdout).strip())
    else:
        log.warning("SLURM job %s requeued: it resumes from the step it saved", job_id)


def job_parameters(params: dict) -> dict:
    """The launcher settings as submitit's executor takes them: the SLURM-only ones prefixed `slurm_`."""
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    return {(key if key in shared else f"slurm_{key}"): value
            for key, value in params.items() if key not in EXECUTOR_KEYS}


def wait_for_end(job, poll_interval_s: float | None, result_wait_s: float) -> bool:
    """Wait until `job` has ended; whether it left its result file (then `job.results()` returns at once).

    `job.done()` looks for the result file, and asks SLURM on submitit's own
    schedule; with `poll_interval_s` SLURM is also asked that often. Once SLURM
    says the job ended, its result file gets `result_wait_s` to show up.
    """
    asked = time.monotonic()
    while not job.done():
        if poll_interval_s is not None and time.monotonic() - asked >= poll_interval_s:
            asked = time.monotonic()
            if job.done(force_check=True):
                break
        time.sleep(min(1.0, poll_interval_s or 1.0))
    deadline = time.monotonic() + result_wait_s
    # done() touches the job's folder first, so that a shared file system shows a file written on a node.
    while not (job.done() and job.paths.result_pickle.exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return job.paths.result_pickle.exists()


def end_reason(job, err: Exception | None) -> str:
    """`SLURM job 12_3 ended TIMEOUT without a result: slurmstepd: ... DUE TO TIME LIMIT ***`.

    The detail is SLURM's own line about the end (`*** ... ***` in the job's
    stderr), else the last line submitit gave for a crash (`err`: its traceback
    ends with it), else the last line of the job's stderr.
    """
    import submitit

    crashed = isinstance(err, submitit.core.utils.FailedJobError)
    # A crash's message is the traceback between two dashed lines, then where the logs are.
    message = str(err).split("-" * 22)[1] if crashed and str(err).count("-" * 22) >= 2 else str(err or "")
    stderr = job.stderr() or ""
    said = [line.strip() for line in stderr.splitlines() if "***" in line]
    last = message.strip().splitlines() or stderr.strip().splitlines() or ["no output"]
    detail = said[-1] if said else last[-1]
    how = "crashed" if crashed else f"ended {job.state}"
    return f"SLURM job {job.job_id} {how} without a result: {detail}"
