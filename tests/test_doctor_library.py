"""The loss doctor from Python: `diagnose` on a live model, and `fix` (the logits model, its loss, the inference
model) on every kind of classifier; recipe.fix=true writes them, and the doctor clears the fixed file."""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.evaluation.calibration import fit_temperature
from keras_loss_recipes.losses.numerics import stable_softmax
from keras_loss_recipes.recipes import doctor
from keras_loss_recipes.recipes.doctor import examples
from keras_loss_recipes.recipes.doctor.diagnosis import diagnose
from keras_loss_recipes.recipes.doctor.fix import fix
from keras_loss_recipes.reporting import doctor_report
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import find_head, live_config
from tests.conftest import needs

IMAGES = np.random.default_rng(0).random((3, *examples.MNIST_SHAPE)).astype("float32")


def softmax_layer_model():
    """Functional, its head a Softmax layer of its own, a Reshape after it, compiled with SGD and sparse labels."""
    import keras

    inputs = keras.Input(examples.MNIST_SHAPE)
    scores = keras.layers.Dense(examples.NUM_CLASSES, name="scores")(keras.layers.Flatten()(inputs))
    probs = keras.layers.Softmax(name="probs")(scores)
    model = keras.Model(inputs, keras.layers.Reshape((examples.NUM_CLASSES,))(probs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="sparse_categorical_crossentropy")
    return model


def smoothed_convnet():
    """The keras.io convnet compiled with a loss object of its own options (label smoothing)."""
    import keras

    model = examples.convnet()
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"])
    return model


def check_fixed(model, fixed, images, loss_class: str) -> None:
    """The logits copy has the model's weights and outputs logits; its inference model gives back the
    model's probabilities (T = 1); the model given is unchanged."""
    before = model.predict(images, verbose=0)
    config_before = json.dumps(live_config(model), sort_keys=True)
    assert find_head(live_config(fixed.logits_model)).kind == "logits"
    assert all(np.array_equal(a, b) for a, b in zip(fixed.logits_model.get_weights(), model.get_weights()))
    assert type(fixed.loss).__name__ == loss_class and fixed.loss.get_config()["from_logits"]
    assert fixed.logits_model.loss is fixed.loss and fixed.temperature == 1.0
    logits = fixed.logits_model.predict(images, verbose=0)
    probabilities = fixed.inference_model.predict(images, verbose=0)
    assert not np.allclose(logits, before, atol=1e-3)  # no longer the probabilities
    np.testing.assert_allclose(probabilities, before, atol=2e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0), before)
    assert json.dumps(live_config(model), sort_keys=True) == config_before


def test_fix_takes_the_head_off_a_copy_of_sequential_functional_and_applications_models():
    convnet = smoothed_convnet()
    fixed = fix(convnet)
    check_fixed(convnet, fixed, IMAGES, "CategoricalCrossentropy")
    assert fixed.loss.get_config()["label_smoothing"] == pytest.approx(0.1)  # the loss's own options kept
    assert type(fixed.logits_model.optimizer).__name__ == "Adam"
    assert fixed.logits_model.get_compile_config()["metrics"] == ["accuracy"]
    functional = softmax_layer_model()
    fixed = fix(functional)
    check_fixed(functional, fixed, IMAGES, "SparseCategoricalCrossentropy")
    assert float(fixed.logits_model.optimizer.learning_rate) == pytest.approx(0.05)  # the optimizer's config kept
    assert [a["class_name"] for a in find_head(live_config(fixed.logits_model)).after] == ["Reshape"]
    sigmoid = examples.sigmoid()
    fixed = fix(sigmoid)
    check_fixed(sigmoid, fixed, IMAGES.reshape(3, -1)[:, :20], "BinaryCrossentropy")
    # keras.applications, saved uncompiled: the loss is named; Keras's default optimizer.
    mobilenet = examples.mobilenet()
    with pytest.raises(UserError, match="the model is not compiled; name the loss to examine with loss="):
        fix(mobilenet)
    fixed = fix(mobilenet, loss="categorical_crossentropy")
    check_fixed(mobilenet, fixed, np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32"),
                "CategoricalCrossentropy")


def hub_classifier():
    """A real keras_hub classifier, tiny, from scratch (its first stack needs 64 filters)."""
    import keras
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64], stackwise_num_blocks=[1],
        stackwise_num_strides=[1], block_type="basic_block", use_pre_activation=False,
        image_shape=examples.MNIST_SHAPE)
    model = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=examples.NUM_CLASSES,
                                                   activation="softmax")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    return model


