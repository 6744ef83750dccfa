"""examples/plain_keras.py, keras.io's MNIST convnet with StabilityMonitor added, on each backend: the clipped
softmax warned about where Keras clips it (JAX, PyTorch), not where it is rescued (TensorFlow) nor once fixed."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT, each_backend, project_env

EXAMPLE = ROOT / "examples" / "plain_keras.py"
WARNING = "LossPathWarning: CategoricalCrossentropy() on this model computes probabilities clipped"
FIX = "compile with `CategoricalCrossentropy(from_logits=True)`"


# 142 images: validation_split=0.1 leaves 128 to train on, one whole batch of the example's 128, so JAX compiles
# its training step once (256 left a smaller last batch, a second compilation).
LIMIT = 142


def run_example(backend: str, log_dir, *args) -> str:
    # PYTHONPATH (project_env) stands in for the README's `pip install -e .`: the script lives in examples/,
    # so the clone's root is not on its sys.path by itself.
    done = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "1", "--limit", str(LIMIT), "--log-dir",
                           str(log_dir), *args], env={**project_env(), "KERAS_BACKEND": backend},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


# One run per backend: unchanged on TensorFlow (rescued: no warning) and JAX (clipped: the warning and the
# fix), and with the fix applied on PyTorch, which clips the unchanged softmax as JAX does (the doctor measures the
# convnet on every installed backend: tests/test_doctor.py).
@pytest.mark.parametrize("backend", each_backend(seconds=30))
def test_the_example_on_each_backend(backend, tmp_path):
    fixed = backend == "torch"
    out = run_example(backend, tmp_path, *(["--fixed"] if fixed else []))
    clipped = backend == "jax"
    assert (WARNING in out) == clipped and (FIX in out) == clipped
    if clipped:  # the warning points at the user's own model.fit line
        assert "examples/plain_keras.py:" in out.split(WARNING)[0].splitlines()[-1]
    assert "LossPathWarning" in out if clipped else "LossPathWarning" not in out
    assert "Test accuracy:" in out
    assert list((tmp_path / "train").glob("events.out.tfevents.*")), "no TensorBoard figures written"
