"""task=binary and task=multilabel: the config key, the labels each takes, the figures of a sigmoid per unit
(exact binary cross entropy, per-label accuracy, macro F1, telemetry, calibration), and one run of each."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from keras_loss_recipes import losses
from keras_loss_recipes.config.settings import validate
from keras_loss_recipes.data import tasks
from keras_loss_recipes.data.embedded import read_embedded
from keras_loss_recipes.data.splits import Splits, stratified_split
from keras_loss_recipes.evaluation import task_scores
from keras_loss_recipes.evaluation.calibration import expected_calibration_error, fit_temperature, two_class_logits
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import TINY


def reference_bce(logits, targets) -> np.ndarray:
    """Per example, float64 binary cross entropy written another way: -y log s(z) - (1 - y) log s(-z) via logaddexp."""
    z, y = np.asarray(logits, np.float64), np.asarray(targets, np.float64).reshape(np.shape(logits))
    return np.mean(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z), axis=-1)


# --- the config key ---------------------------------------------------------------------------------------

def test_task_defaults_to_multiclass_and_each_task_takes_its_own_family(compose):
    assert compose().task == losses.MULTICLASS
    assert validate(compose("task=binary", "loss=bce_from_logits")).name == "bce_from_logits"
    assert validate(compose("task=multilabel", "loss=sigmoid_bce")).name == "sigmoid_bce"
    with pytest.raises(UserError) as err:
        validate(compose("task=binary", "loss=sparse_from_logits"))
    fit = [n for n in losses.names("sigmoid")]
    assert str(err.value) == (f"loss=sparse_from_logits: a softmax formulation ({losses.FAMILIES['softmax']}) cannot "
                              f"train a binary classifier ({losses.FAMILIES['sigmoid']}); formulations that fit: "
                              f"{', '.join(fit)}")
    with pytest.raises(UserError, match="^task='regression': valid choices: multiclass, binary, multilabel$"):
        validate(compose("task=regression"))


def test_a_tensorflow_only_formulation_is_left_out_of_the_fitting_ones_on_jax(compose):
    with pytest.raises(UserError) as err:
        validate(compose("task=multilabel", "loss=from_logits", "backend=jax"))
    assert "tf_nn_sigmoid_logits" not in str(err.value) and "bce_from_logits" in str(err.value)


# --- the labels -------------------------------------------------------------------------------------------

def splits_of(labels, num_classes: int) -> Splits:
    labels = np.asarray(labels)
    images = np.zeros((len(labels), 2, 2, 1), np.uint8)
    return Splits("mine", num_classes, images, labels, images[:1], labels[:1], images[:1], labels[:1])


@pytest.mark.parametrize("task, labels, classes, said", [
    ("binary", [0, 1, 2], 3, "^task=binary: data=mine has 3 classes; task=binary needs two"),
    ("binary", [[0, 1], [1, 0]], 2, "^task=binary: data=mine has labels of shape \\(N, 2\\), several per example"),
    ("multilabel", [0, 1, 1], 2, "^task=multilabel: data=mine has one label per example"),
    ("multilabel", [[0, 2], [1, 0]], 2, "^task=multilabel: data=mine: labels hold 0, 1, 2; this task needs 0/1"),
    ("multiclass", [[0, 1], [1, 0]], 2, "^task=multiclass: data=mine has labels of shape \\(N, 2\\)"),
])
def test_labels_that_do_not_fit_the_task_are_one_line(task, labels, classes, said):
    with pytest.raises(UserError, match=said):
        tasks.check_labels(splits_of(labels, classes), task)


def test_labels_that_fit_pass_and_the_task_decides_the_logits():
    assert tasks.check_labels(splits_of([0, 1, 1], 2), "binary").num_classes == 2
    assert tasks.check_labels(splits_of([[0, 1, 1], [1, 0, 0]], 3), "multilabel").num_classes == 3
    assert (tasks.outputs("binary", 2), tasks.outputs("multilabel", 3), tasks.outputs("multiclass", 10)) == (1, 3, 10)


def test_multilabel_splits_keep_each_combination_of_labels_in_ratio():
    rows = np.array([[0, 0]] * 40 + [[0, 1]] * 20 + [[1, 1]] * 40)
    parts = stratified_split(rows, [10, 90], seed=0)
    assert [len(p) for p in parts] == [10, 90] and len(np.intersect1d(*parts)) == 0
    combos, counts = np.unique(rows[parts[0]], axis=0, return_counts=True)
    assert combos.tolist() == [[0, 0], [0, 1], [1, 1]] and counts.tolist() == [4, 2, 4]


# --- the figures ------------------------------------------------------------------------------------------

def test_the_multilabel_figures_are_scikit_learns_and_the_exact_ce_the_float64_reference():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 3, size=(200, 3)), rng.integers(0, 2, size=(200, 3))
    labels[:, 2] = 0  # a label never true
    assert task_scores.macro_f1(logits, labels) == pytest.approx(
        f1_score(labels, (logits > 0).astype(int), average="macro", zero_division=0), abs=1e-12)
    assert task_scores.label_accuracy(logits, labels) == pytest.approx(np.mean((logits > 0) == labels, axis=0))
    assert task_scores.exact_ce(logits, labels, sigmoid=True) == pytest.approx(
        np.mean(reference_bce(logits, labels)), rel=1e-12)
    binary = rng.normal(0, 40, size=(50, 1))  # confidently wrong or right: the float32 path would round
    assert task_scores.exact_ce(binary, rng.integers(0, 2, 50), sigmoid=True) > 0


def test_temperature_scaling_of_sigmoid_logits_is_the_binary_one():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(3000, 2))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z / 2.5))).astype(int)  # drawn at T = 2.5
    pairs, ids = two_class_logits(z, y)
    assert pairs.shape == (6000, 2) and fit_temperature(pairs, ids) == pytest.approx(2.5, abs=0.25)
    p = 1 / (1 + np.exp(-z.reshape(-1)))
    confidence, right = np.maximum(p, 1 - p), (p > 0.5) == (y.reshape(-1) == 1)
    edges = np.linspace(0, 1, 16)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, 14)
    ece = sum(abs(right[which == b].mean() - confidence[which == b].mean()) * np.mean(which == b)
              for b in range(15) if np.any(which == b))
    assert expected_calibration_error(pairs, ids, bins=15) == pytest.approx(ece, abs=1e-12)


def test_the_keras_macro_f1_and_the_sigmoid_telemetry_match_numpy():
    from keras import ops

    from keras_loss_recipes.training.task_metrics import MacroF1
    from keras_loss_recipes.training.telemetry import logit_stats

    rng = np.random.default_rng(2)
    z, y = rng.normal(0, 3, size=(64, 3)).astype("float32"), rng.integers(0, 2, size=(64, 3))
    z[0, 0] = 40.0  # a saturated unit
    metric = MacroF1(3)
    metric.update_state(y[:40], z[:40])
    metric.update_state(y[40:], z[40:])
    assert float(metric.result()) == pytest.approx(f1_score(y, (z > 0).astype(int), average="macro"), abs=1e-6)
    stats = {k: float(v) for k, v in logit_stats(ops.convert_to_tensor(z), ops.convert_to_tensor(y), sigmoid=True).items()}
    assert stats["logit_gap"] == pytest.approx(np.mean(np.abs(z)), rel=1e-5)
    assert stats["saturated_frac"] == pytest.approx(1 / z.size)
    assert stats["exact_ce"] == pytest.approx(np.mean(reference_bce(z, y)), rel=1e-5)


# --- runs -------------------------------------------------------------------------------------------------

def digits_npz(tmp_path, kind: str):
    """400 embedded digits with 0/1 labels: even (binary), or (even, above 4) (multilabel)."""
    x, y = read_embedded()
    x, y = x[:400], y[:400]
    labels = (y % 2 == 0) if kind == "binary" else np.stack([y % 2 == 0, y > 4], axis=1)
    path = tmp_path / f"{kind}.npz"
    np.savez(path, x_train=x, y_train=labels.astype(np.int64))
    return path


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("task, loss", [("binary", "bce_from_logits"), ("multilabel", "sigmoid_bce")])
def test_a_sigmoid_task_trains_and_records_its_figures(compose, tmp_path, task, loss):
    import keras

    from keras_loss_recipes.data import load_splits
    from keras_loss_recipes.recipes import train as train_recipe

    cfg = compose(*TINY, f"task={task}", f"loss={loss}", "data=npz", f"data.path={digits_npz(tmp_path, task)}")
    metrics = train_recipe.run(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["task"] == task and record["status"] == "ok" and record["test_accuracy"] == metrics["test_accuracy"]
    model = keras.models.load_model(tmp_path / "run" / "last.keras")
    splits = load_splits(cfg.data)
    head = model.get_layer("sigmoid") if loss == "sigmoid_bce" else None
    logits_model = keras.Model(model.inputs, head.input) if head is not None else model
    logits = logits_model.predict(splits.x_test.astype("float32") / 255, verbose=0).astype(np.float64)
    width = 1 if task == "binary" else 2
    targets = splits.y_test.reshape(len(logits), width)
    assert logits.shape == (len(splits.y_test), width)
    assert record["test_exact_ce"] == pytest.approx(np.mean(reference_bce(logits, targets)), rel=1e-4)
    assert record["test_accuracy"] == pytest.approx(np.mean((logits > 0) == targets), abs=1e-6)
    assert record["temperature"] > 0 and record["test_ece"] >= 0
    history = record["history"]
    assert np.isfinite(history["val_exact_ce"][0]) and np.isfinite(history["val_accuracy"][0])
    if task == "multilabel":
        assert record["test_macro_f1"] == pytest.approx(f1_score(targets, (logits > 0).astype(int), average="macro",
                                                                 zero_division=0), abs=1e-9)
        assert record["test_label_accuracy"] == pytest.approx(np.mean((logits > 0) == targets, axis=0).tolist())
        assert "val_macro_f1" in history
        assert_evaluate_gives_the_runs_figures(compose, tmp_path, task, record)
    else:
        assert_calibrate_fits_the_runs_temperature(compose, tmp_path, task, record)


def assert_evaluate_gives_the_runs_figures(compose, tmp_path, task: str, record: dict) -> None:
    """recipe=evaluate of the run, told its task (whatever loss= says), gives the run's own figures."""
    from keras_loss_recipes.recipes import evaluate

    again = evaluate.run(compose(*TINY, "recipe=evaluate", f"checkpoint={tmp_path / 'run'}", f"task={task}",
                                 "data=npz", f"data.path={tmp_path / f'{task}.npz'}"), tmp_path / "evaluate")
    assert again["test_accuracy"] == pytest.approx(record["test_accuracy"], abs=1e-6)
    assert again["test_exact_ce"] == pytest.approx(record["test_exact_ce"], rel=1e-6)
    assert again["test_ece"] == pytest.approx(record["test_ece"], rel=1e-6)


