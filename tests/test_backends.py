"""Keras backends: the same recipes on JAX, with the loss path measured there (not assumed)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, project_env
from tests.test_paths import EXPECTED_ON_TENSORFLOW

# Measured on JAX (CPU): without TensorFlow's softmax rescue, a softmax head is the clipped path.
EXPECTED_ON_JAX = {
    **EXPECTED_ON_TENSORFLOW,
    "softmax_ce": "clipped_probabilities",
    "sparse_softmax": "clipped_probabilities",
    "mistake_double_softmax": "double_softmax",
    "tf_nn_logits": "unsupported",
    "tf_nn_sparse_logits": "unsupported",
}

PATHS_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import keras, losses
from losses.paths import detect_loss_path
out = {}
for name in losses.names():
    setup = losses.get(name)
    if keras.backend.backend() not in setup.formulation.backends:
        out[name] = "unsupported"
    else:
        out[name] = detect_loss_path(setup).path
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "paths": out}))
"""


def run_env(args, backend_env=None, **kw):
    env = project_env()
    env.pop("KERAS_BACKEND", None)
    if backend_env:
        env["KERAS_BACKEND"] = backend_env
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)


def readme_backend_table() -> dict:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        known = set(EXPECTED_ON_JAX.values()) | set(EXPECTED_ON_TENSORFLOW.values())
        if len(cells) == 3 and cells[0].startswith("`") and cells[1] in known and cells[2] in known:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_readme_table_of_paths_per_backend_is_the_measured_one():
    table = readme_backend_table()
    assert table == {name: (EXPECTED_ON_TENSORFLOW[name], EXPECTED_ON_JAX[name]) for name in EXPECTED_ON_JAX}


@pytest.mark.slow
def test_loss_paths_measured_on_jax():
    pytest.importorskip("jax")
    result = run_env([sys.executable, "-c", PATHS_DRIVER, str(ROOT)], backend_env="jax")
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert out["backend"] == "jax"
    assert out["paths"] == EXPECTED_ON_JAX


@pytest.mark.slow
def test_training_on_jax_measures_the_clipped_path_of_a_softmax_head(tmp_path):
    pytest.importorskip("jax")
    sweep = tmp_path / "sweep"
    # KERAS_BACKEND in the environment is the config's default backend.
    result = run_env([sys.executable, str(ROOT / "train.py"), "-m", *TINY, "loss=softmax_ce,sparse_from_logits",
                      f"hydra.sweep.dir={sweep}"], backend_env="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {m["loss"]: m for m in (json.loads(p.read_text()) for p in sweep.glob("*/metrics.json"))}
    assert {m["backend"] for m in runs.values()} == {"jax"}
    assert runs["softmax_ce"]["loss_path"] == "clipped_probabilities" and runs["softmax_ce"]["warnings"]
    assert runs["sparse_from_logits"]["loss_path"] == "fused_logits"
    assert all(m["status"] == "ok" and m["test_accuracy"] > 0.3 and m["telemetry"] is False for m in runs.values())
    assert all(list((sweep / name / "train").glob("events.out.tfevents.*")) for name in
               (p.parent.name for p in sweep.glob("*/metrics.json")))
    assert "backend" in (sweep / "comparison.csv").read_text().splitlines()[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["backend=nope"], "error: backend='nope': valid choices: tensorflow, jax, torch"),
        (["backend=jax", "loss=tf_nn_logits"], "error: loss=tf_nn_logits: loss 'tf_nn_logits' needs the tensorflow backend"),
        (["backend=jax", "recipe=probe"], "error: recipe=probe runs on backend=tensorflow only, not jax"),
    ],
)
def test_backend_errors_are_one_line(tmp_path, args, message):
    result = run_env([sys.executable, str(ROOT / "train.py"), *TINY, *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert any(line.startswith(message) for line in result.stderr.splitlines()), result.stderr[-1000:]
