"""The loss doctor on models this project did not design, on every installed backend; its errors and its docs page."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.keras_losses import parse
from keras_loss_recipes.losses.paths import binary_candidate_losses, binary_probe_batches, classify, probe_batches
from keras_loss_recipes.recipes import doctor
from keras_loss_recipes.recipes.doctor import diagnosis
from keras_loss_recipes.reporting import doctor_report
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import find_head
from tests.conftest import ROOT, needs, once_per_run

# The largest loss each clipped path can report: -log(1e-7) for a softmax, and for a sigmoid unit with
# target 0 -log(1 - p) at p = 1 - 1e-7 as float32 rounds it.
SOFTMAX_CAP = float(-np.log(losses.CLIP_EPSILON))
SIGMOID_CAP = float(-np.log(1.0 - np.float64(np.float32(1.0) - np.float32(losses.CLIP_EPSILON))))
# What each example is examined with: the convnet also in a mixed policy, the others in float32 (test time).
EXAMINED = {
    "convnet": {"precisions": ["float32", "mixed_float16"]},
    "mobilenet": {"loss": "categorical_crossentropy", "precisions": ["float32"]},  # saved uncompiled
    "sigmoid": {"precisions": ["float32"]},
    "logits": {"precisions": ["float32"]},
    "lambda": {"precisions": ["float32"]},
    "reshaped": {"precisions": ["float32"]},
}


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """The example models of keras_loss_recipes.recipes.doctor.examples, saved once for all workers."""
    from keras_loss_recipes.recipes.doctor.examples import save

    def make(directory: Path) -> dict:
        return {name: str(path) for name, path in save(directory).items()}

    return {name: Path(path) for name, path in once_per_run(tmp_path_factory, "doctor_models", make)[1].items()}


@pytest.fixture(scope="session")
def reports(examples, tmp_path_factory):
    """The doctor's report on every example (once for all workers): one child process per installed
    backend examines them all."""

    def make(work: Path) -> dict:
        plans = [doctor.plan(examples[name], doctor.options(**options)) for name, options in EXAMINED.items()]
        return dict(zip(EXAMINED, doctor.examine(plans, work, list(EXAMINED))))

    return once_per_run(tmp_path_factory, "doctor_reports", make)[1]


def by_backend(report: dict, precision: str = "float32") -> dict[str, dict]:
    return {r["backend"]: r for r in report["results"] if r["precision"] == precision}


# --- the graph: heads, logits and losses, read without running the model ---------------------


def test_the_head_and_logits_of_each_example_come_from_its_graph(examples):
    heads = {name: doctor.plan(path, doctor.options(**EXAMINED[name])).model.head for name, path in examples.items()}
    assert (heads["convnet"].kind, heads["convnet"].layer_class, heads["convnet"].width) == ("softmax", "Dense", 10)
    assert heads["convnet"].activation_in_layer and heads["convnet"].logits_from == heads["convnet"].layer
    mobilenet = heads["mobilenet"]  # keras.applications: Conv2D "logits" -> Flatten -> Activation "predictions"
    assert (mobilenet.kind, mobilenet.layer, mobilenet.layer_class) == ("softmax", "predictions", "Activation")
    assert not mobilenet.activation_in_layer and mobilenet.logits_from.startswith("flatten")
    assert (heads["sigmoid"].kind, heads["sigmoid"].width) == ("sigmoid", 1)
    assert heads["logits"].kind == "logits"
    assert heads["lambda"].kind == "unknown" and "Lambda" in heads["lambda"].reason


def test_the_loss_is_the_compiled_one_unless_the_command_line_names_one(examples):
    assert doctor.plan(examples["convnet"], doctor.options()).loss == parse("CategoricalCrossentropy")
    assert doctor.plan(examples["logits"], doctor.options()).loss == parse("SparseCategoricalCrossentropy", from_logits=True)
    chosen = doctor.plan(examples["convnet"], doctor.options(loss="categorical_crossentropy", from_logits=True))
    assert (chosen.loss.from_logits, chosen.loss_source) == (True, "recipe.loss")
    overridden = doctor.plan(examples["logits"], doctor.options(from_logits=False))
    assert not overridden.loss.from_logits and overridden.loss_source.endswith("from_logits by recipe.from_logits")


def copy_with_config(source, target, change) -> None:
    """A copy of a .keras file whose config.json went through `change` (the weights are left out)."""
    config = json.loads(zipfile.ZipFile(source).read("config.json"))
    change(config)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("config.json", json.dumps(config))


def test_bad_input_is_one_error_naming_the_value_and_the_choices(examples, tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("weights.h5", "")
    mse = tmp_path / "mse.keras"
    copy_with_config(examples["convnet"], mse, lambda c: c["compile_config"].update(loss="mean_squared_error"))
    relu = tmp_path / "relu.keras"
    copy_with_config(examples["convnet"], relu, lambda c: c["config"]["layers"][-1]["config"].update(activation="relu"))
    h5 = tmp_path / "model.h5"
    h5.write_text("")
    cases = {
        (text, None): "not a zip archive",
        (empty, None): "holds no config.json",
        (h5, None): "not a .keras model file",
        (tmp_path / "missing.keras", None): "no such file",
        (mse, None): "'mean_squared_error': the doctor knows categorical_crossentropy",
        (relu, None): "ends in activation 'relu', not a classifier head",
        (examples["mobilenet"], None): "saved without a compiled loss; name the loss to examine with recipe.loss=",
        (examples["convnet"], "hinge"): "recipe.loss='hinge': valid choices: categorical_crossentropy",
        (examples["sigmoid"], "categorical_crossentropy"): "does not fit the model's sigmoid output",
    }
    for (path, loss), message in cases.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            doctor.plan(doctor.model_file(path), doctor.options(loss=loss))
    with pytest.raises(UserError, match="recipe.precisions='float64': valid choices: float32, mixed_float16"):
        doctor.plan(examples["convnet"], doctor.options(precisions=["float64"]))


def test_a_softmax_layer_pinned_to_float32_in_a_nested_mixed_precision_model():
    def policy(name):
        return {"class_name": "DTypePolicy", "config": {"name": name}}

    inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [
        {"class_name": "Dense", "config": {"name": "scores", "units": 3, "dtype": policy("mixed_float16")}},
        {"class_name": "Softmax", "config": {"name": "probs", "axis": -1, "dtype": policy("float32")}}]}}
    outer = {"class_name": "Functional", "config": {"name": "outer", "output_layers": [["inner", 0, 0]],
                                                    "layers": [{**inner, "name": "inner"}]}}
    head = find_head(outer)
    assert (head.kind, head.layer, head.logits_from, head.width) == ("softmax", "probs", "scores", 3)
    assert head.pinned and head.dtype == "float32"  # the worker keeps it in float32 under a mixed policy


def test_a_model_with_several_outputs_is_refused():
    model = {"class_name": "Functional", "config": {"name": "two", "output_layers": [["a", 0, 0], ["b", 0, 0]],
                                                    "layers": [{"class_name": "Dense", "config": {"name": "a"}}]}}
    with pytest.raises(UserError, match="has 2 outputs"):
        find_head(model)
    # Each caller names the place as the user wrote it: a file, or the model config of a training run.
    with pytest.raises(UserError, match=r"^model._target_=my_models.two: the model has 2 outputs"):
        find_head(model, "model._target_=my_models.two")


# --- the measurement: a binary loss next to the softmax one ---------------------------------


def test_binary_probes_tell_the_paths_apart():
    batches = binary_probe_batches(3)
    candidates = [binary_candidate_losses(z, y) for z, y in batches]
    exact = [c["exact"] for c in candidates]
    assert exact[1] == pytest.approx((200 + 2 * np.log(2)) / 3)  # unit 0 at logit 200, target 0; 2 units at 0
    assert candidates[1]["clipped_probabilities"] == pytest.approx((SIGMOID_CAP + 2 * np.log(2)) / 3, rel=1e-6)
    assert classify("sigmoid", exact, candidates) == "rescued_sigmoid"
    assert classify("logits", exact, candidates) == "fused_logits"
    for name in ("clipped_probabilities", "logits_as_probabilities", "double_sigmoid"):
        assert classify("sigmoid", [c[name] for c in candidates], candidates) == name
    moderate, true_class = probe_batches(2)[0]
    assert moderate.tolist() == [[2.0, 1.0]] and true_class.tolist() == [1]  # two classes still tell them apart


def test_a_sigmoid_head_is_measured_in_this_process():
    import keras

    from keras_loss_recipes.losses.paths import detect_loss_path, sweep_gaps

    setup = parse("binary_crossentropy").setup("sigmoid")
    exact_path = "rescued_sigmoid" if keras.backend.backend() == "tensorflow" else "clipped_probabilities"
    assert detect_loss_path(setup, head=keras.layers.Activation("sigmoid"), num_classes=1).path == exact_path
    # A float16 sigmoid is clipped on every backend (and matched within float16's rounding).
    half = keras.layers.Activation("sigmoid", dtype="float16")
    assert detect_loss_path(setup, head=half, num_classes=1).path == "clipped_probabilities"
    curve = sweep_gaps(setup, "float16", 1, head=half, loss_dtype="float32")
    assert curve.values[-1] == pytest.approx(SIGMOID_CAP, rel=1e-3) and curve.grad_norms[-1] == 0.0
    assert curve.first_dead_gradient() is not None and curve.first_dead_gradient() < 20


# --- the reports, measured on every installed backend -----------------------------------------


@pytest.mark.slow(seconds=25)
def test_a_softmax_behind_a_reshape_is_seen_and_is_clipped_on_every_backend(reports):
    """The Reshape is seen through to the softmax; on TensorFlow an op after the softmax keeps Keras from
    rescuing it, so it is the clipped path there too, not `unknown`."""
    report = reports["reshaped"]
    assert (report["head"]["kind"], report["head"]["layer"]) == ("softmax", "probs")
    assert [a["class_name"] for a in report["head"]["after"]] == ["Reshape"]
    assert {r["backend"]: r["path"] for r in report["results"]} == {
        b: "clipped_probabilities" for b in doctor.installed_backends()}
    assert report["verdict"] == "lossy"


@pytest.mark.slow(seconds=25)
def test_softmax_heads_are_exact_only_where_keras_rescues_them(reports):
    """The keras.io convnet and the Keras Applications model take the registry's softmax_ce path, per backend."""
    for name in ("convnet", "mobilenet"):
        report = reports[name]
        for r in report["results"]:
            # A float32 softmax is softmax_ce; in a mixed policy the softmax computes in 16 bits and clips.
            expected = (losses.formulation("softmax_ce").expected_path(r["backend"])
                        if r["precision"] == "float32" else "clipped_probabilities")
            assert r["path"] == expected, (name, r)
            if expected == "clipped_probabilities":
                assert r["loss_at_max_gap"] == pytest.approx(SOFTMAX_CAP, rel=1e-3)
                assert r["how"].startswith("capped") and abs(r["departs_from_gap"] - SOFTMAX_CAP) < 2
                assert r["gradient_dies_from_gap"] <= r["departs_from_gap"] and r["grad_at_max_gap"] == 0.0
            else:
                assert r["departs_from_gap"] is None and r["gradient_dies_from_gap"] is None
                assert r["loss_at_max_gap"] == pytest.approx(r["exact_at_max_gap"], rel=1e-5)
        assert report["verdict"] == "lossy" and report["lossy"]
        fix = " ".join(report["fix"])
        assert f"layer '{report['head']['layer']}'" in fix and "CategoricalCrossentropy(from_logits=True)" in fix
        assert "keras.activations.softmax(model(x))" in fix
    assert {r["precision"] for r in reports["convnet"]["results"]} == {"float32", "mixed_float16"}
    assert "Dense(..., activation=None)" in " ".join(reports["convnet"]["fix"])
    assert "classifier_activation=None" in " ".join(reports["mobilenet"]["fix"])


