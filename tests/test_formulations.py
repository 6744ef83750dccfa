"""Every loss formulation: registry, options, and what it computes through Keras."""
from pathlib import Path

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.measure import compiled_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "loss"
EXTREME = np.array([[1000.0, 0.0, -1000.0]])  # true class 2: exact CE is 2000
CLIPPED_CAP = -np.log(losses.CLIP_EPSILON)  # 16.118...


def test_registry_has_the_documented_formulations():
    assert set(losses.names()) >= {
        "softmax_ce", "sparse_softmax", "from_logits", "sparse_from_logits",
        "tf_nn_logits", "tf_nn_sparse_logits", "naive", "clipped_probs",
    }


def test_every_formulation_has_exactly_one_config_and_it_names_itself():
    import yaml

    files = {p.stem: yaml.safe_load(p.read_text()) for p in CONFIGS.glob("*.yaml")}
    assert set(files) == set(losses.names())
    for stem, cfg in files.items():
        assert cfg["name"] == stem


@pytest.mark.parametrize("name", losses.names())
def test_heads_and_label_formats_are_consistent(name):
    f = losses.formulation(name)
    assert f.head in ("logits", "softmax")
    assert f.labels in ("sparse", "onehot")
    y = losses.get(name).encode_labels(np.array([2, 0]), 3)
    if f.labels == "sparse":
        np.testing.assert_array_equal(y, [2, 0])
    else:
        np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0]])


SOUND = [n for n in losses.names() if not losses.formulation(n).is_mistake]


@pytest.mark.parametrize("name", SOUND)
def test_loss_matches_exact_cross_entropy_on_ordinary_logits(name):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(32, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, size=32)
    expected = losses.exact_cross_entropy(logits, labels).mean()
    got = compiled_loss(losses.get(name), logits, labels)
    assert got == pytest.approx(expected, abs=1e-5, rel=1e-5)


def test_reference_case_two_one_point_one():
    for name in SOUND:
        got = compiled_loss(losses.get(name), [[2.0, 1.0, 0.1]], [2])
        assert got == pytest.approx(2.31703, abs=1e-5), name


@pytest.mark.parametrize(
    "name", ["from_logits", "sparse_from_logits", "tf_nn_logits", "tf_nn_sparse_logits"]
)
def test_logits_formulations_stay_exact_at_extreme_logits(name):
    assert compiled_loss(losses.get(name), EXTREME, [2]) == pytest.approx(2000.0, rel=1e-6)


@pytest.mark.parametrize("name", ["softmax_ce", "sparse_softmax"])
def test_tensorflow_backend_rescues_a_softmax_head(name):
    # Keras on TensorFlow reads the logits back out of the softmax layer.
    assert compiled_loss(losses.get(name), EXTREME, [2]) == pytest.approx(2000.0, rel=1e-6)


def test_clipped_probs_caps_the_loss_at_minus_log_epsilon():
    got = compiled_loss(losses.get("clipped_probs"), EXTREME, [2])
    assert got == pytest.approx(CLIPPED_CAP, rel=1e-5)
    assert got == pytest.approx(16.118, abs=1e-3)


def test_naive_turns_into_nan_at_extreme_logits():
    assert np.isnan(compiled_loss(losses.get("naive"), EXTREME, [2]))


def test_naive_fails_where_float32_exp_underflows():
    z = np.zeros((1, 10), np.float32)
    z[0, 0] = 80.0
    assert compiled_loss(losses.get("naive"), z, [0]) == pytest.approx(0.0, abs=1e-6)
    z[0, 0] = 120.0
    assert np.isnan(compiled_loss(losses.get("naive"), z, [0]))


@pytest.mark.parametrize("name", ["softmax_ce", "from_logits", "tf_nn_logits", "naive", "clipped_probs"])
def test_label_smoothing_matches_smoothed_exact_cross_entropy(name):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=8)
    smoothed = np.eye(10)[labels] * 0.9 + 0.1 / 10
    expected = losses.exact_cross_entropy(logits, smoothed).mean()
    got = compiled_loss(losses.get(name, label_smoothing=0.1), logits, labels)
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", ["sparse_from_logits", "softmax_ce"])
def test_temperature_divides_the_logits(name):
    logits = np.array([[4.0, 2.0, 0.2], [1.0, 3.0, -2.0]], np.float32)
    expected = losses.exact_cross_entropy(logits / 2.0, [2, 1]).mean()
    got = compiled_loss(losses.get(name, temperature=2.0), logits, [2, 1])
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, "temperature=0.0: must be a finite number > 0"),
        ({"temperature": -1.5}, "temperature=-1.5"),
        ({"label_smoothing": 1.0}, r"label_smoothing=1.0: must be in \[0, 1\)"),
        ({"label_smoothing": -0.1}, "label_smoothing=-0.1"),
    ],
)
def test_bad_options_name_the_value(kwargs, message):
    with pytest.raises(losses.LossOptionError, match=message):
        losses.get("from_logits", **kwargs)


def test_sparse_formulations_refuse_label_smoothing_and_suggest_others():
    with pytest.raises(losses.LossOptionError, match="from_logits") as err:
        losses.get("sparse_from_logits", label_smoothing=0.1)
    assert err.value.option == "label_smoothing"


def test_unknown_name_lists_the_choices():
    with pytest.raises(losses.LossOptionError, match="sparse_from_logits"):
        losses.get("nope")


def test_tensorflow_only_formulations_refuse_other_backends():
    setup = losses.get("tf_nn_logits")
    with pytest.raises(losses.LossOptionError, match="needs the tensorflow backend.*'jax'"):
        setup.check_backend("jax")
    losses.get("from_logits").check_backend("jax")  # portable: no error


def test_mistake_logits_as_probs_is_far_from_the_exact_loss():
    # [2, 1, 0.1] read as unnormalised probabilities: -log(0.1 / 3.1) = 3.434
    setup = losses.get("mistake_logits_as_probs")
    assert compiled_loss(setup, [[2.0, 1.0, 0.1]], [2]) == pytest.approx(-np.log(0.1 / 3.1), rel=1e-5)
    # Keras divides by the sum of the "probabilities": 0 for the extreme case.
    assert np.isnan(compiled_loss(setup, EXTREME, [2]))
    assert compiled_loss(setup, [[1000.0, 0.0, -999.0]], [2]) == pytest.approx(CLIPPED_CAP, rel=1e-5)


def test_mistake_double_softmax_is_rescued_on_tensorflow():
    # Keras on TensorFlow warns about from_logits=True on a softmax output and
    # then uses the logits behind it: the value is exact.
    with pytest.warns(UserWarning, match="from_logits=True"):
        got = compiled_loss(losses.get("mistake_double_softmax"), EXTREME, [2])
    assert got == pytest.approx(2000.0, rel=1e-6)


def test_readme_table_lists_every_formulation():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in losses.names():
        assert f"| `{name}` |" in readme, name
