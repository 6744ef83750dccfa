"""Resume is exact: a run SIGKILLed after an epoch and resumed ends with the uninterrupted run's figures, bit for bit.

The cnn (its dropout draws random masks every step) on TensorFlow and JAX, via
scripts/exact_resume.py, the command that measures the same on the full-size run.
"""
import concurrent.futures

import pytest

from scripts.exact_resume import FIGURES, compare
from tests.test_reliability import assert_resumed_run_is_whole

# Epochs of about a second on 2 cores, so the kill lands between epoch 1 and the end.
SMALL = ["model=cnn", "data.max_train_examples=500", "trainer.batch_size=32", "trainer.epochs=4", "seed=0",
         "trainer.threads=1"]


@pytest.mark.slow
def test_a_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {backend: pool.submit(compare, tmp_path / backend, SMALL, backend, 1)
                   for backend in ("tensorflow", "jax")}
        results = {backend: future.result() for backend, future in futures.items()}
    for backend, result in results.items():
        assert 1 <= result["killed_after_epoch"] < 4, backend
        assert result["resumed"]["resumed"] is True and result["resumed"]["epochs_completed"] == 4, backend
        resumed = {k: result["resumed"][k] for k in FIGURES}
        assert resumed == result["uninterrupted"], backend
        assert_resumed_run_is_whole(tmp_path / backend / "killed", 4)