@pytest.mark.slow
def test_a_sigmoid_classifier_is_rescued_on_tensorflow_only(reports):
    report = reports["sigmoid"]
    for backend, r in by_backend(report).items():
        if backend == "tensorflow":
            assert r["path"] == "rescued_sigmoid" and r["departs_from_gap"] is None
        else:
            assert r["path"] == "clipped_probabilities"
            assert r["loss_at_max_gap"] == pytest.approx(SIGMOID_CAP, rel=1e-3)
            assert r["gradient_dies_from_gap"] is not None and r["grad_at_max_gap"] == 0.0
    assert "BinaryCrossentropy(from_logits=True)" in " ".join(report["fix"])
    assert "keras.activations.sigmoid" in " ".join(report["fix"])


@pytest.mark.slow
def test_a_logits_model_is_clean_and_a_hidden_softmax_is_unknown(reports):
    clean = reports["logits"]
    assert {r["path"] for r in clean["results"]} == {losses.formulation("sparse_from_logits").expected_path("jax")}
    assert all(r["departs_from_gap"] is None for r in clean["results"])
    assert (clean["verdict"], clean["fix"]) == ("clean", [])
    hidden = reports["lambda"]
    assert {r["path"] for r in hidden["results"]} == {"unknown"}
    assert hidden["verdict"] == "unknown" and "Lambda" in hidden["fix"][0]
    # Every installed backend answered for every example.
    assert {r["backend"] for r in hidden["results"]} == set(doctor.installed_backends())


