"""The test hook that holds a run after an epoch (tests/hold.py): off unless asked, and exact."""
import time

import pytest

from keras_loss_recipes.runtime.errors import UserError
from tests import hold


@pytest.fixture
def hold_env(monkeypatch):
    for name in (hold.EPOCH_VAR, hold.PROCESS_VAR, hold.SECONDS_VAR, hold.STEP_VAR, hold.THROUGH_VAR):
        monkeypatch.delenv(name, raising=False)
    return lambda **values: [monkeypatch.setenv(name, value) for name, value in values.items()]


def test_no_hold_unless_the_environment_asks_and_epochs_remain(hold_env, tmp_path):
    assert hold.hold_from_environment(5, tmp_path) is None
    hold_env(**{hold.EPOCH_VAR: "2"})
    assert hold.hold_from_environment(2, tmp_path) is None  # nothing would follow the hold
    assert hold.hold_from_environment(3, tmp_path) is not None
    hold_env(**{hold.PROCESS_VAR: "1"})
    assert hold.hold_from_environment(3, tmp_path, rank=0) is None
    assert hold.hold_from_environment(3, tmp_path, rank=1) is not None


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_hold_epoch_is_one_clear_error(hold_env, tmp_path, value):
    hold_env(**{hold.EPOCH_VAR: value})
    with pytest.raises(UserError, match=f"{hold.EPOCH_VAR}={value}: must be an integer >= 1"):
        hold.hold_from_environment(5, tmp_path)


def test_the_hold_writes_its_notice_at_its_epoch_only_then_waits(hold_env, tmp_path):
    notice = tmp_path / hold.NOTICE
    hold_env(**{hold.EPOCH_VAR: "2", hold.SECONDS_VAR: "0.3"})
    at_two = hold.hold_from_environment(5, tmp_path)
    at_two.on_epoch_end(0)  # epoch 1 (0-based 0): nothing
    assert not notice.exists()
    started = time.monotonic()
    at_two.on_epoch_end(1)
    assert time.monotonic() - started >= 0.3
    assert notice.read_text() == "after epoch 2\n"


def test_a_step_hold_waits_in_the_next_epoch_after_its_step_only(hold_env, tmp_path):
    notice = tmp_path / hold.NOTICE
    hold_env(**{hold.EPOCH_VAR: "1", hold.STEP_VAR: "3", hold.SECONDS_VAR: "0.3"})
    at_step = hold.hold_from_environment(3, tmp_path)
    at_step.on_epoch_begin(0)
    at_step.on_train_batch_end(2)  # epoch 1 step 3: not yet
    at_step.on_epoch_end(0)  # nor at the epoch's end
    at_step.on_epoch_begin(1)
    at_step.on_train_batch_end(1)
    assert not notice.exists()
    started = time.monotonic()
    at_step.on_train_batch_end(2)
    assert time.monotonic() - started >= 0.3
    assert notice.read_text() == "in epoch 2 after step 3\n"


def test_the_hold_reaches_a_run_only_through_the_environment_hook(hold_env, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from keras_loss_recipes.recipes.train.callbacks import CALLBACKS_VAR, callbacks_from_environment

    run = SimpleNamespace(cfg=SimpleNamespace(trainer=SimpleNamespace(epochs=3)), dir=tmp_path, rank=0,
                          resuming=False)
    monkeypatch.delenv(CALLBACKS_VAR, raising=False)
    hold_env(**{hold.EPOCH_VAR: "1"})
    assert callbacks_from_environment(run) == []  # the hold's own variable alone adds nothing
    hold_env(**hold.asked())
    [added] = callbacks_from_environment(run)
    assert type(added).__name__ == "Hold" and added.notice == tmp_path / "backup" / hold.NOTICE
    run.resuming = True  # a requeued job keeps its environment: a resumed run never holds
    assert callbacks_from_environment(run) == []
    monkeypatch.setenv(CALLBACKS_VAR, "tests.no_such_module:make")
    with pytest.raises(UserError, match=f"^{CALLBACKS_VAR}=tests.no_such_module.make: module"):
        callbacks_from_environment(run)
