"""Several processes training one model on JAX (recipes/runtime/processes.py, scripts/launch_processes.py).

Two local processes against one on the same global batch (and the sockets they
listen on meanwhile), a killed worker, srun -n 2 on the local SLURM cluster,
and the one-line errors of bad input.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipes.runtime import processes
from recipes.runtime.errors import UserError
from tests.conftest import ROOT, project_env

LAUNCHER = ROOT / "scripts" / "launch_processes.py"
# The mlp on 512 images, 2 epochs of 4 global batches of 128.
JOB = ["backend=jax", "trainer.distribution=data_parallel", "model=mlp", "data.max_train_examples=512",
       "trainer=quick", "trainer.verbose=2"]
# How close 2 processes come to 1: measured equal to about 1e-7 (float32 sums in another order).
TOLERANCE = 1e-5
# Every process gone within this long of a worker's death (the bound: about 2 minutes).
FAULT_BOUND_S = 120


def launch_command(*overrides: str, count: int = 2) -> list[str]:
    return [sys.executable, str(LAUNCHER), "--processes", str(count), "--", *overrides]


def env_with_tmp(tmp_path: Path) -> dict:
    """The project's environment with its own TMPDIR, to see what the processes leave behind there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return dict(project_env(), TMPDIR=str(scratch))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def listening(launcher: subprocess.Popen) -> dict:
    """{pid: {"ip:port", ...}} of the sockets the launcher's children listen on now."""
    import psutil

    found = {}
    try:
        children = psutil.Process(launcher.pid).children()
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            found[child.pid] = {f"{c.laddr.ip}:{c.laddr.port}" for c in child.net_connections("inet")
                                if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return found


def is_loopback(address: str) -> bool:
    ip = address.rsplit(":", 1)[0]
    return ip.startswith("127.") or ip in ("::1", "[::1]") or ip.startswith("::ffff:127.")


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


@pytest.mark.slow
def test_two_processes_train_the_model_one_does_and_listen_on_loopback_only(tmp_path):
    env = env_with_tmp(tmp_path)
    single = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *JOB, f"hydra.run.dir={tmp_path / 'one'}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    launched = tmp_path / "launched"
    launched.mkdir()
    started = time.monotonic()
    launcher = subprocess.Popen(launch_command(*JOB), cwd=launched, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    seen: dict = {}
    while launcher.poll() is None:  # the listening sockets, while the processes meet and train
        for pid, addresses in listening(launcher).items():
            seen.setdefault(pid, set()).update(addresses)
        time.sleep(0.2)
    out, err = launcher.communicate()
    two_s = time.monotonic() - started
    single_out = single.communicate(timeout=300)[0]
    assert launcher.returncode == 0, out[-4000:] + err[-2000:]
    assert single.returncode == 0, single_out[-4000:]

    # Process 0 listens twice (the coordinator and gloo), the other once (gloo); all on loopback.
    assert len(seen) == 2 and sum(len(a) for a in seen.values()) >= 3, seen
    assert all(is_loopback(a) for addresses in seen.values() for a in addresses), seen

    # One run directory (process 0's); nothing left of the other's scratch directory.
    run_dirs = [p.parent for p in (launched / "runs").rglob("metrics.json")]
    assert len(run_dirs) == 1, run_dirs
    assert list((tmp_path / "tmp").iterdir()) == []
    two, one = read_metrics(run_dirs[0]), read_metrics(tmp_path / "one")
    assert two["status"] == "ok" and two["processes"] == 2 and two["weights_match"] is True
    assert two["replicas"] == 2 and one["processes"] == 1 and one["weights_match"] is None
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert two["history"][key] == pytest.approx(one["history"][key], abs=TOLERANCE), key
    for key in ("test_accuracy", "test_loss", "test_exact_ce"):
        assert two[key] == pytest.approx(one[key], abs=TOLERANCE), key
    print(f"2 processes: {two_s:.1f} s; largest difference from 1 process: "
          f"{max(abs(a - b) for k in ('loss', 'val_loss') for a, b in zip(two['history'][k], one['history'][k])):.2g}")


def child_of(launcher: subprocess.Popen, rank: int):
    import psutil

    for child in psutil.Process(launcher.pid).children():
        if child.environ().get(processes.RANK_VAR) == str(rank):
            return child
    raise AssertionError(f"no process {rank}")


@pytest.mark.slow
def test_a_killed_worker_ends_every_process_and_the_run_resumes(tmp_path):
    import psutil

    run_dir = tmp_path / "run"
    command = launch_command("backend=jax", "trainer.distribution=data_parallel", "model=mlp",
                             "data.max_train_examples=1024", "trainer.batch_size=64", "trainer.epochs=12",
                             "trainer.verbose=0", f"hydra.run.dir={run_dir}")
    launcher = subprocess.Popen(command, cwd=tmp_path, env=project_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    history = run_dir / "history.csv"
    while not (history.exists() and len(history.read_text().splitlines()) >= 2):  # an epoch done
        assert launcher.poll() is None, launcher.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.1)
    workers = [child_of(launcher, rank) for rank in (0, 1)]
    killed = time.monotonic()
    workers[1].send_signal(signal.SIGKILL)
    out, err = launcher.communicate(timeout=FAULT_BOUND_S + 30)
    gone_after = time.monotonic() - killed
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert gone_after < FAULT_BOUND_S, gone_after
    assert launcher.returncode != 0
    assert "launch: process 1 of 2 was killed by SIGKILL" in err, err[-2000:]
    # Process 0 saw its peer go and said so in one line, then recorded the run as failed.
    assert "[p0] error: process 0 of 2: " in out, out[-3000:]
    failed = read_metrics(run_dir)
    assert failed["status"] == "failed" and "Gloo" in failed["error"], failed
    print(f"killed process 1 after epoch {len(history.read_text().splitlines()) - 1}: "
          f"every process gone {gone_after:.1f} s later")
    started = time.monotonic()

    again = subprocess.run(command, cwd=tmp_path, env=project_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    done = read_metrics(run_dir)
    assert done["status"] == "ok" and done["resumed"] is True and done["epochs_completed"] == 12
    assert done["processes"] == 2 and done["weights_match"] is True
    assert "resuming the interrupted run" in again.stdout
    print(f"resumed and finished in {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_srun_starts_two_processes_that_train_one_model(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(project_env(), SLURM_CONF=str(slurm_cluster.conf))
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_JOB", "SLURM_STEP", "SLURM_PROCID"))}
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    started = time.monotonic()
    done = subprocess.run(["srun", "-n", "2", "--cpus-per-task=1", "--time=5", sys.executable, str(ROOT / "train.py"),
                           *JOB, f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "ok" and metrics["processes"] == 2 and metrics["weights_match"] is True
    assert "(slurm): coordinator" in done.stdout + done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # process 1 wrote nothing here
    print(f"srun -n 2: {time.monotonic() - started:.1f} s, val_accuracy {metrics['val_accuracy']:.4f}")
