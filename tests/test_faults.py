"""Storage faults and a second writer: a run loses nothing, says what happened in one line, and resumes exactly.

The runs hold after epoch 1 (recipes/training/hold.py) so that each fault comes at a known point on any
machine. The full disk and the read-only directory are small tmpfs mounts (the tests run as root); where
mounting is not allowed they are skipped, with the reason.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipes.runtime.run_files import BACKUP_DIR, METRICS_FILE
from recipes.training import hold
from tests.conftest import ROOT, project_env

RUN = ["model=mlp", "data.max_train_examples=500", "trainer.epochs=3", "trainer.verbose=0"]
COMPARED = ("val_accuracy", "val_exact_ce", "test_accuracy", "test_loss", "test_exact_ce", "epochs_completed",
            "history")


def train(run_dir: Path, *extra, held: bool = False, wait: bool = True):
    """`python train.py RUN hydra.run.dir=run_dir`; `held`: it holds after epoch 1 until told to go on."""
    env = {**project_env(), **({hold.EPOCH_VAR: "1", hold.SECONDS_VAR: "300"} if held else {})}
    command = [sys.executable, str(ROOT / "train.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"]
    if wait:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_held(process, run_dir: Path) -> Path:
    notice = run_dir / BACKUP_DIR / hold.NOTICE
    deadline = time.monotonic() + 240
    while not notice.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never held after epoch 1"
        time.sleep(0.1)
    return notice


def contents(run_dir: Path) -> dict:
    """The bytes of every file of the run directory, but the lock and Hydra's log."""
    return {str(p.relative_to(run_dir)): p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name not in (".lock", "train.log", hold.NOTICE)}


def digests(run_dir: Path) -> dict:
    return {name: hashlib.sha256(data).hexdigest() for name, data in contents(run_dir).items()}


def figures(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    return {key: metrics[key] for key in COMPARED}


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs directory mounted with `options`; unmounted after the test."""
    mounted = []

    def _mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
        mounted.append(target)
        return target

    yield _mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.slow(seconds=40)
def test_a_second_process_stops_at_once_and_a_killed_runs_lock_does_not_block_the_resume(tmp_path):
    run_dir = tmp_path / "run"
    first = train(run_dir, held=True, wait=False)
    try:
        wait_until_held(first, run_dir)
        before = digests(run_dir)
        second = train(run_dir)
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.strip().splitlines() == [
            f"error: hydra.run.dir={run_dir} is in use by process {first.pid}, which holds {run_dir / '.lock'}; "
            "wait for it to end (a killed run's lock goes with it), or choose another hydra.run.dir"]
        assert digests(run_dir) == before  # not even Hydra's files of the live run were written again
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = train(run_dir)  # the killed run's lock went with it
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert (metrics["status"], metrics["resumed"], metrics["epochs_completed"]) == ("ok", True, 3)


@pytest.mark.slow(seconds=15)
def test_a_read_only_runs_directory_is_one_line_before_keras_starts(mount, tmp_path):
    read_only = mount("ro,size=1m")
    done = train(read_only / "run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={read_only / 'run'}: cannot write in {read_only} (Read-only file system); "
        "pass a writable hydra.run.dir"]
    # The default run directory (runs/ under the working directory) is checked the same way.
    env = project_env()
    default = subprocess.run([sys.executable, str(ROOT / "train.py"), *RUN], cwd=read_only, env=env,
                             capture_output=True, text=True, timeout=120)
    assert default.returncode == 2 and default.stderr.strip().splitlines() == [
        f"error: hydra.run.dir (default runs/...): cannot write in {read_only} (Read-only file system); "
        "pass a writable hydra.run.dir"]


@pytest.mark.slow(seconds=40)
def test_a_full_disk_is_one_line_damages_nothing_and_the_run_resumes_exactly_once_there_is_room(mount, tmp_path):
    disk = mount("size=8m")
    run_dir = disk / "run"
    running = train(run_dir, held=True, wait=False)
    try:
        notice = wait_until_held(running, run_dir)
        before = contents(run_dir)  # epoch 1: its backup, history row and event files
        ballast = disk / "ballast"
        with ballast.open("wb") as handle:  # fill the disk to its last byte
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        notice.unlink()  # go on: epoch 2 finds no room
        _, stderr = running.communicate(timeout=240)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 2, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: no space left on the device of {run_dir} (0.0 MiB free) "
                                                     f"writing {run_dir}/"), errors
    assert errors[0].endswith(f"free some space and run the same command (hydra.run.dir={run_dir}) to resume")
    # Every file epoch 1 left is whole: the same, or (history.csv, the event files) the same with what epoch 2
    # managed to add after it; the backup of epoch 1 is untouched.
    after = contents(run_dir)
    assert all(after[name].startswith(data) for name, data in before.items()), [
        name for name, data in before.items() if not after[name].startswith(data)]
    assert {name: data for name, data in after.items() if name.startswith(BACKUP_DIR + "/epoch-000001")} == {
        name: data for name, data in before.items() if name.startswith(BACKUP_DIR + "/epoch-000001")}

    ballast.unlink()
    resumed = train(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert figures(run_dir) == figures(tmp_path / "straight")
    assert json.loads((run_dir / METRICS_FILE).read_text())["resumed"] is True
