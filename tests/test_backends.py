"""Keras backends: the same recipes on JAX and PyTorch, with the loss path measured there (not assumed)."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend_driver import LOSS_PATHS
from tests.conftest import ROOT, TINY, needs, project_env
from keras_loss_recipes import losses
from keras_loss_recipes.runtime.workers import results_in
from tests.test_stability import COMPARED, STABILITY_TAGS, event_tags

# What the registry says each formulation does per backend; measured by the tests below.
EXPECTED = {backend: {name: losses.formulation(name).expected_path(backend) for name in losses.names()}
            for backend in losses.ALL_BACKENDS}


OTHER_BACKENDS = [
    pytest.param("jax", marks=needs("jax", "pip install -r requirements-jax.txt")),
    pytest.param("torch", marks=needs("torch", "pip install -r requirements-torch.txt")),
]

def run_env(args, backend_env=None, extra_env=None, **kw):
    env = project_env()
    env.pop("KERAS_BACKEND", None)
    if backend_env:
        env["KERAS_BACKEND"] = backend_env
    env.update(extra_env or {})
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)


def driver_result(driver: str, out_dir: Path, backend: str) -> dict:
    """Run `tests/<driver>.py OUT_DIR` on `backend` in a child process; the one `RESULT {...}` it printed."""
    result = run_env([sys.executable, str(ROOT / "tests" / f"{driver}.py"), str(out_dir)], backend_env=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def run_driver(backend: str, runs: dict, out_dir: Path, **env) -> dict:
    """Run `tests/backend_driver.py` on `backend`: {name: overrides} -> {name: metrics}."""
    result = run_env([sys.executable, str(ROOT / "tests" / "backend_driver.py"), str(out_dir), json.dumps(runs)],
                     backend_env=backend, extra_env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    [results] = results_in(result.stdout)
    return results


# TINY in batches that divide its 300 training and the 500 validation and test images (3 and 5 batches of
# 100): no smaller last batch, so JAX compiles each step once per run instead of twice (a third of a run's time).
WHOLE_BATCHES = [*TINY, "trainer.batch_size=100"]


def runs_on_other_backend(backend: str) -> tuple[list[str], dict, dict]:
    """The formulations `backend` trains, the driver's runs {name: overrides}, and its environment."""
    runs_here = [name for name, path in EXPECTED[backend].items() if path != "unsupported"]
    supported = [name for name in runs_here if name in losses.names("softmax")]
    runs = {name: [*WHOLE_BATCHES, f"loss={name}", "telemetry.every_n_steps=1"] for name in supported}
    # The sigmoid family trains nothing yet: its paths measured in the same process, without a recipe.
    runs[LOSS_PATHS] = [name for name in runs_here if name in losses.names("sigmoid")]
    runs["telemetry_off"] = [*WHOLE_BATCHES, "loss=sparse_from_logits", "telemetry=off"]
    if backend != "torch":  # Keras's PyTorch trainer takes one step per execution
        runs["two_steps_per_execution"] = [*WHOLE_BATCHES, "loss=sparse_from_logits", "trainer.steps_per_execution=2"]
    for policy in ("stop", "skip", "continue"):
        runs[policy] = [*WHOLE_BATCHES, "loss=naive", "stress.logit_scale=1000", "trainer.epochs=2",
                        f"trainer.on_nonfinite={policy}"]
    runs["probe"] = ["recipe=probe", "recipe.points=101", "recipe.dtypes=[float32]"]  # float16: test_stability
    env = {"BLOCK_TENSORFLOW": "1"}
    if backend == "jax":
        # Two host CPU devices for keras.distribution.DataParallel; the other runs use one.
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        runs["data_parallel"] = [*runs["sparse_from_logits"], "trainer.distribution=data_parallel"]
    return supported, runs, env


# JAX compiles every run's step: its half is the longest test of the suite but one.
@pytest.mark.parametrize("backend", [
    pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow(seconds={"jax": 80}.get(p.values[0], 30))])
    for p in OTHER_BACKENDS])
