"""recipe=calibrate on a small saved model: the files, the figures, the calibrated model, and the bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_loss_recipes.evaluation.calibration import negative_log_likelihood
from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import ROOT, project_env

OVERCONFIDENCE = 4.0  # the trained weights times this: a model surer than it is right, so T must come out > 1


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A softmax regression on the embedded digits (two quick epochs), made over-confident and saved; and its data."""
    import keras

    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.data import load_splits
    from keras_loss_recipes.data.pipeline import scale_images

    splits = load_splits(compose_train([]).data)
    keras.utils.set_random_seed(0)
    model = logits_model(keras, splits.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(scale_images(splits.x_train), splits.y_train, batch_size=256, epochs=2, verbose=0)
    head = model.get_layer("logits")
    head.set_weights([w * OVERCONFIDENCE for w in head.get_weights()])
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return path, splits


def logits_model(keras, outputs: int, activation=None):
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation, name="logits")(
        keras.layers.Flatten()(inputs)))


def calibrate(compose, checkpoint, run_dir, *overrides) -> dict:
    from keras_loss_recipes.recipes import calibrate as recipe

    return recipe.run(compose("recipe=calibrate", f"checkpoint={checkpoint}", *overrides), run_dir)


def test_calibrate_fits_t_keeps_the_accuracy_and_saves_a_plain_keras_model(saved, compose, tmp_path):
    import keras

    from keras_loss_recipes.data.pipeline import scale_images

    path, splits = saved
    result = calibrate(compose, path, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == result
    assert set(CALIBRATION_KEYS) <= set(result) and all(isinstance(result[k], float) for k in CALIBRATION_KEYS)
    assert result["temperature"] > 1.5  # the weights were scaled up 4x: over-confident, and T says so
    assert result["test_accuracy_calibrated"] == result["test_accuracy"] > 0.8
    assert result["test_nll_calibrated"] < result["test_nll"]
    assert (tmp_path / "run" / "reliability.png").stat().st_size > 20_000
    from tests.test_stability import event_tags

    tags = event_tags(tmp_path / "run" / "calibrate").Tags()
    assert "calibrate/reliability" in tags["tensors"] + tags.get("images", [])
    assert "calibrate/temperature" in tags["tensors"] + tags.get("scalars", [])

    # calibrated.keras: Keras's own layers (no custom objects), its output the logits over T; on the validation
    # split T was fitted on, its NLL is no worse than the model's.
    loaded = keras.models.load_model(tmp_path / "run" / "calibrated.keras")
    x_val = scale_images(splits.x_val)
    logits = keras.models.load_model(path).predict(x_val, verbose=0)
    calibrated = loaded.predict(x_val, verbose=0)
    np.testing.assert_allclose(calibrated, logits / result["temperature"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(calibrated.argmax(-1), logits.argmax(-1))
    assert negative_log_likelihood(calibrated, splits.y_val) < negative_log_likelihood(logits, splits.y_val)


@pytest.mark.parametrize("case, message", [
    ("softmax", "outputs probabilities (a softmax in layer 'logits'), and its logits cannot be found: calibrate a "
                "model that outputs logits (recipe=doctor shows how to take the softmax off)"),
    ("sigmoid", "outputs probabilities (a sigmoid in layer 'logits'), and its logits cannot be found: calibrate the "
                "model of its logits (`keras_loss_recipes.fix(model)`, or recipe=doctor recipe.fix=true, writes it)"),
    ("three_outputs", "the model has 3 outputs but data=mnist_embedded has 10 classes"),
    ("diverged", "of the 5000 logits are not finite (nan or inf): the run diverged; calibrate a checkpoint from "
                 "before it diverged"),
    ("no_validation", "data.val_examples=0: must be an integer >= 1"),  # refused with the config, up front
])
def test_bad_input_is_one_line_and_writes_no_model(saved, compose, tmp_path, case, message):
    import keras

    path, _ = saved
    overrides = ["data.val_examples=0"] if case == "no_validation" else []
    if case in ("softmax", "sigmoid", "three_outputs", "diverged"):
        model = logits_model(keras, 3 if case == "three_outputs" else 10,
                             activation=case if case in ("softmax", "sigmoid") else None)
        if case == "diverged":
            model.get_layer("logits").set_weights([np.full((784, 10), np.nan, "float32"), np.zeros(10, "float32")])
        path = tmp_path / f"{case}.keras"
        model.save(path)
    with pytest.raises(UserError) as err:
        calibrate(compose, path, tmp_path / "run", *overrides)
    said = str(err.value)
    assert "\n" not in said and said.endswith(message), said
    assert not (tmp_path / "run" / "calibrated.keras").exists()


def test_the_library_call_refuses_an_empty_validation_split(saved):
    import keras

    from keras_loss_recipes.evaluation.calibration import EMPTY_SPLIT, calibrate as calibrate_model

    path, splits = saved
    with pytest.raises(UserError, match="^" + EMPTY_SPLIT.replace("(", r"\(") + "$"):
        calibrate_model(keras.models.load_model(path), splits.x_val[:0], splits.y_val[:0])


def test_a_checkpoint_without_a_model_is_exit_code_2_on_the_command_line(tmp_path):
    import subprocess
    import sys

    (tmp_path / "run").mkdir()  # a run directory with no saved model in it: no logits to find
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "recipe=calibrate", f"checkpoint={tmp_path / 'run'}",
                           f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path, env=project_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: checkpoint={tmp_path / 'run'}: the directory holds no last.keras or best.keras or "
        "last.weights.h5 or best.weights.h5")


def test_the_docs_state_the_bounds_and_bins_the_code_uses():
    from keras_loss_recipes.reporting.calibration import ECE_BINS, TEMPERATURE_BOUNDS

    text = (ROOT / "docs" / "calibration.md").read_text()
    low, high = TEMPERATURE_BOUNDS
    assert f"within [{low:g}, {high:g}]" in text and f"{ECE_BINS} equal-width confidence bins" in text


def test_the_sweep_report_tables_each_groups_temperature_and_scores_before_and_after(tmp_path):
    from keras_loss_recipes.sweeps import comparison
    from tests.test_sweeps import fake_run

    (tmp_path / "multirun.yaml").write_text("{}")
    figures = {"a0": (1.2, 0.30, 0.28), "a1": (1.4, 0.50, 0.44), "b0": (20.0, 9.0, 2.0), "b1": (None, None, None)}
    for name, (temperature, nll, nll_after) in figures.items():
        fake_run(tmp_path, name, "from_logits" if name[0] == "a" else "naive", int(name[1]),
                 status="diverged" if name == "b1" else "ok")
        path = tmp_path / name / "metrics.json"
        keys = dict.fromkeys(CALIBRATION_KEYS, 0.01) | {"temperature": temperature, "test_nll": nll,
                                                          "test_nll_calibrated": nll_after}
        path.write_text(json.dumps(json.loads(path.read_text()) | keys))
    comparison.write_report(tmp_path, tensorboard=False)
    from tests.test_sweeps import report_rows

    rows = report_rows((tmp_path / "comparison.md").read_text())  # one row per group: the calibration in it
    assert rows["loss=from_logits"]["fitted T"] == "1.300 ± 0.141 (over-confident)"
    assert rows["loss=from_logits"]["test NLL before → after"] == "0.4000 → 0.3600"
    assert rows["loss=from_logits"]["test ECE before → after"] == "0.0100 → 0.0100"
    # The diverged run is left out of the means; a T at the search's bound is said to be there.
    assert rows["loss=naive"]["fitted T"] == "20.000 ± 0.000 (over-confident, at the bound)"
    assert rows["loss=naive"]["test NLL before → after"] == "9.0000 → 2.0000"
    assert "temperature,test_nll,test_nll_calibrated" in (tmp_path / "comparison.csv").read_text().splitlines()[0]


def test_the_published_findings_answer_the_calibration_question_per_backend():
    """docs/findings.json (python scripts/findings.py): a T for every finished run, and label smoothing measured."""
    findings = json.loads((ROOT / "docs" / "findings.json").read_text())
    for backend in findings["backends"]:
        for group in ("ordinary", "stress", "ordinary_smoothed", "stress_smoothed"):
            rows = [g for g in findings["groups"] if g["group"] == group and g["backend"] == backend and g["ok"]]
            assert rows and all(g["temperature"] and g["confidence"] for g in rows), (backend, group)
        claims = findings["claims"][backend]
        assert claims["smoothing_ordinary"]["from_logits"]["t_lower"] is not None
    assert (ROOT / "docs" / "img" / "findings_calibration.png").stat().st_size > 20_000
