"""The training loop at GPU grade: no step waits for the host, and the NaN/inf policies decide inside the step.

Each backend in a child process of its own (tests/loop_driver.py), TensorFlow included.
"""
import pytest

from tests.conftest import each_backend
from tests.test_backends import driver_result

BACKENDS = each_backend(seconds=30)
# Where the recipes' own code may read a value off the device: once per epoch, or at the fit's start or end.
EPOCH_LEVEL = {"on_train_begin", "on_epoch_begin", "on_test_begin", "on_epoch_end", "on_train_end"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_are_queued_and_the_device_is_read_only_at_epoch_ends(backend, tmp_path):
    out = driver_result("loop_driver", tmp_path, backend)

    default = out["default"]
    assert (default["status"], default["epochs"]) == ("ok", 2)
    # A default run: no callback with a batch hook, so Keras queues the steps (it never does on TensorFlow,
    # whose fit is not thread-safe there, and runs its steps inside a compiled function instead).
    assert default["batch_hooks"] == []
    assert default["async_train"] is (backend != "tensorflow")
    # Every read of a device value by the recipes happened at an epoch's end (or the fit's start or end),
    # none at a step: 10 steps an epoch, and not one read in a batch hook.
    assert default["reads"] and set(default["reads"]) <= EPOCH_LEVEL, default["reads"]
    # A progress bar and step figures are asked for: then, and only then, batch hooks.
    assert out["asked"]["batch_hooks"] == ["ProgressBar", "StepFigures"]

    # A NaN in the first of three batches: the step decides, the guard reads it at the epoch's end.
    policies = out["policies"]
    for policy in ("stop", "skip", "continue"):
        assert policies[policy]["first_nonfinite"] == {"epoch": 1, "step": 1}, policy
    # stop: the bad step and every later one leave the weights as they were; one step counted; training stops.
    assert policies["stop"] == {**policies["stop"], "nonfinite_steps": 1, "weights_unchanged": True, "stopped": True}
    # skip: the bad step is left out, the two finite ones are applied.
    assert policies["skip"] == {**policies["skip"], "nonfinite_steps": 1, "weights_unchanged": False,
                                "weights_finite": True, "stopped": False}
    # continue: the NaN update goes in. (Whether the later steps go NaN too depends on the backend's relu of a
    # NaN: TensorFlow's oneDNN kernel gives 0, JAX's and PyTorch's NaN.)
    assert policies["continue"]["nonfinite_steps"] >= 1
    assert policies["continue"] == {**policies["continue"], "weights_finite": False, "stopped": False}
    # Two steps per execution: the bad second step is still found and counted as such, the first one applied.
    executions = out["executions"]
    assert (executions["first_nonfinite"], executions["nonfinite_steps"], executions["weights_unchanged"],
            executions["weights_finite"], executions["stopped"]) == ({"epoch": 1, "step": 2}, 1, False, True, True)
    # What the backup and best.keras keep is a copy, not a view of a buffer the next steps overwrite.
    assert out["copies"] == {"host_copy": True, "best_weights": True}
    # Validation's exact cross entropy comes from the logits behind the softmax head: past what any probability
    # in float32 can give (Keras's clip caps it at 16.1), and equal to the float64 reference. The loss and
    # accuracy are plain Keras's, to the bit.
    evaluation = out["evaluation"]
    assert evaluation["exact_ce"] > 100 and evaluation["exact_ce"] == pytest.approx(evaluation["reference"], rel=1e-6)
    assert (evaluation["loss"], evaluation["accuracy"]) == (evaluation["plain_loss"], evaluation["plain_accuracy"])


def test_best_keras_is_written_when_the_best_changes_not_again_without_it(tmp_path):
    import keras

    from keras_loss_recipes.training.callbacks import SaveModels

    saver = SaveModels(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), tmp_path, write_every_s=0.0)
    saver.on_epoch_end(0, {"val_accuracy": 0.5})
    best = tmp_path / "best.keras"
    assert best.exists()
    best.unlink()
    saver.on_epoch_end(1, {"val_accuracy": 0.5})  # as good, not better: best.keras stays the first such epoch's
    saver.on_epoch_end(1, {"val_accuracy": 0.4})  # no better: nothing to write
    assert not best.exists()
    saver.on_train_end()
    assert (tmp_path / "last.keras").exists() and not best.exists()
    saver.on_epoch_end(2, {"val_accuracy": 0.6})
    assert best.exists()