def test_binary_on_ten_classes_stops_in_one_line_without_a_run_directory(train_cli, tmp_path):
    done = train_cli("task=binary", "loss=bce_from_logits", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: task=binary: data=mnist_embedded has 10 classes; task=binary needs two (labels 0/1): use "
        "task=multiclass, or relabel the data to 0/1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("units, labels_shape", [(1, (4000,)), (3, (4000, 3))])
def test_calibrate_fits_a_sigmoids_temperature_for_one_unit_or_a_target_per_unit(units, labels_shape):
    """Labels drawn from sigmoid(z / 2): the fitted T lies within their noise of 2; the calibrated model divides."""
    import keras

    from keras_loss_recipes import calibrate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 4)).astype("float32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(units, name="logits")(inputs))
    model.get_layer("logits").set_weights([rng.normal(size=(4, units)).astype("float32") * 3,
                                           np.zeros(units, "float32")])
    z = model.predict(x, verbose=0).astype(np.float64)
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z / 2.0))).astype(np.int64).reshape(labels_shape)
    temperature, calibrated = calibrate(model, x, y)
    assert 1.8 < temperature < 2.2
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), z / temperature, rtol=1e-5, atol=1e-6)


def assert_calibrate_fits_the_runs_temperature(compose, tmp_path, task: str, record: dict) -> None:
    """recipe=calibrate of a sigmoid run: the run's own end-of-run T (the same validation logits, the same fit), its
    accuracy unchanged, and a saved model whose outputs are the logits divided by T."""
    import keras

    from keras_loss_recipes.recipes import calibrate

    result = calibrate.run(compose(*TINY, "recipe=calibrate", f"checkpoint={tmp_path / 'run'}", f"task={task}",
                                   "data=npz", f"data.path={tmp_path / f'{task}.npz'}"), tmp_path / "calibrate")
    assert result["temperature"] == pytest.approx(record["temperature"], rel=1e-5)
    assert result["test_accuracy"] == result["test_accuracy_calibrated"] == pytest.approx(record["test_accuracy"],
                                                                                         abs=1e-6)
    assert result["test_ece"] == pytest.approx(record["test_ece"], rel=1e-5)
    calibrated = keras.models.load_model(tmp_path / "calibrate" / "calibrated.keras")
    assert calibrated.outputs[0].shape[-1] == 1
