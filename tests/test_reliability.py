"""Reliability: overwrite, saved models, evaluate, bad input, real TensorBoard.

Resume after SIGKILL and Ctrl-C, bit for bit: tests/test_exact_resume.py.
"""
import json

import numpy as np
import pytest

from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import TINY


def test_overwrite_moves_the_earlier_run_aside(compose, tmp_path):
    run_dir = tmp_path / "run"
    first = train_recipe.run(compose(*TINY), run_dir)
    second = train_recipe.run(compose(*TINY, "seed=1", "trainer.overwrite=true"), run_dir)
    [previous] = tmp_path.glob("run.previous-*")
    assert json.loads((previous / "metrics.json").read_text())["seed"] == first["seed"] == 0
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == second["seed"] == 1


def test_best_and_last_models_and_evaluate_agree_with_the_run(compose, tmp_path):
    from keras_loss_recipes.recipes import evaluate

    run = train_recipe.run(compose(*TINY, "loss=softmax_ce", "trainer.epochs=2"), tmp_path / "run")
    assert (tmp_path / "run" / "best.keras").exists() and (tmp_path / "run" / "last.keras").exists()
    assert run["test_ece"] is not None and 0 <= run["test_ece"] <= 1
    cfg = compose(*TINY, "recipe=evaluate", f"checkpoint={tmp_path / 'run' / 'last.keras'}")
    result = evaluate.run(cfg, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved == result
    assert result["test_accuracy"] == pytest.approx(run["test_accuracy"], abs=1e-6)
    assert result["test_exact_ce"] == pytest.approx(run["test_exact_ce"], rel=1e-5)
    assert result["test_ece"] == pytest.approx(run["test_ece"], rel=1e-5)
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 5000
    # The run names the model its test figures belong to, and the best epoch's model beside it.
    assert run["test_model"] == "last.keras"
    assert run["best_model"]["file"] == "best.keras" and run["best_model"]["epoch"] in (1, 2)
    assert run["best_model"]["val_accuracy"] == max(run["history"]["val_accuracy"])
    # Evaluating the run directory with the defaults gives the run's own numbers (its last.keras).
    result_dir = evaluate.run(compose(*TINY, "recipe=evaluate", f"checkpoint={tmp_path / 'run'}"), tmp_path / "eval2")
    assert result_dir["model_file"] == "last.keras"
    assert round(result_dir["test_accuracy"], 4) == round(run["test_accuracy"], 4)
    assert round(result_dir["test_exact_ce"], 4) == round(run["test_exact_ce"], 4)
    best = evaluate.run(compose(*TINY, "recipe=evaluate", f"checkpoint={tmp_path / 'run' / 'best.keras'}"),
                        tmp_path / "eval3")
    assert best["model_file"] == "best.keras"


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    from keras_loss_recipes.evaluation.calibration import expected_calibration_error

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=20000)
    # Overconfident: always 99.99% sure, right half of the time.
    logits = np.zeros((20000, 2))
    logits[np.arange(20000), rng.integers(0, 2, size=20000)] = 10.0
    assert expected_calibration_error(logits, labels) == pytest.approx(0.5, abs=0.02)
    # Calibrated: confidence 0.8 and right 80% of the time.
    guess = np.where(rng.random(20000) < 0.8, labels, 1 - labels)
    calibrated = np.zeros((20000, 2))
    calibrated[np.arange(20000), guess] = np.log(4.0)  # softmax gives 0.8
    assert expected_calibration_error(calibrated, labels) < 0.02


# --- bad input: one clear line, non-zero exit, no traceback, nothing else touched --


def idx_dir(tmp_path, **broken):
    from tests.test_data import write_idx_dir

    directory = tmp_path / "idx"
    directory.mkdir(parents=True)
    write_idx_dir(directory, n_train=40, n_test=20)
    for name, blob in broken.items():
        (directory / name.replace("_", "-")).write_bytes(blob)
    return directory


def npz_file(path, x_train, **more):
    """An .npz of `x_train` (floats of 40 images 28x28) with labels of 10 classes and `more` arrays."""
    np.savez(path, x_train=x_train, y_train=np.arange(40) % 10, **more)
    return path