@needs("keras_hub", "pip install keras-hub")
def test_a_keras_hub_classifier_is_built_again_with_activation_none(tmp_path):
    import keras

    model = hub_classifier()
    fixed = fix(model)
    check_fixed(model, fixed, IMAGES, "SparseCategoricalCrossentropy")
    assert type(fixed.logits_model) is type(model) and fixed.logits_model.activation is None
    assert model.activation == "softmax"
    logits_file, inference_file = fixed.save(tmp_path, "hub")
    # The files load in plain Keras: the class stays itself inside the inference model.
    loaded = keras.models.load_model(inference_file)
    assert type(model).__name__ in [type(layer).__name__ for layer in loaded.layers]
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0), atol=2e-6)
    assert diagnose(str(logits_file), precisions=["float32"]).verdict == "clean"


def test_the_temperature_is_fitted_on_validation_data_with_integer_or_one_hot_labels():
    """A Dense whose logits are its inputs: T is the fit on those logits, and the inference model divides by it."""
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(400, 3)).astype("float32")
    labels = np.array([rng.choice(3, p=p) for p in stable_softmax(logits / 2.0)])  # drawn at T = 2
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax", name="probs")])
    model.set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    model.compile(loss="categorical_crossentropy")
    fixed = fix(model, validation_data=(logits, labels))
    assert fixed.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-6)
    assert 1.5 < fixed.temperature < 2.5
    np.testing.assert_allclose(fixed.inference_model.predict(logits[:5], verbose=0),
                               stable_softmax(logits[:5] / fixed.temperature), atol=1e-6)
    one_hot = fix(model, validation_data=(logits, np.eye(3)[labels]))
    assert one_hot.temperature == pytest.approx(fixed.temperature, rel=1e-9)
    with pytest.raises(UserError, match=r"^validation_data: examples of shape \(4,\), but the model takes \(3,\)"):
        fix(model, validation_data=(np.zeros((2, 4)), np.zeros(2)))
    with pytest.raises(UserError, match="probabilities are a sigmoid; leave validation_data out"):
        fix(examples.sigmoid(), validation_data=(np.zeros((2, 20)), np.zeros(2)))


def test_a_head_that_cannot_be_taken_off_is_one_line(tmp_path):
    import keras

    inputs = keras.Input((4,))
    clipped = keras.ops.clip(keras.layers.Dense(3, activation="softmax")(inputs), 1e-6, 1.0)  # an op after it
    after_softmax = keras.Model(inputs, clipped)
    after_softmax.compile(loss="categorical_crossentropy")
    # Layer names carry a counter (lambda_1, clip_2, ...) once other tests have built the same layers.
    for model, shown in ((examples.lambda_softmax(), r"'lambda(_\d+)?' \(Lambda\)"), (after_softmax, r"'clip(_\d+)?' \(Clip\)")):
        with pytest.raises(UserError) as err:
            fix(model)
        assert "the head cannot be taken off, as the doctor cannot see it" in str(err.value)
        assert re.search(shown, str(err.value)) and "\n" not in str(err.value)
    # Nothing is written over a file that is there.
    fixed = fix(examples.sigmoid())
    (tmp_path / "model.inference.keras").write_text("mine")
    with pytest.raises(UserError, match="exists already"):
        fixed.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.inference.keras"]
    assert (tmp_path / "model.inference.keras").read_text() == "mine"


# --- diagnose ---------------------------------------------------------------------------------------


def test_diagnose_measures_a_live_model_on_the_current_backend_and_renders_the_doctors_markdown():
    import keras

    model = examples.convnet()
    policy = keras.config.dtype_policy().name
    report = diagnose(model, precisions=["float32", "mixed_bfloat16"])
    backend = keras.backend.backend()
    assert [(r["backend"], r["precision"]) for r in report.rows] == [(backend, "float32"), (backend, "mixed_bfloat16")]
    float32, bfloat16 = report.rows
    assert float32["path"] == losses.formulation("softmax_ce").expected_path(backend)
    assert bfloat16["path"] == "clipped_probabilities" and bfloat16["how"].startswith("capped")
    assert report.verdict == "lossy" and report.report["lossy"] == [f"{backend} mixed_bfloat16"]
    assert "Remove the softmax from layer 'dense" in report.fix[0] and "from_logits=True" in report.fix[0]
    assert str(report) == doctor_report.render_markdown(report.report) == report._repr_markdown_()
    assert f"`{model.name} (in memory)`" in str(report) and "**Verdict: lossy**" in str(report)
    assert keras.config.dtype_policy().name == policy  # the session is left as it was
    # The fixed model is clean, on the same backend.
    assert diagnose(fix(model).logits_model, precisions=["float32", "mixed_bfloat16"]).verdict == "clean"


