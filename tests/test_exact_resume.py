"""Resume is exact: a run stopped after an epoch and resumed ends with the uninterrupted run's figures, bit for bit.

The cnn (its dropout draws random masks every step) via scripts/exact_resume.py, the
command that measures the same on the full-size run: on TensorFlow SIGKILLed (a lost
node), on JAX stopped with SIGINT (Ctrl-C). On TensorFlow the cnn is a model of yours,
the keras.io convnet as its example writes it (a whole model, its softmax Dense last):
the head taken off again by the resumed run, and recipe=evaluate on its run directory.
"""
import concurrent.futures
import json
import sys
from pathlib import Path

import pytest

from scripts.exact_resume import FIGURES, compare
from tests.conftest import jax_compile_cache
from tests.test_your_model import USER_MODELS

# Epochs of about a second on 2 cores; the run to stop holds after epoch 1 until the signal
# comes (tests/hold.py), so the stop lands there on a machine of any speed.
SMALL = ["model=cnn", "data.max_train_examples=256", "trainer.batch_size=32", "trainer.epochs=4", "seed=0",
         "trainer.threads=1"]


# (signal, backup every N epochs, stop after epoch, the model): on TensorFlow the backup is every 2 epochs and
# the run is killed after epoch 3, so the resumed run starts from epoch 2's backup and trains epoch 3 again.
STOPS = {"tensorflow": ("kill", 2, 3, ["model._target_=my_models.keras_io_convnet"]), "jax": ("int", 1, 1, [])}


@pytest.mark.slow(seconds=60)
def test_a_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    (user / "my_models.py").write_text(USER_MODELS)
    monkeypatch.setenv("PYTHONPATH", str(user))  # the runs import the model of yours from there
    # JAX's three runs, one after another, compile once (TensorFlow ignores the cache).
    for name, value in jax_compile_cache(tmp_path / "jax_cache").items():
        monkeypatch.setenv(name, value)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {backend: pool.submit(compare, tmp_path / backend, [*SMALL, f"trainer.backup_every={every}", *model],
                                        backend, after, how)
                   for backend, (how, every, after, model) in STOPS.items()}
        results = {backend: future.result() for backend, future in futures.items()}
    for backend, result in results.items():
        assert result["killed_after_epoch"] == STOPS[backend][2], backend
        assert result["resumed"]["resumed"] is True and result["resumed"]["epochs_completed"] == 4, backend
        resumed = {k: result["resumed"][k] for k in FIGURES}
        assert resumed == result["uninterrupted"], backend
        assert_resumed_run_is_whole(tmp_path / backend / "killed", 4)
    # Ctrl-C: the run says how to resume it and is recorded as interrupted until it is.
    assert "to resume" in results["jax"]["stopped_said"][0]
    interrupted = json.loads((tmp_path / "jax" / "killed" / "metrics.interrupted.json").read_text())
    assert interrupted["status"] == "interrupted"
    assert_your_model_resumed_and_evaluates(tmp_path / "tensorflow" / "killed", results["tensorflow"], monkeypatch)


def assert_your_model_resumed_and_evaluates(run_dir: Path, result: dict, monkeypatch) -> None:
    """The model of yours lost its softmax in the resumed run as in the first; recipe=evaluate on the run
    directory gives the run's own test figures."""
    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.recipes import evaluate

    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["model"] == "my_models.keras_io_convnet" and resumed["removed_head"]["kind"] == "softmax"
    monkeypatch.syspath_prepend(str(run_dir.parents[1] / "user"))
    try:
        again = evaluate.run(compose_train(["recipe=evaluate", f"checkpoint={run_dir}"]), run_dir.parent / "evaluated")
    finally:  # the next test's my_models is its own
        sys.modules.pop("my_models", None)
    assert again["test_accuracy"] == pytest.approx(result["uninterrupted"]["test_accuracy"], abs=1e-6)
    assert again["test_exact_ce"] == pytest.approx(result["uninterrupted"]["test_exact_ce"], rel=1e-4)


def assert_resumed_run_is_whole(run_dir: Path, epochs: int) -> None:
    """What a resumed run leaves: every epoch once in the history and in TensorBoard (the epochs trained again
    after an older backup replace the first attempt's), both models, no backup."""
    rows = [int(line.split(",")[0]) for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert rows == list(range(epochs))
    # TensorBoard: one point per epoch across both attempts, none duplicated or reset.
    assert tensor_steps(run_dir / "validation", "epoch_accuracy") == list(range(epochs))
    assert (run_dir / "best.keras").exists() and (run_dir / "last.keras").exists()
    assert not (run_dir / "backup").exists()  # removed once training finished


def tensor_steps(log_dir, tag):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    return sorted(e.step for e in mux.Tensors(".", tag))
