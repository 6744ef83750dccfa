"""Faults injected into real runs, each row of docs/reliability.md's fault table (scripts/faults.py, which these
tests share): nothing is lost, the run says what happened in one line, and the same command resumes it with the
figures of the run trained straight through. The full disk and the read-only directory need root to mount a
tmpfs; they are skipped, with the reason, where that is not allowed, and fail on CI, which runs as root.
"""
import json
import signal
from pathlib import Path

import pytest

from scripts import faults
from tests.conftest import jax_compile_cache, once_per_run, unavailable

SLOW = pytest.mark.slow(seconds=30)


@pytest.fixture(scope="session")
def straight(tmp_path_factory) -> dict:
    """The figures of the run trained straight through, which every resumed run must end with: trained once
    for the whole test run, by whichever worker needs it first."""
    return once_per_run(tmp_path_factory, "faults_straight", lambda work: faults.straight_figures(work)[0])[1]


def inject(name: str, tmp_path, straight) -> dict:
    try:
        return faults.FAULTS[name](tmp_path, straight)
    except faults.Unavailable as why:
        unavailable(str(why))


def assert_resumed_after(run_dir: Path, epoch: int, step: int = 0) -> None:
    """The same command took the run up from its backup after `epoch` epochs and `step` steps of the next (as
    its log says, once), and trained only what came after: a resume that ignored the backup and trained from
    the start would end with the straight run's figures too, so they cannot tell."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = [line.split("] - ", 1)[-1] for line in (run_dir / "train.log").read_text().splitlines()]
    at, then = (f" and step {step} of the next", f" step {step + 1}") if step else ("", "")
    assert [line for line in log if line.startswith("resuming the interrupted run in ")] == [
        f"resuming the interrupted run in {run_dir} after epoch {epoch}{at}"]
    # The backup put back (the weights and the rest of that point) as the epoch it goes on with began.
    restored = [line for line in log if line.startswith("resumed at epoch ")]
    assert len(restored) == 1 and restored[0].startswith(f"resumed at epoch {epoch + 1}{then} with the weights,"), \
        restored
    assert metrics["resumed"] is True
    # One entry per epoch this attempt trained: those after the backup's epoch (its rest of an epoch too).
    assert len(metrics["epoch_train_seconds"]) == metrics["epochs_completed"] - epoch


MID_EPOCH = [(f"SIGTERM in epoch 2, after step {faults.STEP} (preemption)", "SIGTERM"),
             (f"SIGTERM in epoch 2, after step {faults.STEP}, on JAX", "SIGTERM"),
             (f"SIGUSR1 in epoch 2, after step {faults.STEP}, on PyTorch (trainer.preemption_signals)", "SIGUSR1")]
GRACE = f"SIGTERM in epoch 2, its step outlasting trainer.preemption_grace_s={faults.GRACE_S}"


@SLOW
@pytest.mark.parametrize("name, signal_name", MID_EPOCH, ids=["tensorflow", "jax", "torch"])
def test_a_preemption_in_an_epoch_saves_its_step_and_the_same_command_resumes_there_exactly(
        tmp_path, straight, compose, name, signal_name, monkeypatch):
    # On JAX its straight run, the stopped one and the resume, one after another, compile once.
    for variable, value in jax_compile_cache(tmp_path / "jax_cache").items():
        monkeypatch.setenv(variable, value)
    row = inject(name, tmp_path, straight)
    run_dir = tmp_path / "run"
    assert row["exit"] == 128 + getattr(signal, signal_name)  # 143 for SIGTERM, as a process it had killed
    point = f"epoch 2 step {faults.STEP} of 4"
    assert row["said"] == [f"preempted ({signal_name}) at {point}: {run_dir} keeps a backup of that point; run the "
                           f"same command (with hydra.run.dir={run_dir}) to resume"]
    assert (row["status"], row["stopped_at"]) == ("preempted", point)
    # The seconds from the signal to the record, the backup written: within the grace time (the run's default),
    # past which the record would have been the grace timer's.
    grace_s = compose().trainer.preemption_grace_s
    assert 0 < row["stop_s"] < grace_s, (row["stop_s"], grace_s)
    assert row["backups"] == ["epoch-000001", f"epoch-000001-step-{faults.STEP:06d}"]
    # Bit for bit the run never stopped (on its backend): every figure, every epoch of the history.
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_completed"] == 3
    assert_resumed_after(run_dir, epoch=1, step=faults.STEP)
    assert not (run_dir / "backup").exists()  # the record is written: nothing left to resume


@SLOW
def test_a_step_that_outlasts_the_grace_time_is_recorded_and_resumed_from_the_last_backup(tmp_path, straight):
    row = inject(GRACE, tmp_path, straight)
    run_dir = tmp_path / "run"
    assert (row["exit"], row["status"]) == (143, "preempted")
    assert row["said"] == [f"preempted (SIGTERM): the step under way and its backup did not finish within "
                           f"trainer.preemption_grace_s={faults.GRACE_S}; {run_dir} keeps its last saved epoch; "
                           f"run the same command (with hydra.run.dir={run_dir}) to resume"]
    assert row["ended_after_s"] >= faults.GRACE_S  # not before the grace time: the step had it all
    assert row["backups"] == ["epoch-000001"]  # the step's backup never began
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)
    assert_resumed_after(run_dir, epoch=1)


@SLOW
def test_ctrl_c_is_recorded_and_resumed(tmp_path, straight):
    row = inject("Ctrl-C after epoch 1", tmp_path, straight)
    run_dir = tmp_path / "run"
    assert (row["exit"], row["status"]) == (130, "interrupted")
    assert row["said"] == [f"interrupted: {run_dir} keeps its last completed epoch; run the same command "
                           f"(with hydra.run.dir={run_dir}) to resume"]
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)
    assert_resumed_after(run_dir, epoch=1)


@SLOW
def test_a_damaged_newest_backup_is_named_and_the_resume_takes_the_one_before_it_exactly(tmp_path, straight):
    row = inject("newest backup damaged (SIGKILL after epoch 2, one byte flipped)", tmp_path, straight)
    backup = tmp_path / "run" / "backup"
    [warning] = row["resume_said"]
    assert f"backup {backup / 'epoch-000002'} is damaged (state.npz does not read back" in warning
    assert warning.endswith(f"resuming from {backup / 'epoch-000001'}, the one before it")
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)
    assert_resumed_after(tmp_path / "run", epoch=1)


@SLOW
def test_a_full_disk_is_one_line_damages_nothing_and_the_run_resumes_exactly_once_there_is_room(tmp_path, straight):
    row = inject("disk full in epoch 2", tmp_path, straight)
    assert row["exit"] == 2 and len(row["said"]) == 1, row["said"]
    [line] = row["said"]
    assert line.startswith("error: no space left on the device of ") and " (0.0 MiB free) writing /" in line
    assert line.endswith("to resume") and "free some space and run the same command (hydra.run.dir=" in line
    # Every file of epoch 1 is whole (the event files and history.csv begin as they did); its backup untouched.
    assert row["intact"] and row["backup_kept"]
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)


@SLOW
def test_a_second_process_stops_at_once_and_a_killed_runs_lock_does_not_block_the_resume(tmp_path, straight):
    """Also the SIGKILL row (`faults.kill` injects the same for the table): the live run, which the second
    process left as it was, is then SIGKILLed after epoch 1."""
    row = inject("a second process on a live run's directory", tmp_path, straight)
    run_dir = tmp_path / "run"
    assert row["exit"] == 2
    assert row["said"] == [
        f"error: hydra.run.dir={run_dir} is in use by process {row['holder']}, which holds {run_dir / '.lock'}; "
        "wait for it to end (a killed run's lock goes with it), or choose another hydra.run.dir"]
    assert row["intact"]  # not even Hydra's files of the live run were written again
    # SIGKILL: no handler can run, so nothing is said or recorded, and only the epoch under way is lost.
    assert (row["killed_exit"], row["killed_said"], row["killed_status"]) == (-signal.SIGKILL, [], None)
    assert (row["resume_exit"], row["resumed_equal"]) == (0, True)
    assert_resumed_after(run_dir, epoch=1)


@pytest.mark.slow(seconds=10)
def test_a_read_only_runs_directory_is_one_line_before_keras_starts(tmp_path, straight):
    row = inject("read-only runs directory", tmp_path, straight)
    assert row["exit"] == 2 and not row["written"]
    assert row["said"] == [f"error: hydra.run.dir={row['dir']}/run: cannot write in {row['dir']} (Read-only file "
                           "system); pass a writable hydra.run.dir"]
    assert row["default_exit"] == 2 and row["default_said"] == [
        f"error: hydra.run.dir (default runs/...): cannot write in {row['dir']} (Read-only file system); "
        "pass a writable hydra.run.dir"]


def test_every_fault_has_a_test_and_the_table_in_the_docs_is_the_generators():
    """Each fault of the table is injected by a test above (SIGKILL after epoch 1 in the second process's run,
    which ends with it), the group's preemption by tests/test_multiprocess.py (with its straight two-process
    run); docs/reliability.md's table renders docs/faults.json, whose every resumed run ended as the straight
    one."""
    tested = {"SIGKILL after epoch 1", *(name for name, _ in MID_EPOCH), GRACE, faults.GROUP, "Ctrl-C after epoch 1",
              "newest backup damaged (SIGKILL after epoch 2, one byte flipped)", "disk full in epoch 2",
              "a second process on a live run's directory", "read-only runs directory"}
    assert set(faults.FAULTS) == tested
    data = json.loads(faults.DATA.read_text())
    assert list(data["rows"]) == list(faults.FAULTS)
    assert faults.render(data) in faults.PAGE.read_text()
    assert all(row.get("resumed_equal", True) for row in data["rows"].values() if "unavailable" not in row)


def test_a_resume_whose_every_backup_is_damaged_stops_with_one_line_and_never_starts_over(tmp_path):
    from keras_loss_recipes.runtime.errors import UserError
    from keras_loss_recipes.training.backup import latest

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