def test_diagnose_refuses_bad_input_in_one_line_and_changes_nothing():
    import keras

    inputs = keras.Input((4,))
    two_outputs = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax")(inputs),
                                       keras.layers.Dense(1)(inputs)])
    relu = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="features")])
    relu.compile(loss="categorical_crossentropy")
    uncompiled = examples.mobilenet()

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    cases = [
        (two_outputs, {}, "the model has 2 outputs; a classifier here has one output"),
        (relu, {}, "the output layer 'features' (Dense) ends in activation 'relu', not a classifier head"),
        (uncompiled, {}, "the model is not compiled; name the loss to examine with loss=<categorical_crossentropy"),
        (examples.convnet(), {"loss": "hinge"}, "^loss='hinge': valid choices: categorical_crossentropy"),
        (examples.convnet(), {"backends": ["theano"]}, "^backends='theano': valid choices: tensorflow"),
        (Subclassed(), {}, "is a subclassed model"),
        ([1, 2], {}, "^model_or_path: got a list; give a keras.Model or the path of a .keras file"),
        ("missing.keras", {}, "^checkpoint=missing.keras: no such file"),
    ]
    for model, options, message in cases:
        before = model.get_compile_config() if isinstance(model, keras.Model) else None
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            diagnose(model, **options)
        assert "\n" not in str(err.value)
        if before is not None:
            assert model.get_compile_config() == before
    assert not uncompiled.compiled


# --- the recipe: recipe.fix=true, then the strict check on what it wrote -----------------------------


@pytest.mark.slow(seconds=40)
def test_recipe_fix_writes_the_fixed_models_and_the_strict_check_clears_them(compose, tmp_path, capsys):
    original = tmp_path / "model.keras"
    examples.convnet().save(original)
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    run_dir = tmp_path / "run"
    cfg = compose("recipe=doctor", f"checkpoint={original}", "recipe.fix=true", "recipe.backends=[tensorflow]",
                  "recipe.precisions=[float32]")
    metrics = doctor.run(cfg, run_dir)
    assert metrics["fixed"]["logits_model"] == "model.logits.keras" and metrics["fixed"]["temperature"] == 1.0
    assert (metrics["fixed"]["loss"], metrics["fixed"]["optimizer"]) == ("CategoricalCrossentropy(from_logits=True)",
                                                                         "Adam")
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest  # the user's file as it was
    assert "**Fixed** (recipe.fix=true): `model.logits.keras`" in (run_dir / doctor_report.MARKDOWN_FILE).read_text()
    # The recipe measured in a child process; diagnose() measures here, without a fresh session: the same row.
    child = json.loads((run_dir / doctor_report.REPORT_FILE).read_text())["results"][0]
    here = diagnose(examples.convnet(), precisions=["float32"]).rows[0]
    if here["backend"] == "tensorflow":
        assert {k: v for k, v in child.items() if k not in ("seconds", "spec")} == \
               {k: v for k, v in here.items() if k not in ("seconds", "spec")}
    fixed = run_dir / "model.logits.keras"
    assert (run_dir / "model.inference.keras").is_file()
    # The strict check here, not through train.py (a child process would only add an import of TensorFlow; the
    # recipe measures in its own children either way): no SystemExit, and the verdict it prints.
    capsys.readouterr()
    strict = doctor.run(compose("recipe=doctor", f"checkpoint={fixed}", "recipe.backends=[tensorflow]",
                                "recipe.strict=true"), tmp_path / "strict")
    assert strict["verdict"] == "clean" and "verdict: clean" in capsys.readouterr().out
    report = json.loads((tmp_path / "strict" / doctor_report.REPORT_FILE).read_text())
    assert {r["precision"] for r in report["results"]} == set(doctor.diagnosis.PRECISIONS)


def test_recipe_fix_options_are_checked_before_anything_is_measured(compose, tmp_path):
    examples.save(tmp_path, ["lambda", "sigmoid"])
    cases = {
        ("lambda", "recipe.fix=true"): "the head cannot be taken off, as the doctor cannot see it",
        ("sigmoid", "recipe.calibrate=true"): "recipe.calibrate=true fits the T of the inference model that "
                                              "recipe.fix=true writes: set recipe.fix=true too",
        ("sigmoid", "recipe.fix=true", "recipe.calibrate=true"): "^recipe.calibrate=true: temperature scaling "
                                                                 "fits one softmax",
    }
    for (name, *overrides), message in cases.items():
        cfg = compose("recipe=doctor", f"checkpoint={tmp_path / name}.keras", *overrides)
        with pytest.raises(UserError, match=message):
            doctor.run(cfg, tmp_path / f"run_{name}")
        assert not (tmp_path / f"run_{name}").exists()
