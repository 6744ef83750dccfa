"""The loss path is measured, and each formulation takes the documented one on TensorFlow."""
import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.paths import candidate_losses, classify, detect_loss_path, probe_batches

# What the registry says each formulation does on TensorFlow; measured below.
EXPECTED_ON_TENSORFLOW = {name: losses.formulation(name).expected_path("tensorflow") for name in losses.names()}
KNOWN_PATHS = {"fused_logits", "rescued_softmax", "rescued_sigmoid", "clipped_probabilities", "naive",
               "logits_as_probabilities", "double_softmax", "double_sigmoid", "unsupported"}


def test_every_expected_path_is_one_the_detector_can_name():
    for name in losses.names():
        for backend in losses.ALL_BACKENDS:
            assert losses.formulation(name).expected_path(backend) in KNOWN_PATHS, (name, backend)


@pytest.mark.parametrize("name", losses.names())
def test_measured_path_on_tensorflow(name):
    report = detect_loss_path(losses.get(name))
    assert report.path == EXPECTED_ON_TENSORFLOW[name], report.describe()
    assert (report.warning is not None) == (report.path not in losses.EXACT_PATHS)
    if report.warning:  # the fix it names is its own family's sound formulation
        fix = "bce_from_logits" if losses.formulation(name).family == "sigmoid" else "sparse_from_logits"
        assert f"loss={fix}" in report.warning, report.warning


def test_options_do_not_change_the_path():
    report = detect_loss_path(losses.get("from_logits", label_smoothing=0.2, temperature=3.0))
    assert report.path == "fused_logits"


def test_path_follows_the_measurement_not_the_name():
    # The same softmax layer, made float16, is no longer rescued by Keras.
    import keras

    head = keras.layers.Activation("softmax", dtype="float16")
    assert detect_loss_path(losses.get("softmax_ce"), head=head).path == "clipped_probabilities"


def test_classify_rules():
    cands = [candidate_losses(z, y) for z, y in probe_batches(10)]
    exact = [c["exact"] for c in cands]
    assert classify("logits", exact, cands) == "fused_logits"
    assert classify("softmax", exact, cands) == "rescued_softmax"
    assert classify("softmax", [exact[0], float("nan")], cands) == "naive"
    assert classify("softmax", [c["double_softmax"] for c in cands], cands) == "double_softmax"
    assert classify("softmax", [exact[0], 3.0], cands) == "unknown"
    assert cands[1]["clipped_probabilities"] == pytest.approx(-np.log(1e-7))
