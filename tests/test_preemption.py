"""Preemption's parts, in this process: the signal handler (keras_loss_recipes/runtime/preemption.py), the step counter that
lets a resumed run pass over the steps it had done (keras_loss_recipes/training/preemption_stop.py), and what a sweep says
of a resumed job's earlier attempts. tests/test_faults.py stops and resumes real runs on every backend."""
import json
import os
import signal
from types import SimpleNamespace

import pytest

from keras_loss_recipes.reporting.results import earlier_attempts
from keras_loss_recipes.runtime import preemption


@pytest.fixture(autouse=True)
def no_signal_left_behind():
    """The module keeps the signal a test sent after its `taken_as_preemption` ends (a process stops on it).
    The next test in this worker, an in-process training run among them, must not find it: its first epoch's
    end would raise Preempted. Cleared as a sweep's next job clears it."""
    yield
    with preemption.taken_as_preemption([]):
        pass


def test_outside_training_a_preemption_signal_stops_the_run_at_once():
    before = signal.getsignal(signal.SIGUSR2)
    with preemption.taken_as_preemption(["SIGUSR2"]):
        with pytest.raises(preemption.Preempted) as stopped:
            os.kill(os.getpid(), signal.SIGUSR2)  # its handler runs before the next line
    assert (stopped.value.name, stopped.value.exit_code, stopped.value.kept) == ("SIGUSR2", 128 + signal.SIGUSR2, None)
    assert signal.getsignal(signal.SIGUSR2) == before  # the handler that was there is back


def test_in_training_it_asks_the_model_to_stop_after_its_step_and_a_second_signal_changes_nothing():
    model = SimpleNamespace(stop_training=False)
    with preemption.taken_as_preemption(["SIGUSR2"]):
        with preemption.stops_at_steps(model):
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGUSR2)
        assert model.stop_training is True
        assert preemption.requested() == signal.SIGUSR2
        assert preemption.finishing() is True  # the main thread records the end (no grace timer to race)
    with preemption.taken_as_preemption(["SIGUSR2"]):
        assert preemption.requested() is None  # a sweep's next job starts afresh


class _Model:
    steps_per_execution = 2

    def __init__(self):
        self.trained = []
        self.train_function = lambda iterator: self.trained.append([next(iterator) for _ in range(2)]) or {"x": 1}


def test_a_resumed_epoch_passes_over_the_batches_of_its_steps_done_then_trains_on_the_next():
    from keras_loss_recipes.training.preemption_stop import StepCounter

    model, counter, order = _Model(), StepCounter(), []
    counter.wrap(model)
    counter.skip_first(4, then=lambda: order.append("then"))
    batches = iter(range(10))
    logs = [model.train_function(batches) for _ in range(4)]
    assert order == ["then"]  # once, before the first call
    assert logs == [{}, {}, {"x": 1}, {"x": 1}]  # the steps passed over report nothing of their own
    assert model.trained == [[4, 5], [6, 7]]  # step 5 trains on the 5th batch, as in the run never stopped
    assert counter.steps(of=9) == 8 and counter.steps(of=7) == 7
    counter.unwrap(model)
    assert not isinstance(model.train_function, StepCounter)
    with pytest.raises(ValueError, match="step 3 cannot be resumed with 2 steps per execution"):
        counter.skip_first(3)


def test_a_sweep_names_what_stopped_a_resumed_job_before(tmp_path):
    (tmp_path / "metrics.preempted.json").write_text(json.dumps(
        {"status": "preempted", "signal": "SIGTERM", "stopped_at": "epoch 3 step 2 of 5"}))
    os.utime(tmp_path / "metrics.preempted.json", (1, 1))
    (tmp_path / "metrics.failed.json").write_text(json.dumps({"status": "failed"}))
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok"}))
    assert earlier_attempts(tmp_path) == ["preempted (SIGTERM) at epoch 3 step 2 of 5", "failed"]
    # SLURM's end of a job that left no result: its first clause.
    (tmp_path / "metrics.failed.json").write_text(json.dumps(
        {"status": "failed", "error": "SlurmJobEnded: SLURM job 3_1 ended FAILED without a result: ***"}))
    assert earlier_attempts(tmp_path)[1] == "failed (SLURM job 3_1 ended FAILED)"


def test_an_attempt_that_left_a_backup_but_no_record_is_noted_as_killed(tmp_path):
    from keras_loss_recipes.lifecycle.directory import prepare
    from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HISTORY_FILE

    (tmp_path / BACKUP_DIR).mkdir()
    (tmp_path / HISTORY_FILE).write_text("epoch,loss\n0,1.0\n1,0.5\n")
    assert prepare(tmp_path) == "resume"
    assert earlier_attempts(tmp_path) == ["killed"]
    assert json.loads((tmp_path / "metrics.killed.json").read_text())["epochs_completed"] == 2
    assert prepare(tmp_path) == "resume"  # killed again: a second note beside the first
    assert earlier_attempts(tmp_path) == ["killed", "killed"] and (tmp_path / "metrics.killed.2.json").exists()


def test_an_attempt_with_no_epoch_to_resume_from_is_moved_aside_and_still_counted(tmp_path):
    from keras_loss_recipes.lifecycle.directory import prepare

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"status": "preempted", "signal": "SIGTERM"}))
    (run_dir / "train").mkdir()  # what the attempt wrote before its first epoch ended
    assert prepare(run_dir) == "fresh"
    aside = [p for p in tmp_path.iterdir() if p != run_dir]
    assert len(aside) == 1 and (aside[0] / "train").is_dir() and (aside[0] / "metrics.preempted.json").exists()
    assert earlier_attempts(run_dir) == ["preempted (SIGTERM)"] and not (run_dir / "train").exists()


def test_the_last_epochs_stability_figures_go_into_the_backup_and_come_back(tmp_path):
    """A run preempted as its last epoch ended resumes with no epoch to train: its record still names the last
    epoch's stability figures (found by scripts/chaos.py: `stability: {}` in the resumed run)."""
    from keras_loss_recipes.training.callbacks import StabilityLogger

    logger = StabilityLogger(tmp_path / "train")
    logger.epochs = [{"stability/logit_gap": 3.0}, {"stability/logit_gap": 13.5, "stability/loss": 0.25}]
    state = logger.backup_state()
    resumed = StabilityLogger(tmp_path / "train")
    resumed.restore_state({**state, "best_value": 0.9, "best_0": [1.0]})  # beside the other extras' arrays
    assert resumed.epochs == [{"stability/logit_gap": 13.5, "stability/loss": 0.25}]
    empty = StabilityLogger(tmp_path / "train")
    empty.restore_state({})
    assert empty.epochs == [] and StabilityLogger(tmp_path).backup_state() == {}
