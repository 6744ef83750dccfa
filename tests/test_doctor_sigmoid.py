"""A sigmoid model in the doctor and the library, as a softmax one: binary (Dense(1, "sigmoid")), multi-label
(Dense(K, "sigmoid")) and Dense + Activation("sigmoid"), compiled with BinaryCrossentropy. The path per
backend (the registry's sigmoid family says which), the verdict, the fix, the fixed models, loss_path and
StabilityMonitor: `check_this_backend` asserts them all on the current backend, in this process and in a
child process per other backend; the recipe writes the fixed files of a saved sigmoid model."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.numerics import exact_binary_cross_entropy
from tests.conftest import INSTALLS, needs, project_env

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 4)).astype("float32")
FIXED_LOSS = "BinaryCrossentropy(from_logits=True)"
CONFIDENT = 30.0  # the logit of a confidently wrong unit (target 0): exact binary cross entropy 30
# What a clipped binary crossentropy gives it: -log(1 - p) at p = 1 - 1e-7 as float32 rounds it (about 15.94).
CAP = float(-np.log(1.0 - np.float64(np.float32(1.0) - np.float32(losses.CLIP_EPSILON))))


def sigmoid_models() -> dict:
    """The three ways to end in a sigmoid, each compiled with a binary crossentropy (object or name)."""
    import keras

    binary = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid", name="p")])
    multilabel = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid", name="p")])
    layer = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="z"),
                              keras.layers.Activation("sigmoid", name="p")])
    binary.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
    multilabel.compile(optimizer="adam", loss="binary_crossentropy")
    layer.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
    return {"binary": binary, "multilabel": multilabel, "activation layer": layer}


def expected(formulation: str) -> str:
    import keras

    return losses.formulation(formulation).expected_path(keras.backend.backend())


def outputs(model, x) -> np.ndarray:
    """`model` on `x`, called directly (predict would trace a function per model)."""
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def check_paths_verdicts_and_fix(model, precisions: list[str]) -> None:
    """loss_path, diagnose and fix on one sigmoid model compiled with BinaryCrossentropy()."""
    import keras

    from keras_loss_recipes import loss_path
    from keras_loss_recipes.recipes.doctor.diagnosis import diagnose
    from keras_loss_recipes.recipes.doctor.fix import fix
    from keras_loss_recipes.training.heads import find_head, live_config

    path = expected("sigmoid_bce")  # rescued_sigmoid on TensorFlow, clipped_probabilities on JAX and PyTorch
    check = loss_path(model)
    assert (check.path, check.lossy) == (path, path not in losses.EXACT_PATHS)
    assert (FIXED_LOSS in check.advice()) == check.lossy
    # A 16-bit sigmoid clips on every backend: the verdict is lossy and the fix is given everywhere.
    report = diagnose(model, precisions=precisions)
    assert [r["path"] for r in report.rows] == [path, *["clipped_probabilities"] * (len(precisions) - 1)]
    assert report.verdict == ("lossy" if check.lossy or len(precisions) > 1 else "clean")
    if report.verdict == "lossy":
        assert "Remove the sigmoid from layer 'p'" in report.fix[0] and FIXED_LOSS in report.fix[0]
        assert "keras.activations.sigmoid(model(x))" in report.fix[1]
    logits_model, loss, inference_model, temperature = fix(model)
    assert type(loss).__name__ == "BinaryCrossentropy" and loss.get_config()["from_logits"] and temperature == 1.0
    assert find_head(live_config(logits_model)).kind == "logits"
    x = X * 10  # logits of tens: sigmoids near 0 and 1 too
    probabilities = outputs(model, x)
    sigmoid = keras.ops.convert_to_numpy(keras.ops.sigmoid(outputs(logits_model, x)))
    np.testing.assert_allclose(sigmoid, probabilities, atol=1e-6)
    np.testing.assert_allclose(outputs(inference_model, x), probabilities, atol=1e-6)
    if len(precisions) > 1:  # the logits model is clean, in 16 bits too
        fixed = diagnose(logits_model, precisions=precisions)
        assert (fixed.verdict, {r["path"] for r in fixed.rows}, fixed.fix) == ("clean", {"fused_logits"}, [])


def check_the_mistakes() -> None:
    """from_logits=True on a sigmoid (a double sigmoid, which TensorFlow's Keras rescues) and from_logits
    forgotten on logits: the registry's paths, and the doctor's words."""
    import keras

    from keras_loss_recipes import loss_path
    from keras_loss_recipes.recipes.doctor.diagnosis import diagnose

    double = sigmoid_models()["multilabel"]
    double.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's Keras warns of a sigmoid fed to from_logits=True
        report = diagnose(double, precisions=["float32"])
        assert loss_path(double).path == report.rows[0]["path"] == expected("mistake_double_sigmoid")
    if report.verdict == "lossy":
        assert report.rows[0]["path"] == "double_sigmoid" and FIXED_LOSS in report.fix[0]
        assert "Remove the sigmoid from layer 'p'" in report.fix[0]
    forgotten = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="z")])
    forgotten.compile(loss="binary_crossentropy")
    report = diagnose(forgotten, precisions=["float32"])
    assert report.rows[0]["path"] == expected("mistake_bce_logits_as_probs") == "logits_as_probabilities"
    assert report.fix[0] == ("Layer 'z' outputs logits but the loss reads them as probabilities: compile with "
                             f"`{FIXED_LOSS}`.")
    assert "keras.activations.sigmoid" in loss_path(forgotten).advice()


def check_the_monitor() -> dict:
    """StabilityMonitor on a sigmoid model whose one unit says yes at logit 30 where the target is 0: the
    warning where the loss is clipped, and figures of sigmoid units (one SGD step at learning rate 0)."""
    import keras

    from keras_loss_recipes import LossPathWarning, StabilityMonitor

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid", name="p")])
    model.set_weights([np.zeros((4, 1), "float32"), np.full(1, CONFIDENT, "float32")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=keras.losses.BinaryCrossentropy())
    targets = np.zeros(len(X), "float32")  # (N,) targets of a (N, 1) output
    monitor = StabilityMonitor(probe=(X, targets))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, targets, epochs=1, batch_size=len(X), verbose=0, callbacks=[monitor])
    warned = [str(w.message) for w in caught if w.category is LossPathWarning]
    assert bool(warned) == monitor.lossy == (expected("sigmoid_bce") == "clipped_probabilities")
    assert all(FIXED_LOSS in message for message in warned)
    assert not [w for w in caught if "softmax" in str(w.message)]  # no softmax over the one unit
    figures = monitor.epochs[-1]
    exact = float(exact_binary_cross_entropy([[CONFIDENT]], [[0.0]])[0])
    assert figures["stability/exact_ce"] == pytest.approx(exact, rel=1e-6)
    assert figures["stability/logit_gap"] == figures["stability/logit_max_abs"] == pytest.approx(CONFIDENT)
    assert figures["stability/saturated_frac"] == 1.0  # sigmoid(30) is within 1e-7 of 1: the clip bites
    return {"loss": figures["stability/loss"], "loss_gap": figures["stability/loss_gap"], "warned": bool(warned)}


def check_this_backend() -> dict:
    """Every check above on the current backend; what the monitor saw, for the caller."""
    for name, model in sigmoid_models().items():
        check_paths_verdicts_and_fix(model, ["float32", "mixed_bfloat16"] if name == "activation layer" else ["float32"])
    check_the_mistakes()
    return check_the_monitor()


def test_a_sigmoid_model_in_the_doctor_and_the_library_here():
    import keras

    seen = check_this_backend()
    clipped = expected("sigmoid_bce") == "clipped_probabilities"
    # The clipped loss is capped at CAP; the rescued one is the exact 30: loss_gap says how far it fell short.
    assert seen["loss_gap"] == (pytest.approx(CAP - CONFIDENT, abs=1e-4) if clipped else pytest.approx(0, abs=1e-4))
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")


# JAX only: PyTorch takes the same clipped path through the same Keras code (keras/src/backend/*/nn.py
# binary_crossentropy); test_the_sigmoid_path_table_on_this_backend and the table's command cover the rest.
@pytest.mark.parametrize("backend", [pytest.param("jax", marks=[needs("jax", INSTALLS["jax"]),
                                                                pytest.mark.slow(seconds=25)])])
def test_a_sigmoid_model_on_another_backend(backend):
    """The same checks in a child process on JAX (the test process runs TensorFlow's)."""
    import keras

    if keras.backend.backend() == backend:
        pytest.skip(f"{backend} is this process's backend: the test above covers it")
    code = ("import json; from tests.test_doctor_sigmoid import check_this_backend; "
            "print('SEEN', json.dumps(check_this_backend()))")
    done = subprocess.run([sys.executable, "-c", code], env={**project_env(), "KERAS_BACKEND": backend},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.split("SEEN ", 1)[1])
    assert seen["warned"] and seen["loss_gap"] == pytest.approx(CAP - CONFIDENT, abs=1e-4)


@pytest.mark.slow(seconds=25)
def test_recipe_fix_writes_the_fixed_files_of_a_saved_sigmoid_model(compose, tmp_path):
    import keras

    from keras_loss_recipes.recipes import doctor
    from keras_loss_recipes.recipes.doctor.diagnosis import diagnose
    from keras_loss_recipes.reporting import doctor_report

    original = tmp_path / "multilabel.keras"
    model = sigmoid_models()["activation layer"]
    model.save(original)
    backend = keras.backend.backend()
    cfg = compose("recipe=doctor", f"checkpoint={original}", "recipe.fix=true", f"recipe.backends=[{backend}]",
                  "recipe.precisions=[float32]")
    metrics = doctor.run(cfg, tmp_path / "run")
    assert metrics["fixed"]["loss"] == FIXED_LOSS and metrics["fixed"]["activation"] == "sigmoid"
    report = json.loads((tmp_path / "run" / doctor_report.REPORT_FILE).read_text())
    assert report["results"][0]["path"] == expected("sigmoid_bce")
    logits_model = keras.models.load_model(tmp_path / "run" / metrics["fixed"]["logits_model"])
    inference_model = keras.models.load_model(tmp_path / "run" / metrics["fixed"]["inference_model"])
    x = X * 10
    probabilities = outputs(model, x)
    sigmoid = keras.ops.convert_to_numpy(keras.ops.sigmoid(outputs(logits_model, x)))
    np.testing.assert_allclose(sigmoid, probabilities, atol=1e-6)
    np.testing.assert_allclose(outputs(inference_model, x), probabilities, atol=1e-6)
    assert type(logits_model.loss).__name__ == "BinaryCrossentropy" and logits_model.loss.get_config()["from_logits"]
    assert diagnose(str(tmp_path / "run" / metrics["fixed"]["logits_model"]), precisions=["float32"]).verdict == "clean"


def test_the_sigmoid_path_table_on_this_backend():
    """python -m keras_loss_recipes.recipes.doctor.sigmoid_table's measurement, here: the registry's paths, the
    exact loss where the path is exact, the clip's caps where it clips (a child per backend prints it)."""
    import keras

    from keras_loss_recipes.recipes.doctor import sigmoid_table

    results = sigmoid_table.measure_cases()
    assert [r["case"] for r in results] == list(sigmoid_table.CASES)
    exact = [float(exact_binary_cross_entropy([[z]], [[t]])[0]) for z, t in sigmoid_table.EXAMPLES]
    capped = [CAP, float(-np.log(losses.CLIP_EPSILON)), CAP]  # target 0 caps at CAP, target 1 at -log(1e-7)
    for result in results:
        assert result["path"] == expected(result["case"])
        if result["exact"]:
            np.testing.assert_allclose(result["losses"], exact, rtol=1e-6)
        elif result["path"] in ("clipped_probabilities", "logits_as_probabilities"):
            np.testing.assert_allclose(result["losses"], capped, rtol=1e-5)
    rendered = sigmoid_table.table({keras.backend.backend(): results})
    assert "| exact (float64) | | 30, 30, 60 |" in rendered and "the registry expects" not in rendered
