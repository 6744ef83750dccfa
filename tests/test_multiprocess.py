"""Several processes training one model on JAX (keras_loss_recipes/runtime/processes/, scripts/launch_processes.py).

Two local processes against one on the same global batch (and the sockets they
listen on meanwhile), a killed worker, and the one-line errors of bad input.
srun -n 2 on the local SLURM cluster is in tests/test_slurm.py, which starts the cluster.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_loss_recipes.runtime import processes
from keras_loss_recipes.runtime.errors import UserError
from scripts.multiprocess_figures import (
    FIGURES, JOB, KILL_JOB, LAUNCHER, PAGE, is_loopback, kill_after_first_epoch, largest_differences,
    launch_command, page_block, read_metrics, render, wait_listening,
)
from scripts import faults
from tests.conftest import project_env

# How close 2 processes come to 1: measured equal here (docs/multiprocess.json).
TOLERANCE = 1e-5
# Every process gone within this long of a worker's death (the bound: about 2 minutes).
FAULT_BOUND_S = 120


def env_with_tmp(tmp_path: Path) -> dict:
    """The project's environment with its own TMPDIR, to see what the processes leave behind there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return dict(project_env(), TMPDIR=str(scratch))


# ---- fast: the contract read from the environment -----------------------------------------------


def test_the_group_comes_from_the_launcher_or_from_srun():
    assert processes.from_environment({}) is None
    launched = processes.from_environment({"RECIPES_PROCESSES": "2", "RECIPES_PROCESS_ID": "1",
                                           "RECIPES_COORDINATOR": "127.0.0.1:4321"})
    assert (launched.count, launched.rank, launched.coordinator, launched.bind_host) == (2, 1, "127.0.0.1:4321",
                                                                                         "127.0.0.1")
    slurm = {"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "17",
             "SLURM_STEP_NODELIST": "localhost", "SLURMD_NODENAME": "localhost"}
    group = processes.from_environment(slurm)
    assert (group.count, group.rank, group.source) == (2, 0, "slurm")
    assert group.coordinator == f"localhost:{processes.slurm_port('17', '0')}"
    assert group.bind_host == "127.0.0.1"
    assert processes.from_environment(dict(slurm, SLURM_STEP_NUM_TASKS="1")) is None  # one task: alone
    assert processes.from_environment(dict(slurm, RECIPES_COORDINATOR_PORT="5555")).port == "5555"
    assert processes.slurm_port("17", "0") != processes.slurm_port("17", "1")


def test_the_first_host_of_a_slurm_node_list():
    assert processes.first_host("node[03-05,9],gpu1") == "node03"
    assert processes.first_host("a,b") == "a"
    assert processes.first_host("vm") == "vm"


def test_bad_group_variables_are_one_line_errors():
    with pytest.raises(UserError, match="RECIPES_PROCESS_ID=2"):
        processes.from_environment({"RECIPES_PROCESSES": "2", "RECIPES_PROCESS_ID": "2",
                                    "RECIPES_COORDINATOR": "127.0.0.1:1"})
    with pytest.raises(UserError, match="RECIPES_COORDINATOR='nowhere'"):
        processes.from_environment({"RECIPES_PROCESSES": "2", "RECIPES_PROCESS_ID": "0",
                                    "RECIPES_COORDINATOR": "nowhere"})


def test_the_watchdog_ends_a_process_that_makes_no_progress(tmp_path):
    record = tmp_path / "recorded"
    code = ("import time; from keras_loss_recipes.runtime.processes import Watchdog; "
            f"watchdog = Watchdog(on_stall=lambda message: open({str(record)!r}, 'w').write(message)); "
            "watchdog.start(1, 'process 1'); [watchdog.tick() or time.sleep(0.1) for _ in range(20)]; "
            "time.sleep(30)")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=project_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 15
    assert re.search(r"error: process 1 made no progress for \d+ s \(trainer.stall_timeout_s=1\)", done.stderr)
    assert record.read_text().startswith("process 1 made no progress")


class MemoryStore:
    """The coordinator's key-value store as the agreement uses it (set once, a blocking get), in memory."""

    def __init__(self):
        import threading

        self.values, self.changed = {}, threading.Condition()

    def key_value_set(self, key, value):
        with self.changed:
            if key in self.values:
                raise RuntimeError(f"ALREADY_EXISTS: {key}")
            self.values[key] = value
            self.changed.notify_all()

    def blocking_key_value_get(self, key, timeout_in_ms):
        with self.changed:
            if not self.changed.wait_for(lambda: key in self.values, timeout_in_ms / 1000):
                raise TimeoutError(f"DEADLINE_EXCEEDED: {key}")
            return self.values[key]


