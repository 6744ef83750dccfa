"""Every loss formulation: registry, options, and what it computes through Keras."""
from pathlib import Path

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.measure import compiled_loss, loss_and_logit_grad

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
    # A family's head is its own activation or plain logits; its labels are its own formats.
    assert f.head in ("logits", f.family)
    assert f.labels in {"softmax": ("sparse", "onehot"), "sigmoid": ("binary",)}[f.family]
    y = losses.get(name).encode_labels(np.array([2, 0]), 3)
    if f.labels == "sparse":
        np.testing.assert_array_equal(y, [2, 0])
    elif f.labels == "onehot":
        np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0]])
    else:  # one target per unit: the values themselves, as floats
        assert y.dtype == np.float32 and y.tolist() == [2.0, 0.0]


def test_the_families_split_the_registry():
    softmax, sigmoid = losses.names("softmax"), losses.names("sigmoid")
    assert softmax + sigmoid == losses.names()
    assert set(sigmoid) == {"sigmoid_bce", "bce_from_logits", "tf_nn_sigmoid_logits", "bce_naive",
                            "bce_clipped_probs", "mistake_bce_logits_as_probs", "mistake_double_sigmoid"}


SOUND = [n for n in losses.names("softmax") if not losses.formulation(n).is_mistake]
SOUND_SIGMOID = [n for n in losses.names("sigmoid") if not losses.formulation(n).is_mistake]


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


# --- the sigmoid family: its reference is the float64 binary cross entropy -------------------------


def test_sigmoid_family_matches_exact_binary_cross_entropy_on_ordinary_logits():
    """Every sound sigmoid formulation (3 units, 0/1 targets, smoothed as Keras does: towards 0.5)."""
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(16, 3)) * 3).astype(np.float32)
    targets = rng.integers(0, 2, size=(16, 3)).astype(np.float32)
    expected = losses.exact_binary_cross_entropy(logits, targets * 0.8 + 0.1).mean()
    for name in SOUND_SIGMOID:
        got = compiled_loss(losses.get(name, label_smoothing=0.2), logits, targets)
        assert got == pytest.approx(expected, abs=1e-5, rel=1e-5), name


# Three confidently wrong examples, one logit each: exact binary cross entropy 30, 30, 60.
WRONG_LOGITS, WRONG_TARGETS = np.array([[30.0], [-30.0], [60.0]]), np.array([[0.0], [1.0], [0.0]])


def per_example(name):
    """Per-example loss and |gradient| of `name` in float32, compiled as training compiles it."""
    values, grads, _ = loss_and_logit_grad(losses.get(name), WRONG_LOGITS, WRONG_TARGETS, "float32")
    return values, grads


def test_the_clip_caps_a_binary_loss_at_15_94_in_float32_and_kills_its_gradient():
    exact = losses.exact_binary_cross_entropy(WRONG_LOGITS, WRONG_TARGETS)
    assert exact.tolist() == pytest.approx([30.0, 30.0, 60.0])
    values, grads = per_example("bce_clipped_probs")
    # Target 0: -log(1 - (1 - 1e-7)), with 1 - 1e-7 rounded to 1 - 2**-23 in float32; target 1: -log(1e-7).
    assert values.tolist() == pytest.approx([-np.log(2.0**-23), CLIPPED_CAP, -np.log(2.0**-23)], rel=1e-6)
    assert values[0] == pytest.approx(15.942, abs=1e-3) and grads.tolist() == [0.0, 0.0, 0.0]
    # Logits read as probabilities are clipped the same way, however small or large.
    lost, _ = per_example("mistake_bce_logits_as_probs")
    assert lost.tolist() == pytest.approx(values.tolist(), rel=1e-6)


def test_tensorflow_rescues_a_sigmoid_head_and_the_logit_formulations_stay_exact():
    for name in ("sigmoid_bce", "bce_from_logits", "tf_nn_sigmoid_logits"):
        values, grads = per_example(name)
        assert values.tolist() == pytest.approx([30.0, 30.0, 60.0], rel=1e-6), name
        assert grads.tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-6), name


def test_bce_naive_gives_inf_and_nan_at_large_logits():
    # Target 0 at logit 30: sigmoid rounds to 1, log(1 - 1) = -inf. At -200 the exact loss is 0, but the
    # sigmoid underflows to 0 and 0 * log(0) is NaN.
    values, _, _ = loss_and_logit_grad(losses.get("bce_naive"), np.array([[30.0], [-200.0], [3.0]]),
                                       np.zeros((3, 1)), "float32")
    assert values[0] == np.inf and np.isnan(values[1])
    assert values[2] == pytest.approx(losses.exact_binary_cross_entropy([[3.0]], [[0.0]])[0], rel=1e-5)


def test_a_sigmoid_formulation_is_refused_by_the_multiclass_recipes_in_one_line(compose):
    from keras_loss_recipes.config.settings import check_loss
    from keras_loss_recipes.runtime.errors import UserError

    with pytest.raises(UserError) as err:
        check_loss(compose("loss=sigmoid_bce", "backend=jax"))
    line = str(err.value)
    assert "\n" not in line and line.startswith("loss=sigmoid_bce: a sigmoid formulation")
    assert "cannot train a multiclass classifier" in line
    # The ones that fit: the softmax family, less what the backend cannot run.
    fit = line.split("formulations that fit: ")[1].split(", ")
    assert fit == [n for n in losses.names("softmax") if "jax" in losses.formulation(n).backends]
    check_loss(compose("loss=from_logits"))  # the softmax family passes


def test_binary_accuracy_reads_logits_at_0_and_probabilities_at_one_half():
    y = np.array([[1.0], [0.0]])
    for name, outputs in (("bce_from_logits", [[0.3], [-0.2]]), ("sigmoid_bce", [[0.6], [0.4]])):
        metric = losses.get(name).accuracy_metric()
        metric.update_state(y, np.array(outputs, np.float32))
        assert float(metric.result()) == 1.0, name


def test_readme_table_lists_every_formulation():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in losses.names():
        assert f"| `{name}` |" in readme, name


def test_the_stress_preset_scales_the_logits_in_front_of_a_sigmoid_head(compose):
    """stress=logits_x300 multiplies the logits that the sigmoid head (and so the loss) sees, as for a softmax."""
    import keras

    from keras_loss_recipes.training.network import build_network

    cfg = compose("model=mlp", "model.hidden_units=8", "stress=logits_x300")
    model, logits_model, _ = build_network(cfg, losses.get("sigmoid_bce"), (4, 4, 1), 1)
    raw = keras.Model(model.inputs, model.get_layer("logits").output)
    x = np.random.default_rng(4).normal(size=(6, 4, 4, 1)).astype(np.float32)
    scaled = logits_model.predict(x, verbose=0)
    np.testing.assert_allclose(scaled, 300.0 * raw.predict(x, verbose=0), rtol=1e-5)
    sigmoid = model.get_layer(losses.SIGMOID_LAYER)
    probs = 1.0 / (1.0 + np.exp(-scaled.astype(np.float64)))
    np.testing.assert_allclose(model.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-7)
    assert sigmoid.input is model.get_layer("logit_scale").output