def bad_inputs(tmp_path):
    from tests.test_data import idx_bytes

    not_a_model = tmp_path / "fake.keras"
    not_a_model.write_text("this is not a zip file")
    yaml_dir = tmp_path / "cfg" / "loss"
    yaml_dir.mkdir(parents=True)
    (yaml_dir / "broken.yaml").write_text("name: sparse_from_logits\nlabel_smoothing: [0.0\n")
    truncated = idx_bytes(np.zeros((20, 28, 28)))[:-100]
    import tensorflow as tf

    no_gpu = [] if tf.config.list_physical_devices("GPU") else [
        (["trainer.device=gpu"], "trainer.device=gpu: TensorFlow sees no GPU (it found: /physical_device:CPU:0")]
    return no_gpu + [
        (["trainer.epochs=0"], "trainer.epochs=0: must be an integer >= 1"),
        (["trainer.epochs=-2"], "trainer.epochs=-2: must be an integer >= 1"),
        (["trainer.batch_size=0"], "trainer.batch_size=0: must be an integer >= 1"),
        (["trainer.batch_size=-8"], "trainer.batch_size=-8: must be an integer >= 1"),
        (["optimizer.learning_rate=-0.01"], "optimizer.learning_rate=-0.01: must be a finite number > 0"),
        (["trainer.precision=float8"], "trainer.precision='float8': valid choices"),
        (["loss.temperature=0"], "loss.temperature=0.0: must be a finite number > 0"),
        (["loss.temperature=-1"], "loss.temperature=-1.0: must be a finite number > 0"),
        (["loss=from_logits", "loss.label_smoothing=1.0"], "loss.label_smoothing=1.0: must be in [0, 1)"),
        (["loss=from_logits", "loss.label_smoothing=-0.5"], "loss.label_smoothing=-0.5: must be in [0, 1)"),
        (["data=idx", f"data.dir={tmp_path / 'missing'}"], "directory does not exist"),
        (["data=idx", f"data.dir={idx_dir(tmp_path / 'a', t10k_images_idx3_ubyte=truncated)}", "data.val_examples=10"],
         "truncated: header says (20, 28, 28)"),
        (["data=idx", f"data.dir={idx_dir(tmp_path / 'b', t10k_images_idx3_ubyte=b'garbage!' * 4)}", "data.val_examples=10"],
         "bad magic number"),
        (["data=idx", f"data.dir={idx_dir(tmp_path / 'c', t10k_images_idx3_ubyte=idx_bytes(np.zeros((20, 32, 32))))}",
          "data.val_examples=10"], "test images are (32, 32, 1), training images (28, 28, 1)"),
        (["data=idx", f"data.dir={idx_dir(tmp_path / 'd', t10k_labels_idx1_ubyte=idx_bytes(np.full(20, 11)))}",
          "data.val_examples=10"], "labels range 11..11; expected 0..9"),
        (["data=npz", f"data.path={npz_file(tmp_path / 'nan.npz', np.full((40, 28, 28), np.nan))}"],
         "x_train[0] holds nan; images must be finite numbers"),
        (["data=npz", f"data.path={npz_file(tmp_path / 'wide.npz', np.full((40, 28, 28), 300, np.uint16))}"],
         "x_train[0] holds 300; integer images must be pixels 0..255"),
        (["data=npz", f"data.path={npz_file(tmp_path / 'big.npz', np.full((40, 28, 28), 256.0))}"],
         "x_train[0] holds 256; float images must lie in [0, 1] (already scaled) or [0, 255] (pixels)"),
        (["data=npz", f"data.path={npz_file(tmp_path / 'named.npz', np.zeros((40, 28, 28)), class_names=['a', 'b'])}"],
         "class_names holds 2 names for 10 classes (labels 0..9)"),
        (["recipe=evaluate", f"checkpoint={tmp_path / 'nope.keras'}"], "no such file or directory"),
        (["recipe=evaluate", f"checkpoint={not_a_model}"], "not a loadable Keras model"),
        (["recipe=evaluate"], "checkpoint is not set"),
        (["recipe=evaluate", f"checkpoint={tmp_path / 'other_run'}", "data=npz",  # 28 x 28 model, 8 x 8 images
          f"data.path={npz_file(tmp_path / 'small.npz', np.zeros((40, 8, 8)))}"],
         "the model takes inputs of shape (28, 28, 1); data=npz's images are (8, 8, 1)"),
        (["--config-dir", str(tmp_path / "cfg"), "loss=broken"], "broken.yaml:3:1: YAML syntax error"),
    ]