def test_every_process_stops_after_the_step_after_the_furthest_ones_when_any_is_signalled():
    import signal
    import threading

    store, noticed = MemoryStore(), {}
    heard = {rank: threading.Event() for rank in (0, 1)}

    def on_notice(rank):
        def notice(signum):
            noticed[rank] = signum
            heard[rank].set()
        return notice

    group = [processes.StopTogether(rank, 2, on_notice(rank), client=store) for rank in (0, 1)]
    ahead, behind = group
    assert not any(ahead.step_done() for _ in range(5)) and not any(behind.step_done() for _ in range(3))
    behind.announce(signal.SIGUSR1)
    behind.announce(signal.SIGTERM)  # a second signal (srun signals every task) is the same preemption
    for rank in (0, 1):
        assert heard[rank].wait(10)
    # Each told the last step it finished (5 and 3): both stop after step 6, the furthest one's next.
    assert [ahead.step_done()] == [True]
    assert [behind.step_done() for _ in range(3)] == [False, False, True]
    assert noticed == {0: signal.SIGUSR1, 1: signal.SIGUSR1} and ahead.stop_after == behind.stop_after == 6
    for member in group:
        member.end()


@pytest.mark.parametrize("value", ["0", "two", "65"])
def test_the_launcher_refuses_a_bad_number_of_processes(value):
    done = subprocess.run([sys.executable, str(LAUNCHER), "--processes", value, "--", *JOB],
                          env=project_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --processes={value}: a whole number from 1 to 64"


# ---- slow: real processes -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_launcher_refuses_a_backend_other_than_jax(tmp_path):
    done = subprocess.run(launch_command(*JOB, "backend=tensorflow", "trainer.distribution=none"),
                          cwd=tmp_path, env=project_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout[-3000:]
    assert ("[p0] error: backend=tensorflow trainer.distribution=none: 2 processes (launcher) train one model "
            "only with backend=jax trainer.distribution=data_parallel") in done.stdout
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no run directory left behind


@pytest.mark.slow(seconds=40)
def test_two_processes_train_the_model_one_does_and_listen_on_loopback_only(tmp_path, one_process_job):
    env = env_with_tmp(tmp_path)
    launched = tmp_path / "launched"
    launched.mkdir()
    started = time.monotonic()
    launcher = subprocess.Popen(launch_command(*JOB), cwd=launched, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    seen = wait_listening(launcher)  # the listening sockets, while the processes meet and train
    out, err = launcher.communicate()
    two_s = time.monotonic() - started
    assert launcher.returncode == 0, out[-4000:] + err[-2000:]

    # Process 0 listens twice (the coordinator and gloo), the other once (gloo); all on loopback.
    assert len(seen) == 2 and sum(len(a) for a in seen.values()) >= 3, seen
    assert all(is_loopback(a) for addresses in seen.values() for a in addresses), seen

    # One run directory (process 0's); nothing left of the other's scratch directory.
    run_dirs = [p.parent for p in (launched / "runs").rglob("metrics.json")]
    assert len(run_dirs) == 1, run_dirs
    assert list((tmp_path / "tmp").iterdir()) == []
    two, one = read_metrics(run_dirs[0]), read_metrics(one_process_job)  # the same job, one process
    assert two["status"] == "ok" and two["processes"] == 2 and two["weights_match"] is True
    assert two["replicas"] == 2 and one["processes"] == 1 and one["weights_match"] is None
    differences = largest_differences(one, two)
    assert max(differences.values()) <= TOLERANCE, differences
    print(f"2 processes: {two_s:.1f} s; largest difference from 1 process: {max(differences.values()):.2g}")


@pytest.mark.slow(seconds=50)
def test_a_killed_worker_ends_every_process_and_the_run_resumes_as_the_straight_run(tmp_path, two_process_job):
    run_dir = tmp_path / "run"
    kill = kill_after_first_epoch(run_dir, tmp_path, project_env())
    assert kill["left_running"] == 0 and kill["seconds_until_all_exited"] < FAULT_BOUND_S, kill
    assert kill["launcher_exit_status"] != 0
    assert kill["launcher_line"].startswith("launch: process 1 of 2 was killed by SIGKILL"), kill["stderr"][-2000:]
    # Process 0 saw its peer go and said so in one line, then recorded the run as failed.
    assert "[p0] error: process 0 of 2: " in kill["stdout"], kill["stdout"][-3000:]
    failed = read_metrics(run_dir)
    assert failed["status"] == "failed" and "Gloo" in failed["error"], failed
    print(f"killed process 1 after epoch {kill['epochs_before_kill']}: "
          f"every process gone {kill['seconds_until_all_exited']} s later")
    started = time.monotonic()
    command = launch_command(*KILL_JOB, f"hydra.run.dir={run_dir}")
    again = subprocess.run(command, cwd=tmp_path, env=project_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    done = read_metrics(run_dir)
    assert done["status"] == "ok" and done["resumed"] is True and done["epochs_completed"] == 6
    assert done["processes"] == 2 and done["weights_match"] is True
    # From the backup of its last completed epoch (the one before the kill), in both processes.
    assert sorted(re.findall(r"^\[p(\d)\] .* - resuming the interrupted run in .* after epoch (\d+)$", again.stdout,
                             re.MULTILINE)) == [("0", "1"), ("1", "1")], again.stdout[-3000:]
    # Bit for bit the two processes' run never killed: every figure, every epoch of history.csv.
    assert faults.same_run(run_dir, two_process_job)
    print(f"resumed and finished in {time.monotonic() - started:.1f} s")


@pytest.mark.slow(seconds=50)
def test_a_preempted_process_stops_every_process_after_the_same_step_and_the_run_resumes_exactly(
        tmp_path, two_process_job):
    """SIGTERM to process 1 of 2, both held after step 2 of epoch 2: they agree on the next step, each saves it
    and exits 143, process 0's run directory records it, and the same command ends as the straight run."""
    row = faults.group_preemption(tmp_path, straight_dir=two_process_job)
    run_dir = tmp_path / "run"
    assert row["saved_by"] == {0: faults.GROUP_STOP, 1: faults.GROUP_STOP}, row
    assert (row["exit"], row["status"], row["stopped_at"]) == (143, "preempted", faults.GROUP_STOP), row
    assert row["said"] == [
        f"preempted (SIGTERM) at {faults.GROUP_STOP}: {run_dir} keeps a backup of that point; run the same command "
        f"(with hydra.run.dir={run_dir}) to resume",
        f"launch: preempted (SIGTERM): every process stopped after {faults.GROUP_STOP} and exited with 143"]
    assert row["backups"] == ["epoch-000001", f"epoch-000001-step-{faults.STEP + 1:06d}"]  # that step, once
    step = faults.STEP + 1
    assert sorted(row["resumed_at"]) == [("0", f"epoch 2 step {step + 1}"), ("1", f"epoch 2 step {step + 1}")]
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True), row
    assert read_metrics(run_dir)["status"] == "ok" and not (run_dir / "backup").exists()


def test_scale_md_shows_the_measured_figures():
    figures = json.loads(FIGURES.read_text())
    assert page_block(PAGE.read_text()) == render(figures), "run: python scripts/multiprocess_figures.py"
    assert max(figures["largest_difference"].values()) <= TOLERANCE
    assert figures["two_processes"]["weights_match"] is True
    assert all(is_loopback(f"{a}:0") for a in figures["listened_on"])
    assert figures["kill"]["seconds_until_all_exited"] < FAULT_BOUND_S and figures["kill"]["left_running"] == 0


def test_scale_md_states_the_timeouts_the_code_uses():
    """The settings docs/scale.md quotes are the code's: a change to one shows here."""
    from keras_loss_recipes.config.compose import compose_train

    from scripts.launch_processes import GRACE_S

    page = PAGE.read_text()
    assert f"after {processes.HEARTBEAT_TIMEOUT_S} s (JAX's default: 100 s)" in page
    assert f"`trainer.stall_timeout_s` ({processes.STALL_TIMEOUT_S})" in page
    assert f"wait at most {processes.INIT_TIMEOUT_S} s for each other" in page
    assert f"ends whatever still runs {GRACE_S} s later" in page
    for preset in ("default", "quick"):
        assert compose_train([f"trainer={preset}"]).trainer.stall_timeout_s == processes.STALL_TIMEOUT_S, preset