def test_every_formulation_trains_with_telemetry_and_the_nonfinite_policies(backend, tmp_path):
    """One child process per backend, with `import tensorflow` blocked: nothing here may need it."""
    supported, runs, env = runs_on_other_backend(backend)
    # A user's own model, from a module of theirs: its softmax taken off, then each loss decides.
    from tests.test_your_model import USER_MODELS

    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "my_models.py").write_text(USER_MODELS)
    env["PYTHONPATH"] = str(tmp_path / "user")
    # Mixed precision on its softmax_ce run (softmax_ce's float32 path is measured on the mlp below).
    runs["mixed"] = [*WHOLE_BATCHES, "model._target_=my_models.softmax_model", "loss=softmax_ce",
                     "trainer.precision=mixed_float16"]
    runs["yours_mixed_stressed"] = [*WHOLE_BATCHES, "model._target_=my_models.softmax_model", "loss=sparse_from_logits",
                                    "trainer.precision=mixed_float16", "stress.logit_scale=300"]
    out = run_driver(backend, runs, tmp_path, **env)
    for name, path in (("mixed", EXPECTED[backend]["softmax_ce"]), ("yours_mixed_stressed", "fused_logits")):
        assert (out[name]["status"], out[name]["loss_path"], out[name]["removed_head"]["kind"]) == (
            "ok", path, "softmax"), name

    assert out[LOSS_PATHS] == {name: EXPECTED[backend][name] for name in runs[LOSS_PATHS]}
    assert {"sigmoid_bce", "mistake_double_sigmoid"} <= set(out[LOSS_PATHS])
    for name in supported:
        m = out[name]
        assert (m["status"], m["backend"], m["telemetry"]) == ("ok", backend, True), name
        assert m["loss_path"] == EXPECTED[backend][name], name
        train = event_tags(tmp_path / name / "train")
        assert STABILITY_TAGS <= set(train.Tags()["tensors"]), name
        assert len(train.Tensors("stability_steps/logit_gap")) == 3  # 300 images, batch 100
        assert "epoch_accuracy" in event_tags(tmp_path / name / "validation").Tags()["tensors"], name
        assert "_hparams_/session_start_info" in event_tags(tmp_path / name).Tags()["tensors"], name
    # The figures are the same kind of numbers as on TensorFlow: no saturation on a tiny run,
    # the reported loss is the exact cross entropy, gradients flow.
    st = out["sparse_from_logits"]["stability"]
    assert abs(st["stability/loss_gap"]) < 1e-4 and st["stability/saturated_frac"] == 0.0
    assert st["stability/grad_norm"] > 0 and st["stability/logit_grad_norm"] > 0
    assert out["sparse_from_logits"]["test_accuracy"] > 0.3
    # The same dashboards as with TensorFlow's own TensorBoard callback, without TensorFlow.
    assert {"epoch_accuracy", "epoch_loss"} <= set(event_tags(tmp_path / "sparse_from_logits" / "train").Tags()["tensors"])
    assert "final/test_accuracy" in event_tags(tmp_path / "sparse_from_logits").Tags()["tensors"]
    # Telemetry does not change what is trained.
    assert [out["telemetry_off"][k] for k in COMPARED] == [out["sparse_from_logits"][k] for k in COMPARED]
    assert out["telemetry_off"]["stability"] == {}
    # Nor do several steps per call into the backend.
    if backend != "torch":
        two = out["two_steps_per_execution"]
        # As compiled: 2 reached Keras (equal figures alone would pass with the option ignored).
        assert (two["fit_steps_per_execution"], out["sparse_from_logits"]["fit_steps_per_execution"]) == ([2], [1])
        assert [two[k] for k in COMPARED] == [out["sparse_from_logits"][k] for k in COMPARED]
        assert two["stability"] == out["sparse_from_logits"]["stability"]

    # The NaN/inf policies behave as on TensorFlow (tests/test_stability.py).
    for policy, status, steps in (("stop", "diverged", 1), ("skip", "ok", 6), ("continue", "ok", 6)):
        m = out[policy]
        assert (m["status"], m["nonfinite_steps"], m["first_nonfinite"]) == (status, steps, {"epoch": 1, "step": 1})
    assert out["stop"]["epochs_completed"] == 0
    # Mixed precision (on your model, its softmax taken off): Keras's loss-scale optimizer through this
    # backend's step; still no rescue.
    mixed = out["mixed"]
    assert (mixed["status"], mixed["loss_path"], mixed["stability"]["stability/loss_scale"]) == (
        "ok", EXPECTED[backend]["softmax_ce"], 32768.0)
    # stop and skip keep NaN updates out of the weights; continue lets them in.
    assert math.isfinite(out["skip"]["test_exact_ce"]) and not math.isfinite(out["continue"]["test_exact_ce"])

    # The probe: without TensorFlow's rescue, softmax_ce fails where clipped_probs does (the clip, at
    # a gap of about 17); naive fails near 88 (JAX flushes subnormals; PyTorch's CPU exp keeps them
    # and it lasts until about 102); the logits formulations stay exact.
    first = {(f["dtype"], f["loss"]): f["first_bad_gap"] for f in out["probe"]["failures"]}
    assert 16 <= first[("float32", "softmax_ce")] <= 19 and 16 <= first[("float32", "clipped_probs")] <= 19
    assert first[("float32", "from_logits")] is None and first[("float32", "sparse_from_logits")] is None
    assert 84 <= first[("float32", "naive")] <= 104
    # The sigmoid family, one logit per example: sigmoid_bce clips as bce_clipped_probs does (15.94, near 16).
    assert first[("float32", "sigmoid_bce")] == first[("float32", "bce_clipped_probs")] == 16
    assert first[("float32", "bce_from_logits")] is None

    if backend == "jax":
        # DataParallel over 2 host devices matches one device.
        one, two = out["sparse_from_logits"], out["data_parallel"]
        assert (one["replicas"], two["replicas"]) == (1, 2)
        for key in ("val_accuracy", "test_accuracy", "test_exact_ce"):
            assert two[key] == pytest.approx(one[key], abs=1e-4), key
        for key, value in one["stability"].items():
            assert two["stability"][key] == pytest.approx(value, rel=1e-3, abs=1e-5), key


