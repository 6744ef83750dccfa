"""A run's life (keras_loss_recipes/lifecycle/run.py), without training: the lock, fresh or resumed, the records,
preemption signals. The fault tests (test_faults.py, test_exact_resume.py) go through it end to end."""
import json
import os
import signal

import pytest

from keras_loss_recipes.lifecycle.directory import RunAlreadyFinished
from keras_loss_recipes.lifecycle.run import Run
from keras_loss_recipes.runtime import run_lock
from keras_loss_recipes.runtime.preemption import Preempted
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, LOCK_FILE, METRICS_FILE


@pytest.fixture(scope="module")
def cfg():
    from keras_loss_recipes.config.compose import compose_train

    return compose_train(["trainer.preemption_signals=[SIGUSR1]"])


def test_the_lock_is_taken_by_prepare_and_released_however_the_recipe_ends(cfg, tmp_path):
    run = Run(cfg, tmp_path / "run")
    with pytest.raises(RuntimeError, match="the recipe broke"):
        with run.opened():
            run.prepare()
            assert (run.dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
            assert run.dir.resolve() in run_lock._held
            raise RuntimeError("the recipe broke")
    assert run.dir.resolve() not in run_lock._held
    run_lock.check_free(run.dir)  # nobody holds it


def test_a_run_starts_fresh_resumes_a_stopped_one_and_refuses_a_finished_one(cfg, tmp_path):
    fresh = Run(cfg, tmp_path / "run")
    with fresh.opened():
        fresh.prepare()
        fresh.write_metrics({"status": "failed", "error": "boom"})
        (fresh.dir / BACKUP_DIR).mkdir()
    assert fresh.resuming is False
    again = Run(cfg, tmp_path / "run")
    with again.opened():
        again.prepare()
    assert again.resuming is True  # a failed run with a backup goes on from it
    assert json.loads((again.dir / "metrics.failed.json").read_text())["error"] == "boom"
    assert not (again.dir / METRICS_FILE).exists()
    again.finish({"status": "ok"})
    assert json.loads((again.dir / METRICS_FILE).read_text())["wall_s"] >= 0
    with pytest.raises(RunAlreadyFinished) as finished, Run(cfg, tmp_path / "run").opened() as third:
        third.prepare()
    assert finished.value.metrics["status"] == "ok"


def test_a_failure_is_recorded_in_the_run_directory(cfg, tmp_path):
    run = Run(cfg, tmp_path / "run")
    run.record_failure(ValueError("bad values"))
    record = json.loads((run.dir / METRICS_FILE).read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: bad values"
    assert record["loss"] == cfg.loss.name and record["config"]["seed"] == cfg.seed


def test_a_preemption_signal_outside_training_stops_the_run_at_once_and_only_while_open(cfg, tmp_path):
    before = signal.getsignal(signal.SIGUSR1)
    run = Run(cfg, tmp_path / "run")
    with pytest.raises(Preempted) as stopped, run.opened():
        run.prepare()
        os.kill(os.getpid(), signal.SIGUSR1)
        pytest.fail("the signal did not stop the run")
    assert stopped.value.name == "SIGUSR1" and stopped.value.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before  # the handler that was there is back
    run.record_preemption(stopped.value)
    assert json.loads((run.dir / METRICS_FILE).read_text())["status"] == "preempted"


def test_a_failure_record_keeps_the_config_typed_as_the_jobs_are(cfg, tmp_path):
    """A launcher records a job it lost with the config as composed (`25` for a float key): typed, it groups
    with its sweep's other jobs, which recorded `25.0`; a config that does not type is recorded as given."""
    from omegaconf import OmegaConf

    composed = OmegaConf.create(OmegaConf.to_container(cfg))
    composed.trainer.preemption_grace_s = 25
    Run(composed, tmp_path / "lost").record_failure(RuntimeError("cancelled"))
    recorded = json.loads((tmp_path / "lost" / METRICS_FILE).read_text())["config"]["trainer"]
    assert recorded["preemption_grace_s"] == 25.0 and isinstance(recorded["preemption_grace_s"], float)
    composed.trainer.epochs = "abc"
    Run(composed, tmp_path / "mistyped").record_failure(ValueError("bad type"))
    assert json.loads((tmp_path / "mistyped" / METRICS_FILE).read_text())["config"]["trainer"]["epochs"] == "abc"