@pytest.mark.slow
def test_bad_inputs_fail_cleanly_and_touch_nothing_else(compose, train_cli, tmp_path, capsys):
    """Each case through the function train.py's Hydra job calls (keras_loss_recipes.cli.job.run_job), in this process;
    the YAML error, found before Hydra composes anything, through train.py itself. (That train.py
    turns the same errors into the same line and exit status: tests/test_train.py, test_config.py.)"""
    from keras_loss_recipes.cli.job import run_job

    other = tmp_path / "other_run"
    train_recipe.run(compose(*TINY), other)
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    for i, (args, message) in enumerate(bad_inputs(tmp_path)):
        run_dir = tmp_path / f"bad_run_{i}"
        if args[0].startswith("--"):  # a command-line option of train.py, not an override
            result = train_cli(*TINY, *args, f"hydra.run.dir={run_dir}")
            code, out, err = result.returncode, result.stdout, result.stderr
        else:
            run_dir.mkdir()  # as Hydra makes it before the job starts
            with pytest.raises(SystemExit) as ended:
                run_job(compose(*TINY, *args), run_dir)
            code, (out, err) = ended.value.code, capsys.readouterr()
        err_lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2, (args, err[-1500:])
        assert "Traceback" not in err + out, args
        assert len(err_lines) == 1 and message in err_lines[0], (args, err_lines)
        assert not run_dir.exists(), (args, "a run directory was left behind")
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == before


def test_non_finite_images_are_reported_not_trained_on():
    from keras_loss_recipes.data.splits import check_images_and_labels

    images = np.zeros((3, 28, 28), np.float32)
    images[1, 5, 5] = np.nan
    with pytest.raises(UserError, match="1 images contain NaN or inf"):
        check_images_and_labels(images, np.zeros(3), 10, "x")


# --- TensorBoard as a user opens it -----------------------------------------


@pytest.mark.slow(seconds=25)
def test_tensorboard_server_shows_runs_stability_hparams_and_the_comparison(tiny_sweep):
    """A real sweep (tests/test_sweeps.py checks its files), read back through a real TensorBoard server's HTTP
    API, as the dashboards read it."""
    from keras_loss_recipes.reporting.tensorboard_views import LAYOUT
    from scripts.tensorboard_server import get_json, hparams_default_columns, post_json, serve

    sweep, result = tiny_sweep  # two losses, two seeds
    assert result["returncode"] == 0, result["stderr"][-2000:]
    with serve(sweep) as base:
        runs = get_json(base + "data/runs")
        # Short job directories: the job number, then what the sweep varies.
        assert {r.split("/")[0] for r in runs if r != "."} >= {"00_loss-sparse_from_logits_seed-0",
                                                               "03_loss-clipped_probs_seed-1"}
        scalars = get_json(base + "data/plugin/scalars/tags")
        train_run = next(r for r in scalars if r.endswith("/train"))
        assert "epoch_accuracy" in scalars[train_run]
        assert {"stability/logit_gap", "stability/loss_gap", "stability/grad_norm"} <= set(scalars[train_run])
        groups = post_json(base + "data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"], "colParams": [],
            "startIndex": 0, "sliceSize": 100})
        assert groups["totalSize"] == 4
        assert {g["hparams"]["loss"] for g in groups["sessionGroups"]} == {"sparse_from_logits", "clipped_probs"}
        metric_tags = {m["name"]["tag"] for g in groups["sessionGroups"] for m in g["metricValues"]}
        assert {"epoch_accuracy", "final/test_accuracy"} <= metric_tags
        # The HParams table opens on what the sweep varies and the outcomes, its metrics on test accuracy and CE.
        hparams, metrics = hparams_default_columns(base)
        assert hparams[:4] == ["loss", "loss_path", "seed", "status"]
        assert metrics[:2] == ["final/test_accuracy", "final/test_exact_ce"]
        # The stability dashboard opens laid out; each run explains itself in the Text tab.
        layout = get_json(base + "data/plugin/custom_scalars/layout")
        assert [c["title"] for c in layout["category"]] == [title for title, _ in LAYOUT]
        [summary] = get_json(base + "data/plugin/text/text?run=02_loss-clipped_probs_seed-0&tag=run%2Fsummary")
        assert "clipped_probabilities" in summary["text"] and "python train.py" in summary["text"]
        images = get_json(base + "data/plugin/images/tags")
        assert "comparison/figure" in images.get("comparison", {})
