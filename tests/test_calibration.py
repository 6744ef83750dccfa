"""Temperature scaling: the fitted T, the scores around it, the bad input it refuses, and the calibrated model."""
from __future__ import annotations

import numpy as np
import pytest

from keras_loss_recipes.evaluation.calibration import (
    brier_score, ece_interval, expected_calibration_error, fit_temperature, negative_log_likelihood,
    with_temperature)
from keras_loss_recipes.losses.numerics import stable_softmax
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import needs_module

CLASSES = 10


def sampled(examples: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random logits, and labels drawn from softmax(logits / temperature): T is then the true one."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(examples, CLASSES))
    cumulative = np.cumsum(stable_softmax(logits / temperature), axis=-1)
    labels = np.minimum((rng.random((examples, 1)) > cumulative).sum(axis=-1), CLASSES - 1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.7, 1.6])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(true_t):
    logits, labels = sampled(5000, true_t)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.04)
    assert negative_log_likelihood(logits, labels, fitted) < negative_log_likelihood(logits, labels)
    for t in (fitted, 0.05, 20.0):  # any T keeps each example's top class, so the accuracy
        assert np.array_equal(stable_softmax(logits / t).argmax(-1), logits.argmax(-1))


def test_fit_temperature_stops_at_the_bound_the_minimum_lies_beyond():
    logits, labels = sampled(500, 1.0)
    assert fit_temperature(logits, labels, bounds=(2.0, 5.0)) == pytest.approx(2.0, rel=1e-6)
    assert fit_temperature(logits, labels, bounds=(0.1, 0.5)) == pytest.approx(0.5, rel=1e-6)


def test_fit_temperature_agrees_with_scikit_learn():
    needs_module("sklearn", "pip install 'scikit-learn>=1.8'")
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    class GivenLogits(ClassifierMixin, BaseEstimator):
        """A classifier whose decision function is its input: X is the logits themselves."""

        def fit(self, x, y):
            self.classes_ = np.arange(CLASSES)
            return self

        def decision_function(self, x):
            return np.asarray(x)

        def predict(self, x):
            return np.asarray(x).argmax(axis=-1)

    for true_t in (0.7, 1.6):
        logits, labels = sampled(2000, true_t, seed=1)
        frozen = FrozenEstimator(GivenLogits().fit(logits, labels))
        sk = CalibratedClassifierCV(frozen, method="temperature").fit(logits, labels)
        beta = float(sk.calibrated_classifiers_[0].calibrators[0].beta_)  # scikit-learn fits 1 / T
        assert fit_temperature(logits, labels) == pytest.approx(1.0 / beta, rel=1e-3)


def test_scores_on_hand_computed_cases():
    assert negative_log_likelihood([[0.0, 0.0, 0.0]], [1]) == pytest.approx(np.log(3))
    assert negative_log_likelihood([[2.0, 0.0]], [0], temperature=2.0) == pytest.approx(np.log1p(np.exp(-1.0)))
    assert brier_score([[100.0, 0.0]], [0]) == pytest.approx(0.0)
    assert brier_score([[100.0, 0.0]], [1]) == pytest.approx(2.0)
    assert brier_score([[0.0, 0.0, 0.0, 0.0]], [3]) == pytest.approx(0.75)  # 3 * (1/4)^2 + (3/4)^2


LOGITS = np.zeros((4, 3))


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros((0, 3)), np.zeros(0, dtype=int),
     "no examples to calibrate on: the validation split is empty; set data.val_examples to a number above 0"),
    (np.where(np.eye(4, 3) > 0, np.nan, 0.0), np.zeros(4, dtype=int),
     "3 of the 12 logits are not finite (nan or inf): the run diverged; "
     "calibrate a checkpoint from before it diverged"),
    (LOGITS, np.array([0, 1, 2, 3]),
     "labels run 0..3, outside 0..2 for logits of 3 classes: the labels do not match the output's width"),
    (LOGITS, np.array([0, 1, 2]),
     "labels of shape (3,) for 4 rows of logits: give one integer class id per example, in the logits' order"),
    (LOGITS, np.eye(4, 3), "labels of shape (4, 3) for 4 rows of logits: "
     "give one integer class id per example, in the logits' order"),
    (LOGITS, np.full(4, 0.5), "labels of dtype float64: give integer class ids, not one-hot rows or probabilities"),
    (np.zeros(4), np.zeros(4, dtype=int), "logits of shape (4,): calibration needs one row of class logits per "
     "example (examples x classes); a single sigmoid logit per example is not supported"),
])
def test_bad_input_is_one_line_naming_it(logits, labels, message):
    for refuses in (fit_temperature, ece_interval):
        with pytest.raises(UserError) as err:
            refuses(logits, labels)
        assert str(err.value) == message


def test_ece_interval_holds_the_ece_and_narrows_with_more_examples():
    widths = []
    for examples in (300, 3000):
        for true_t in (1.0, 2.0):  # calibrated, and over-confident
            logits, labels = sampled(examples, true_t, seed=2)
            low, high = ece_interval(logits, labels, resamples=300)
            assert low <= expected_calibration_error(logits, labels) <= high
            widths.append(high - low)
    assert widths[2] < widths[0] / 2 and widths[3] < widths[1] / 2  # 10x the examples: about 1/3 the width
    assert ece_interval(logits, labels, resamples=300, seed=5) == ece_interval(logits, labels, resamples=300, seed=5)


def test_with_temperature_divides_and_survives_a_plain_keras_round_trip(tmp_path):
    import keras

    inputs = keras.Input((4,))
    logits_model = keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs))
    calibrated = with_temperature(logits_model, 1.7)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    expected = logits_model.predict(x, verbose=0) / 1.7
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), expected, rtol=1e-6)
    held = [np.asarray(w) for w in calibrated.non_trainable_weights if w.path.endswith("variance")]
    assert held == [pytest.approx(1.7**2)] and len(calibrated.trainable_weights) == 2  # the head's alone

    path = tmp_path / "calibrated.keras"
    calibrated.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: every layer is Keras's own
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    assert loaded.get_layer("temperature").get_config()["variance"] is None  # T is in the weights, not the config
