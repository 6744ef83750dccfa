"""SLURM: a sweep through a real one-node cluster, with a cancelled and a timed-out job, and a resumed one;
and one model trained by the two processes of `srun -n 2` (keras_loss_recipes/runtime/processes/).

The cluster (scripts/slurm_cluster.py) is started once per session by the
`slurm_cluster` fixture and skipped where it cannot run (not root, no apt-get).
"""
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from keras_loss_recipes.reporting.results import read_history
from keras_loss_recipes.runtime.run_files import BACKUP_DIR
from tests import hold
from scripts.exact_resume import FIGURES
from scripts.multiprocess_figures import JOB as MULTIPROCESS_JOB
from scripts.multiprocess_figures import largest_differences, read_metrics
from tests.conftest import ROOT, project_env
from tests.test_multiprocess import TOLERANCE as MULTIPROCESS_TOLERANCE  # 2 processes against 1

# One sweep, four jobs of the cnn on 600 images (5 steps an epoch), all running at once, told apart by
# their epochs: the 1-epoch job ends ok, the 6-epoch job is cancelled in its third epoch, the 400-epoch job
# gets a 1-minute limit once it runs (the shortest SLURM has; the others keep 10 minutes, a
# loaded machine's start-up included), and the 3-epoch job is sent SIGTERM in its third
# epoch (`scancel --signal=TERM`: a preemption), saves that step, requeues itself and ends
# ok. No warning signal before the limit (signal_delay_s=0): the job is ended by SLURM
# itself. The three longer jobs hold in epoch 3 after its step 2 until they are signalled
# (tests/hold.py), so none can finish first on a fast machine; the shortest never
# reaches a hold, and a resumed run never holds. SLURM starts a requeued job once its
# credentials' lifetime has passed (the test cluster's: 20 s, scripts/slurm_cluster.py), which the sweep
# waits out.
EPOCHS = (1, 6, 400, 3)
CANCELLED, TIMED_OUT, PREEMPTED = 1, 2, 3  # their array indices: the order of the sweep's values
HOLD_AFTER, HOLD_STEP = 2, 2
# SLURM is asked every 2 s whether a job ended (submitit alone would ask up to a minute apart by the time the
# timed-out job ends), and a job SLURM says ended gets 1 s to show its result file (one local disk here).
LAUNCHER = ["hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.array_parallelism=4",
            "hydra.launcher.poll_interval_s=2", "hydra.launcher.result_wait_s=1"]
JOB = ["model=cnn", "data.max_train_examples=600", "trainer.threads=1", "trainer.verbose=0"]


def run_dir_of(sweep: Path, epochs: int) -> Path | None:
    """The job directory of the job with `epochs` epochs, found by the overrides its job recorded."""
    for overrides in sweep.glob("*/.hydra/overrides.yaml"):
        if f"trainer.epochs={epochs}" in (yaml.safe_load(overrides.read_text()) or []):  # [] while being written
            return overrides.parent.parent
    return None


def sweep_command(sweep: Path, epochs: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", *LAUNCHER, *JOB, f"trainer.epochs={epochs}",
            f"hydra.sweep.dir={sweep}", *extra]


def array_task_ids(cluster, state: str = "all") -> dict[int, str]:
    """Array index -> SLURM job id (`12_2`) of the jobs in the queue (in `state`)."""
    listed = cluster.run("squeue", "-h", "-r", "-t", state, "-o", "%i").split()
    return {int(job.rsplit("_", 1)[1]): job for job in listed if "_" in job}


def limit_to_one_minute(cluster, sweep_process, index: int, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while index not in (running := array_task_ids(cluster, "RUNNING")):
        assert sweep_process.poll() is None, sweep_process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"array task {index} never started"
        time.sleep(0.2)
    cluster.run("scontrol", "update", f"JobId={running[index]}", "TimeLimit=1")


def signal_once_held(cluster, sweep: Path, sweep_process, index: int, *scancel, timeout=180) -> None:
    """Once array task `index` holds, `scancel` it (with the options `scancel`)."""
    deadline = time.monotonic() + timeout

    def held() -> bool:
        run_dir = run_dir_of(sweep, EPOCHS[index])
        return run_dir is not None and (run_dir / BACKUP_DIR / hold.NOTICE).exists()

    while not held():
        assert sweep_process.poll() is None, sweep_process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"job {index} never held in epoch {HOLD_AFTER + 1}"
        time.sleep(0.1)
    cluster.run("scancel", *scancel, array_task_ids(cluster)[index])


def reference_run(tmp_path, epochs: int) -> tuple[subprocess.Popen, Path]:
    """The job of `epochs` epochs, once through and off the cluster: what its resumed run must equal."""
    whole = tmp_path / f"uninterrupted_{epochs}"
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *JOB, f"trainer.epochs={epochs}",
                             f"hydra.run.dir={whole}"], cwd=tmp_path, env=project_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), whole