@pytest.mark.slow
@needs("jax", "requirements-jax.txt")
def test_tfds_data_without_tensorflow_says_what_to_install(tmp_path):
    result = run_env([sys.executable, str(ROOT / "tests" / "backend_driver.py"), str(tmp_path),
                      json.dumps({"run": [*TINY, "data=fashion_mnist"]})],
                     backend_env="jax", extra_env={"BLOCK_TENSORFLOW": "1"})
    assert result.returncode != 0
    assert "data=fashion_mnist needs tensorflow-datasets and TensorFlow" in result.stderr


def test_a_missing_backend_points_to_what_its_requirements_file_recommends(monkeypatch):
    from keras_loss_recipes.runtime import backends
    from keras_loss_recipes.runtime.errors import UserError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    with pytest.raises(UserError) as err:
        backends.require_installed("torch")
    recommended = [line.lstrip("# ") for line in (ROOT / "requirements-torch.txt").read_text().splitlines()
                   if line.lstrip("# ").startswith("pip install")]
    assert recommended and "whl/cpu" in recommended[0]  # the CPU-only wheel, not PyPI's CUDA build
    assert str(err.value) == (f"backend=torch: the torch package is not installed; "
                              f"requirements-torch.txt recommends: {recommended[0]}")


def test_keras_backend_from_the_environment_is_the_default(compose, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert compose().backend == "jax"
    assert compose("backend=torch").backend == "torch"  # the command line wins
    monkeypatch.delenv("KERAS_BACKEND")
    assert compose().backend == "tensorflow"


@pytest.mark.slow(seconds=40)
@needs("jax", "requirements-jax.txt")
def test_compare_backends_preset_reports_the_rescue_difference(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_env([sys.executable, str(ROOT / "train.py"), "experiment=compare_backends", "loss=softmax_ce",
                      *WHOLE_BATCHES, f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr[-3000:]
    table = (sweep / "comparison.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| backend=")}
    assert set(rows) == {"backend=tensorflow", "backend=jax"}, table
    assert "rescued_softmax" in rows["backend=tensorflow"] and "clipped_probabilities" in rows["backend=jax"]
    assert (sweep / "comparison.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["backend=nope"], "error: backend='nope': valid choices: tensorflow, jax, torch"),
        (["backend=jax", "loss=tf_nn_logits"], "error: loss=tf_nn_logits: loss 'tf_nn_logits' needs the tensorflow backend"),
        (["backend=tensorflow", "trainer.distribution=data_parallel"],
         "error: trainer.distribution=data_parallel needs backend=jax, not tensorflow"),
    ],
)
def test_backend_errors_are_one_line(tmp_path, args, message):
    result = run_env([sys.executable, str(ROOT / "train.py"), *TINY, *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert any(line.startswith(message) for line in result.stderr.splitlines()), result.stderr[-1000:]
