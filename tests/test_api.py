"""The library in a plain Keras script: loss_path, StabilityMonitor, the lazy public names (in-process, on
the test process's backend; examples/plain_keras.py runs on all three in tests/test_plain_keras.py)."""
import math
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_loss_recipes
from keras_loss_recipes import LossPathError, StabilityMonitor, exact_cross_entropy, loss_path
from keras_loss_recipes.runtime.errors import UserError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(128, 6)).astype("float32")
Y = np.arange(128) % 3


def _model(head="logits", loss=None, first_dtype=None, kernel=None):
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="relu", dtype=first_dtype,
                                                    kernel_initializer=kernel or "glorot_uniform")]
    layers.append(keras.layers.Dense(3, activation=None if head == "logits" else "softmax"))
    if head == "softmax, reshaped":  # an op after the softmax: Keras clips its probabilities on every backend
        layers.append(keras.layers.Reshape((3,)))
    model = keras.Sequential(layers)
    if loss is not False:
        model.compile(optimizer="adam", loss=loss or keras.losses.SparseCategoricalCrossentropy(
            from_logits=head == "logits"))
    return model


def test_importing_the_package_imports_no_keras_backend():
    code = "import sys, keras_loss_recipes; assert 'keras' not in sys.modules; print(keras_loss_recipes.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "StabilityMonitor" in out and "loss_path" in out
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        keras_loss_recipes.nothing  # noqa: B018


def test_loss_path_of_live_models():
    assert loss_path(_model("logits")).path == "fused_logits"
    softmax = loss_path(_model("softmax", loss="sparse_categorical_crossentropy"))
    # TensorFlow reads the logits back out of the softmax; JAX and PyTorch clip the probabilities.
    rescued = keras.backend.backend() == "tensorflow"
    assert (softmax.path, softmax.lossy) == (("rescued_softmax", False) if rescued else ("clipped_probabilities", True))
    mistake = loss_path(_model("softmax, reshaped", loss="sparse_categorical_crossentropy"))
    assert mistake.lossy and mistake.path == "clipped_probabilities"
    assert "compile with `SparseCategoricalCrossentropy(from_logits=True)`" in mistake.advice()


def test_bad_models_are_one_clear_error_and_stay_as_they_were():
    with pytest.raises(UserError, match="the model is not compiled; name the loss to examine with loss="):
        loss_path(_model(loss=False))
    with pytest.raises(UserError, match="loss 'mean_squared_error': the doctor knows categorical_crossentropy"):
        loss_path(_model(loss="mean_squared_error"))
    inputs = keras.Input((6,))
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(UserError, match="has 2 outputs"):
        loss_path(two, loss="categorical_crossentropy")
    with pytest.raises(UserError, match="pass a batch as"):
        StabilityMonitor(probe=X)


def test_monitor_has_no_batch_hook():
    """Keras dispatches steps asynchronously only when no callback overrides a batch hook."""
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end",
                 "on_train_batch_begin", "on_batch_begin"):
        assert getattr(StabilityMonitor, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_monitor_writes_the_recipes_figures_per_epoch(tmp_path):
    from keras_loss_recipes.runtime.event_files import summary_writer  # noqa: F401 (the package's reader below)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    keras.utils.set_random_seed(1)
    model = _model("softmax", loss="sparse_categorical_crossentropy")
    monitor = StabilityMonitor(probe=(X[:32], Y[:32]), log_dir=tmp_path)
    model.fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[monitor])
    assert len(monitor.epochs) == 2
    last = monitor.epochs[-1]
    # The figures of the weights as fit left them, recomputed here from the logits behind the softmax.
    model.layers[-1].activation = keras.activations.linear
    logits = keras.ops.convert_to_numpy(model(X[:32])).astype(np.float64)
    assert last["stability/exact_ce"] == pytest.approx(exact_cross_entropy(logits, Y[:32]).mean(), rel=1e-5)
    assert last["stability/logit_gap"] == pytest.approx(np.mean(logits.max(-1) - logits.min(-1)), rel=1e-5)
    assert last["stability/grad_norm"] > 0 and last["stability/logit_grad_norm"] > 0
    events = EventAccumulator(str(tmp_path / "train")).Reload()
    tags = events.Tags()["tensors"] or events.Tags()["scalars"]
    assert {"stability/exact_ce", "stability/loss", "stability/loss_gap", "stability/grad_norm"} <= set(tags)


def test_strict_raises_on_a_lossy_path_before_training():
    model = _model("softmax, reshaped", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(LossPathError, match="from_logits=True"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[StabilityMonitor(strict=True)])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[StabilityMonitor()])
    assert [w for w in caught if "probabilities clipped to [1e-7, 1 - 1e-7]" in str(w.message)]


def test_monitor_stops_at_a_nonfinite_epoch_and_names_the_layer():
    """A float16 layer whose output overflows: the fit stops after epoch 1 and the diagnosis names it."""
    model = _model("logits", first_dtype="float16", kernel="ones")
    big = np.full((64, 6), 2.0e4, "float32")  # 6 x 2e4 = 1.2e5 > 65,504, float16's largest
    monitor = StabilityMonitor(probe=(big[:16], Y[:16]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(big, Y[:64], epochs=3, verbose=0, callbacks=[monitor])
    assert monitor.stopped_epoch == 1 and len(history.history["loss"]) == 1
    assert not math.isfinite(history.history["loss"][0])
    origin = monitor.origin
    assert (origin["kind"], origin["layer"], origin["dtype"], origin["overflow"]) == (
        "activation", model.layers[0].name, "float16", True)
    assert "overflowed float16" in origin["text"]


def test_the_api_page_runs():
    """docs/api.md's examples, as doctests."""
    import doctest

    from tests.conftest import ROOT

    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_loss_path_takes_a_loss_object_with_its_from_logits():
    logits = _model("logits", loss=False)
    assert loss_path(logits, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)).path == "fused_logits"
    assert loss_path(logits, loss="sparse_categorical_crossentropy").lossy  # from_logits forgotten
