"""The reference softmax and cross entropy: known values and edge cases."""
import numpy as np
import pytest

from keras_loss_recipes import losses

REFERENCE_SOFTMAX = [0.65900114, 0.24243297, 0.09856589]


def test_stable_softmax_matches_reference_values():
    p = losses.stable_softmax(np.array([2.0, 1.0, 0.1]))
    np.testing.assert_allclose(p, REFERENCE_SOFTMAX, rtol=1e-7)
    assert isinstance(p, np.ndarray)


def test_stable_softmax_keeps_float32_and_survives_huge_logits():
    p = losses.stable_softmax(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32))
    assert p.dtype == np.float32
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0]])


def test_stable_softmax_on_a_tensor_returns_a_tensor():
    import keras

    t = keras.ops.convert_to_tensor([[2.0, 1.0, 0.1]])
    p = losses.stable_softmax(t)
    assert not isinstance(p, np.ndarray)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(p), [REFERENCE_SOFTMAX], rtol=1e-6)


def test_stable_softmax_temperature_divides_logits():
    z = np.array([2.0, 1.0, 0.1])
    np.testing.assert_allclose(losses.stable_softmax(z, temperature=2.0), losses.stable_softmax(z / 2))
    with pytest.raises(ValueError, match="temperature=0"):
        losses.stable_softmax(z, temperature=0)


def test_stable_softmax_axis():
    z = np.array([[2.0, 1.0, 0.1], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(losses.stable_softmax(z, axis=0).sum(axis=0), [1, 1, 1])
    np.testing.assert_allclose(losses.stable_softmax(z, axis=0)[:, 0], [0.7310586, 0.2689414], rtol=1e-6)


def test_exact_cross_entropy_reference_value():
    ce = losses.exact_cross_entropy([[2.0, 1.0, 0.1]], [2])
    np.testing.assert_allclose(ce, [2.31703], rtol=1e-5)
    assert ce.dtype == np.float64


def test_exact_cross_entropy_int_and_onehot_agree():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, 10)) * 5
    y = rng.integers(0, 10, size=16)
    np.testing.assert_allclose(
        losses.exact_cross_entropy(z, y), losses.exact_cross_entropy(z, np.eye(10)[y]), rtol=1e-12
    )


def test_exact_cross_entropy_is_exact_at_extreme_logits():
    np.testing.assert_array_equal(losses.exact_cross_entropy([[1000.0, 0.0, -1000.0]], [2]), [2000.0])
    np.testing.assert_array_equal(losses.exact_cross_entropy([[1000.0, 0.0, -1000.0]], [0]), [0.0])


def test_exact_cross_entropy_rejects_bad_labels():
    with pytest.raises(ValueError, match="0..2"):
        losses.exact_cross_entropy([[1.0, 2.0, 3.0]], [3])
    with pytest.raises(ValueError, match="do not fit"):
        losses.exact_cross_entropy([[1.0, 2.0, 3.0]], [[0, 1]])


def _cross_entropy_60_digits(row, label) -> float:
    import mpmath

    with mpmath.workdps(60):  # -log p_y = log(1 + sum over the other classes of exp(z_j - z_y))
        z = [mpmath.mpf(float(v)) for v in row]
        return float(mpmath.log1p(mpmath.fsum(mpmath.exp(v - z[label]) for j, v in enumerate(z) if j != label)))


def test_exact_cross_entropy_is_exact_in_relative_terms():
    """Against 60-digit arithmetic, logits at scale 100: a confident right answer's loss (down to 1e-40 and
    below) keeps its digits; `log` of a sum that rounds to 1 returned -0.0 there."""
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=100.0, size=(400, 10))
    labels = np.where(rng.random(400) < 0.5, logits.argmax(axis=-1), rng.integers(0, 10, 400))
    got = losses.exact_cross_entropy(logits, labels)
    want = np.array([_cross_entropy_60_digits(row, y) for row, y in zip(logits, labels)])
    assert want.min() < 1e-30  # the sample holds the case that went wrong
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    onehot = np.eye(10)[labels]
    np.testing.assert_allclose(losses.exact_cross_entropy(logits, onehot), want, rtol=1e-13, atol=0)