@pytest.mark.slow(seconds=15)
def test_strict_mode_exits_1_on_a_model_it_cannot_clear_and_writes_the_report(examples, train_cli, tmp_path):
    """From the command line, as in a user's CI: the hidden softmax is not cleared (and costs no measurement)."""
    result = train_cli("recipe=doctor", f"checkpoint={examples['lambda']}", "recipe.precisions=[float32]",
                       "recipe.strict=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == doctor.STRICT_EXIT, result.stderr[-2000:]
    assert "verdict: unknown" in result.stdout and "recipe.strict=true" in result.stderr.splitlines()[-1]
    report = json.loads((tmp_path / doctor_report.REPORT_FILE).read_text())
    assert report["verdict"] == "unknown" and {r["backend"] for r in report["results"]} == set(doctor.installed_backends())
    assert (tmp_path / doctor_report.MARKDOWN_FILE).read_text() == doctor_report.render_markdown(report)
    assert json.loads((tmp_path / "metrics.json").read_text())["verdict"] == "unknown"
    from tests.test_stability import event_tags

    assert "doctor/report" in event_tags(tmp_path / doctor_report.TENSORBOARD_DIR).Tags()["tensors"]


@pytest.mark.slow
@needs("jax", "pip install -r requirements-jax.txt: it examines the model on JAX")
def test_strict_mode_lets_a_clean_model_through(examples, compose, tmp_path):
    cfg = compose("recipe=doctor", f"checkpoint={examples['logits']}", "recipe.backends=[jax]",
                  "recipe.precisions=[float32]", "recipe.strict=true")
    assert doctor.run(cfg, tmp_path)["verdict"] == "clean"  # no SystemExit


def test_the_docs_page_is_the_rendering_of_its_stored_report():
    """docs/doctor.md is what `python -m keras_loss_recipes.recipes.doctor --docs` renders from docs/doctor.json."""
    report = json.loads((ROOT / "docs" / doctor_report.REPORT_FILE).read_text())
    assert (ROOT / "docs" / doctor_report.MARKDOWN_FILE).read_text() == doctor_report.render_docs_page(report)
    assert report["checkpoint"] == f"{doctor.DOCS_EXAMPLE}.keras" and report["verdict"] in ("lossy", "clean")
    assert "docs/doctor.md" in (ROOT / "README.md").read_text()


def test_the_doctor_says_which_backends_it_skipped_and_why(monkeypatch):
    monkeypatch.setattr(diagnosis, "installed_backends", lambda: ["tensorflow", "torch"])
    lines = doctor.skipped_backends(["tensorflow"])
    assert lines[0].startswith("skipped jax: not installed (requirements-jax.txt recommends: pip install")
    assert lines[1:] == ["skipped torch: not in recipe.backends"]
    assert doctor.skipped_backends(["tensorflow", "torch"]) == lines[:1]