def hparams_session(run_dir: Path) -> dict:
    """{hparam: value} of the newest HParams session in the event files of `run_dir` itself; {} where none
    holds one (an event file is not the HParams record by its name alone)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    sessions = []
    for path in run_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if (value.metadata.plugin_data.plugin_name, value.tag) == (metadata.PLUGIN_NAME,
                                                                          metadata.SESSION_START_INFO_TAG):
                    info = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                    sessions.append((event.wall_time, {name: getattr(hparam, hparam.WhichOneof("kind"))
                                                       for name, hparam in info.hparams.items()}))
    return max(sessions, key=lambda session: session[0])[1] if sessions else {}


def figures_of(process: subprocess.Popen, run_dir: Path) -> dict:
    assert process.wait(timeout=240) == 0, process.stderr.read()[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: metrics[k] for k in FIGURES}


@pytest.mark.slow(seconds=150)
def test_slurm_sweep_records_cancelled_and_timed_out_jobs_requeues_a_preempted_one_and_resumes_them(
        slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    env = dict(project_env(), SLURM_CONF=str(slurm_cluster.conf))
    started = time.perf_counter()
    process = subprocess.Popen(sweep_command(sweep, ",".join(map(str, EPOCHS))), cwd=tmp_path,
                               env={**env, **hold.asked(**{hold.EPOCH_VAR: str(HOLD_AFTER), hold.STEP_VAR: str(HOLD_STEP)})},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The jobs to cancel and to preempt, once through and off the cluster, while the sweep runs.
    references = {index: reference_run(tmp_path, EPOCHS[index]) for index in (CANCELLED, PREEMPTED)}
    try:
        limit_to_one_minute(slurm_cluster, process, TIMED_OUT)
        signal_once_held(slurm_cluster, sweep, process, CANCELLED)
        signal_once_held(slurm_cluster, sweep, process, PREEMPTED, "--signal=TERM")
        out, err = process.communicate(timeout=420)  # bounds a hung sweep; it ends in about 2 minutes
    finally:
        if process.poll() is None:
            process.kill()
    sweep_s = time.perf_counter() - started
    

    # Every job ran and the report was written; the cancelled and the timed-out job failed: exit code 1, both
    # named. The preempted job requeued and ended ok: not among them.
    assert process.returncode == 1, err[-3000:]
    failed_dirs = ", ".join(str(run_dir_of(sweep, EPOCHS[index])) for index in (CANCELLED, TIMED_OUT))
    assert f"2 of 4 jobs failed: {failed_dirs}" in err.splitlines(), err[-3000:]

    runs = {epochs: json.loads((run_dir_of(sweep, epochs) / "metrics.json").read_text()) for epochs in EPOCHS}
    assert [runs[e]["status"] for e in EPOCHS] == ["ok", "failed", "failed", "ok"]
    assert runs[1]["epochs_completed"] == 1
    # The preempted job saved its step, requeued itself and resumed there: the figures of the job never stopped.
    preempted = run_dir_of(sweep, EPOCHS[PREEMPTED])
    assert runs[3]["resumed"] is True and runs[3]["epochs_completed"] == 3
    stopped = json.loads((preempted / "metrics.preempted.json").read_text())
    assert stopped["stopped_at"] == f"epoch {HOLD_AFTER + 1} step {HOLD_STEP} of 5" and stopped["signal"] == "SIGTERM"
    assert {k: runs[3][k] for k in FIGURES} == figures_of(*references[PREEMPTED])
    assert "requeued: it resumes from the step it saved" in (preempted / "train.log").read_text()
    for ended in (CANCELLED, TIMED_OUT):  # SIGTERM too, but SLURM had ended them: they stay ended
        assert ": not requeued" in (run_dir_of(sweep, EPOCHS[ended]) / "train.log").read_text()
    assert "ended CANCELLED" in runs[6]["error"] and "CANCELLED AT" in runs[6]["error"]
    assert "ended TIMEOUT" in runs[400]["error"] and "DUE TO TIME LIMIT" in runs[400]["error"]
    # The report and HParams cover every job, the failed ones with their reason.
    report = (sweep / "comparison.md").read_text()
    assert "| trainer.epochs=6 | 1 | 0 | 0 | 1 |" in report and "| trainer.epochs=400 | 1 | 0 | 0 | 1 |" in report
    assert "DUE TO TIME LIMIT" in (sweep / "comparison.csv").read_text()
    assert "sweep summary (4 jobs)" in out + err
    assert f"resumed after: preempted (SIGTERM) at epoch {HOLD_AFTER + 1} step {HOLD_STEP} of 5" in out + err
    for epochs in EPOCHS:  # each job's newest HParams session: its epochs, and how it ended, as metrics.json says
        session = hparams_session(run_dir_of(sweep, epochs))
        assert (session.get("epochs"), session.get("status")) == (epochs, runs[epochs]["status"]), (epochs, session)

    # The cancelled job alone, into its own job directory: it resumes from its backup and finishes.
    cancelled = run_dir_of(sweep, EPOCHS[CANCELLED])
    done_before = len(read_history(cancelled))
    again = subprocess.run(sweep_command(sweep, str(EPOCHS[CANCELLED]), f"hydra.sweep.subdir='{cancelled.name}'"),
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((cancelled / "metrics.json").read_text())
    assert resumed["status"] == "ok" and resumed["resumed"] is True, (again.stdout + again.stderr)[-3000:]
    assert resumed["epochs_completed"] == 6
    assert done_before == HOLD_AFTER
    assert json.loads((cancelled / "metrics.failed.json").read_text())["status"] == "failed"
    # scancel, then resumed: exactly the figures of the run never cancelled (the same seed, this machine).
    assert {k: resumed[k] for k in FIGURES} == figures_of(*references[CANCELLED])
    figures = {"cluster_startup_s": slurm_cluster.startup_s, "sweep_s": round(sweep_s, 1),
               "cancelled_after_epochs": done_before}
    print(f"\nSLURM figures: {json.dumps(figures)}")


def test_the_presets_compose_on_submitit_slurm_with_the_recording_launcher():
    from hydra import compose, initialize_config_dir

    from hydra_plugins.recipes_slurm_launcher.slurm_launcher import job_parameters

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cpu, gpu = (compose(config_name="train", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
                    .hydra.launcher for preset in ("slurm_cpu", "slurm_gpu"))
    assert cpu._target_ == gpu._target_ == "hydra_plugins.recipes_slurm_launcher.slurm_launcher.RecordingSlurmLauncher"
    assert (cpu.partition, cpu.gres, cpu.cpus_per_task) == ("cpu", None, 4)
    assert (gpu.partition, gpu.gres, gpu.timeout_min, gpu.array_parallelism) == ("gpu", "gpu:1", 240, 16)
    # What submitit's executor receives: SLURM-only keys prefixed, the executor's own left out.
    params = job_parameters(dict(gpu))
    assert params["slurm_gres"] == "gpu:1" and params["timeout_min"] == 240 and params["slurm_partition"] == "gpu"
    assert "submitit_folder" not in params and "slurm_max_num_timeout" not in params
    # The launcher's own waiting: SLURM asked every minute at least (submitit alone backs off to 10 minutes).
    assert (cpu.poll_interval_s, cpu.result_wait_s) == (60, 15)
    assert not {"slurm_poll_interval_s", "slurm_result_wait_s", "poll_interval_s", "result_wait_s"} & set(params)


def test_the_launcher_asks_slurm_every_poll_interval_and_waits_result_wait_s_for_a_late_result(tmp_path):
    """A job whose end only a question to SLURM reveals (submitit's own schedule never asks here): found at the
    third forced question; its result file, late on a shared file system, waited for or not."""
    from hydra_plugins.recipes_slurm_launcher.slurm_launcher import wait_for_end

    class Job:
        def __init__(self, result_shows_after: int | None):
            self.paths = SimpleNamespace(result_pickle=tmp_path / f"result_{result_shows_after}.pkl")
            self.forced, self.looked_after_end, self.result_shows_after = 0, 0, result_shows_after
            self.calls = 0

        def done(self, force_check=False):
            self.calls += 1
            assert self.calls < 50, "still waiting: SLURM was never asked"
            self.forced += force_check
            if self.forced >= 3:
                self.looked_after_end += 1
                if self.looked_after_end == self.result_shows_after:
                    self.paths.result_pickle.touch()
            return self.forced >= 3 or self.paths.result_pickle.exists()

    lost = Job(result_shows_after=None)
    assert wait_for_end(lost, poll_interval_s=0.01, result_wait_s=0.05) is False and lost.forced == 3
    late = Job(result_shows_after=3)
    assert wait_for_end(late, poll_interval_s=0.01, result_wait_s=30) is True and late.looked_after_end == 3


@pytest.mark.slow(seconds=35)
def test_srun_starts_two_processes_that_train_one_model_on_jax(slurm_cluster, tmp_path, one_process_job):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in project_env().items() if not k.startswith("SLURM_")}  # not a step of this job
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    started = time.monotonic()
    done = subprocess.run(["srun", "-n", "2", "--cpus-per-task=1", "--time=5", sys.executable, str(ROOT / "train.py"),
                           *MULTIPROCESS_JOB, f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["processes"] == 2 and metrics["weights_match"] is True
    assert "(slurm): coordinator" in done.stdout + done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # process 1 wrote nothing here
    differences = largest_differences(read_metrics(one_process_job), metrics)  # the same job in one process
    assert max(differences.values()) <= MULTIPROCESS_TOLERANCE, differences
    print(f"srun -n 2: {time.monotonic() - started:.1f} s, val_accuracy {metrics['val_accuracy']:.4f}, "
          f"largest difference from 1 process {max(differences.values()):.2g}")


@pytest.mark.slow(seconds=45)
def test_scancel_signal_term_preempts_both_srun_tasks_at_one_step_and_srun_resumes_them_exactly(
        slurm_cluster, tmp_path, two_process_job):
    """srun -n 2, both tasks held in epoch 2 after step 2, `scancel --signal=TERM`: both stop after the step they
    agree on, save it once, exit 143; the same srun resumes there and ends as the two processes straight through
    (the launcher's run of the same job, tests/conftest.py's two_process_job)."""
    from scripts.faults import GROUP_RUN, GROUP_STOP, same_run

    run_dir = tmp_path / "run"
    env = {k: v for k, v in project_env().items() if not k.startswith("SLURM_")}  # not a step of this job
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    command = ["srun", "-n", "2", "--cpus-per-task=1", "--time=5", "-J", "preempted-group", sys.executable,
               str(ROOT / "train.py"), *GROUP_RUN, f"hydra.run.dir={run_dir}"]
    held = {**env, **hold.asked(**{hold.EPOCH_VAR: "1", hold.STEP_VAR: "2"})}
    first = subprocess.Popen(command, cwd=tmp_path, env=held, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        assert hold.wait_until_held(first, run_dir / BACKUP_DIR / hold.NOTICE, timeout=240), first.communicate()[0][-3000:]
        job = slurm_cluster.run("squeue", "-h", "-n", "preempted-group", "-o", "%i").split()
        slurm_cluster.run("scancel", "--signal=TERM", *job)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, out[-3000:]
    stopped = json.loads((run_dir / "metrics.json").read_text())
    assert (stopped["status"], stopped["signal"]) == ("preempted", "SIGTERM"), stopped
    assert stopped["stopped_at"] == GROUP_STOP, stopped  # the step after the one both held at
    step = int(GROUP_STOP.split()[3])
    saved = sorted(p.name for p in (run_dir / BACKUP_DIR).iterdir() if p.name.startswith("epoch-"))
    assert saved == ["epoch-000001", f"epoch-000001-step-{step:06d}"], saved  # saved once, by process 0
    assert out.count(f"saved {GROUP_STOP}") == 2, out[-3000:]  # each task stopped after that step

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["status"] == "ok" and resumed["resumed"] is True and resumed["weights_match"] is True
    assert same_run(run_dir, two_process_job)
