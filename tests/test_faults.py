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


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The figures of the run trained straight through, which every resumed run must end with."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    done = train(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return figures(run_dir)


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


@pytest.mark.slow(seconds=30)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1"])
def test_a_preemption_signal_is_recorded_and_the_same_command_resumes_exactly(tmp_path, straight, signal_name):
    run_dir = tmp_path / "run"
    taken = [] if signal_name == "SIGTERM" else ["trainer.preemption_signals=[SIGTERM,SIGUSR1]"]  # SLURM's --signal
    running = train(run_dir, *taken, held=True, wait=False)
    try:
        wait_until_held(running, run_dir)
        running.send_signal(getattr(signal, signal_name))
        _, stderr = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 128 + getattr(signal, signal_name)  # 143 for SIGTERM, as a killed process
    assert [line for line in stderr.splitlines() if "preempted" in line or "Traceback" in line] == [
        f"preempted ({signal_name}): {run_dir} keeps its last saved epoch; run the same command "
        f"(with hydra.run.dir={run_dir}) to resume"]
    recorded = json.loads((run_dir / METRICS_FILE).read_text())
    assert (recorded["status"], recorded["signal"], recorded["epochs_completed"]) == ("preempted", signal_name, 1)
    resumed = train(run_dir, *taken)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert figures(run_dir) == straight and json.loads((run_dir / METRICS_FILE).read_text())["resumed"] is True


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
def test_a_full_disk_is_one_line_damages_nothing_and_the_run_resumes_exactly_once_there_is_room(mount, straight):
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
    assert figures(run_dir) == straight
    assert json.loads((run_dir / METRICS_FILE).read_text())["resumed"] is True


@pytest.mark.slow(seconds=40)
def test_a_damaged_newest_backup_is_named_and_the_resume_takes_the_one_before_it_exactly(tmp_path, straight):
    run_dir = tmp_path / "run"
    env = {**project_env(), hold.EPOCH_VAR: "2", hold.SECONDS_VAR: "300"}
    command = [sys.executable, str(ROOT / "train.py"), *RUN, f"hydra.run.dir={run_dir}"]
    running = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        notice = run_dir / BACKUP_DIR / hold.NOTICE
        deadline = time.monotonic() + 240
        while not notice.exists():
            assert running.poll() is None and time.monotonic() < deadline, running.communicate()[1][-3000:]
            time.sleep(0.1)
    finally:
        running.kill()
        running.wait()
    newest, before = run_dir / BACKUP_DIR / "epoch-000002", run_dir / BACKUP_DIR / "epoch-000001"
    state = newest / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the size unchanged: only the archive's CRC-32 tells
    state.write_bytes(bytes(data))

    resumed = train(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    warnings = [line for line in resumed.stdout.splitlines() + resumed.stderr.splitlines() if "is damaged" in line]
    assert len(warnings) == 1 and f"backup {newest} is damaged (state.npz does not read back" in warnings[0]
    assert warnings[0].endswith(f"resuming from {before}, the one before it")
    assert figures(run_dir) == straight


def test_a_resume_whose_every_backup_is_damaged_stops_with_one_line_and_never_starts_over(tmp_path):
    from recipes.runtime.errors import UserError
    from recipes.training.backup import latest

    for epoch in (1, 2):
        folder = tmp_path / f"epoch-00000{epoch}"
        folder.mkdir()
        (folder / "state.npz").write_bytes(b"torn")
    (tmp_path / "epoch-000002" / "manifest.json").write_text(json.dumps({"epoch": 2, "sizes": {"state.npz": 9}}))
    with pytest.raises(UserError) as err:
        latest(tmp_path)
    assert str(err.value) == (f"no whole backup in {tmp_path} to resume from (epoch-000002: state.npz is 4 bytes, its "
                              "manifest says 9; epoch-000001: no readable manifest.json: its save was cut short); "
                              "pass trainer.overwrite=true to move the run aside and start over")
    assert latest(tmp_path / "none") is None  # no backup at all: a fresh start
