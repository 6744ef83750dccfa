"""End-to-end training: in-process through Hydra's compose API, and train.py as a user runs it."""
import concurrent.futures
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.losses.paths import MEANINGS
from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.reporting import tensorboard_views
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import ROOT, TINY
from tests.test_paths import EXPECTED_ON_TENSORFLOW

REQUIRED_METRICS = {
    "status", "loss", "data", "model", "seed", "epochs_completed", "val_accuracy",
    "test_accuracy", "test_loss", "test_exact_ce", "train_samples_per_s", "wall_s",
}


def text_summaries(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [event.tensor_proto.string_val[0].decode() for event in acc.Tensors(tag)]


def scalar_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])


@pytest.mark.parametrize("name", losses.names("softmax"))  # the family the training recipe trains
def test_every_formulation_trains_and_writes_results(compose, tmp_path, name):
    cfg = compose(*TINY, f"loss={name}")
    metrics = train_recipe.run(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert REQUIRED_METRICS <= set(saved)
    assert saved["status"] == "ok" and saved["loss"] == name
    assert saved["epochs_completed"] == 1 and saved["train_examples"] == 300
    # One epoch on 300 digits is far from chance (0.1) but far from done; the
    # forgotten from_logits is the one formulation that does not learn at all.
    if name == "mistake_logits_as_probs":
        assert saved["test_accuracy"] < 0.3
    else:
        assert 0.3 < saved["test_accuracy"] <= 1.0
    assert np.isfinite(saved["test_exact_ce"]) and saved["test_exact_ce"] > 0
    assert saved["train_samples_per_s"] > 0
    assert saved["head"] == losses.formulation(name).head
    assert saved["loss_path"] == EXPECTED_ON_TENSORFLOW[name]
    assert bool(saved["warnings"]) == (saved["loss_path"] not in ("fused_logits", "rescued_softmax"))
    assert metrics["val_accuracy"] == saved["val_accuracy"]
    # history.csv holds the metrics only: the stability means and non-finite counts go to TensorBoard.
    header = (tmp_path / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,accuracy,loss,val_accuracy,val_exact_ce,val_loss"
    assert "epoch_accuracy" in scalar_tags(tmp_path / "train")
    assert "epoch_accuracy" in scalar_tags(tmp_path / "validation")
    # Every chart of the stability dashboard's layout finds its lines in what the run wrote.
    written = scalar_tags(tmp_path / "train") | scalar_tags(tmp_path / "validation")
    for _, charts in tensorboard_views.LAYOUT:
        for title, regex in charts:
            assert any(re.search(regex, tag) for tag in written), (title, sorted(written))
    # The run explains itself in the Text tab: its path in words and, where it loses information, why.
    [summary] = text_summaries(tmp_path, tensorboard_views.SUMMARY_TAG)
    assert f"Loss path **{saved['loss_path']}**: {MEANINGS[saved['loss_path']]}" in summary
    assert all(warning in summary for warning in saved["warnings"])
    # HParams, final figures, summary and layout share the run's one event file at its root.
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_exact_ce_agrees_with_the_reported_loss_for_a_stable_formulation(compose, tmp_path):
    saved = train_recipe.run(compose(*TINY, "loss=sparse_from_logits"), tmp_path)
    assert saved["test_exact_ce"] == pytest.approx(saved["test_loss"], rel=1e-4)


def test_same_seed_same_metrics_other_seed_other_metrics(compose, tmp_path):
    keys = ["val_accuracy", "test_accuracy", "test_loss", "test_exact_ce"]
    a = train_recipe.run(compose(*TINY, "seed=1"), tmp_path / "a")
    b = train_recipe.run(compose(*TINY, "seed=1"), tmp_path / "b")
    c = train_recipe.run(compose(*TINY, "seed=2"), tmp_path / "c")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["test_loss"] != c["test_loss"]


def test_temperature_and_label_smoothing_reach_the_loss_that_is_computed(compose, tmp_path):
    import keras

    from keras_loss_recipes.data import load_splits
    from keras_loss_recipes.data.pipeline import scale_images

    cfg = compose(*TINY, "loss=from_logits", "loss.temperature=2.0", "loss.label_smoothing=0.1")
    m = train_recipe.run(cfg, tmp_path)
    assert m["status"] == "ok"
    # The saved model divides its logits by the temperature before the loss sees them...
    saved = keras.models.load_model(tmp_path / "last.keras")
    assert saved.get_layer("temperature").get_config()["scale"] == 0.5
    unscaled = keras.Model(saved.inputs, saved.get_layer("temperature").input)
    splits = load_splits(cfg.data)
    images = scale_images(splits.x_test)
    raw = unscaled.predict(images, verbose=0).astype(np.float64)
    np.testing.assert_allclose(saved.predict(images, verbose=0), raw / 2.0, rtol=1e-5, atol=1e-6)
    # ... and the test loss the run recorded is the cross entropy of those logits against smoothed labels:
    # 0.9 on the true class + 0.01 on each of the 10 classes.
    z = raw / 2.0
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    smoothed = np.full(log_p.shape, 0.1 / 10) + 0.9 * np.eye(10)[splits.y_test]
    expected = float(np.mean(-(smoothed * log_p).sum(axis=1)))
    assert m["test_loss"] == pytest.approx(expected, rel=1e-4)
    # Neither option alone gives that number: both reach the loss.
    plain = float(np.mean(-log_p[np.arange(len(z)), splits.y_test]))
    unsmoothed_at_t1 = raw - raw.max(axis=1, keepdims=True)
    unsmoothed_at_t1 -= np.log(np.exp(unsmoothed_at_t1).sum(axis=1, keepdims=True))
    at_t1 = float(np.mean(-(smoothed * unsmoothed_at_t1).sum(axis=1)))
    assert abs(plain - expected) > 1e-3 and abs(at_t1 - expected) > 1e-3


def test_sgd_and_cnn_train(compose, tmp_path):
    m = train_recipe.run(compose(*TINY, "model=cnn", "optimizer=sgd"), tmp_path)
    assert m["params"] == 34826 and m["optimizer"] == "sgd"


def test_idx_source_trains(compose, tmp_path):
    from tests.test_data import write_idx_dir

    data_dir = tmp_path / "idx"
    data_dir.mkdir()
    write_idx_dir(data_dir, n_train=120, n_test=40, gz=True)
    m = train_recipe.run(compose(*TINY, "data=idx", f"data.dir={data_dir}", "data.val_examples=20"), tmp_path / "run")
    assert m["data"] == "idx" and m["train_examples"] == 100


def test_a_run_dir_with_unfinished_files_is_not_reused(compose, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "events.out.tfevents.x").write_text("earlier run")
    with pytest.raises(UserError, match="holds files of an unfinished run that cannot be resumed"):
        train_recipe.run(compose(*TINY), tmp_path)
    assert (tmp_path / "train" / "events.out.tfevents.x").read_text() == "earlier run"


# --- train.py as a user runs it --------------------------------------------


@pytest.mark.slow(seconds=20)
def test_train_py_runs_quietly_counts_its_own_start_up_only_and_never_overwrites_a_finished_run(train_cli, tmp_path):
    """Started as `sh -c 'sleep 4 && exec python train.py ...'`, which keeps the shell's process: its sleep is
    not start-up. Then the same command again, on the finished run."""
    import time

    from tests.conftest import project_env

    run_dir = tmp_path / "run"
    # One progress line per epoch, as a user sees it by default.
    args = [*(a for a in TINY if not a.startswith("trainer.verbose")), "trainer.verbose=2", "loss=softmax_ce",
            f"hydra.run.dir={run_dir}"]
    began = time.time()
    first = subprocess.run(["sh", "-c", f"sleep 4 && exec {sys.executable} {ROOT / 'train.py'} {' '.join(args)}"],
                           cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.time() - began
    assert first.returncode == 0, first.stderr[-2000:]
    # A quiet start: nothing before the run's first log line, nothing at all on stderr.
    assert first.stdout.startswith("["), first.stdout[:2000]
    assert first.stderr == ""
    # One line per epoch: its figures, validation's, and the stability summary.
    epoch_lines = [line for line in first.stdout.splitlines() if " - epoch " in line]
    epochs = json.loads((run_dir / "metrics.json").read_text())["config"]["trainer"]["epochs"]
    assert len(epoch_lines) == epochs, first.stdout[-2000:]
    assert all("val_accuracy:" in line and "| stability: logit_gap=" in line for line in epoch_lines), epoch_lines
    assert epoch_lines[0].split(" - epoch ")[1].startswith(f"1/{epochs} - ")
    before = (run_dir / "metrics.json").read_bytes()
    metrics = json.loads(before)
    assert metrics["status"] == "ok" and metrics["loss"] == "softmax_ce"
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert 0 < metrics["startup_s"] < elapsed - 3.5  # this job's own start-up, not the shell's sleep

    again = train_cli(*args)
    assert again.returncode == 0
    assert "already holds a finished run" in again.stdout + again.stderr
    assert (run_dir / "metrics.json").read_bytes() == before


@pytest.mark.slow(seconds=15)
def test_train_py_default_run_dirs_are_unique(train_cli, tmp_path):
    # Two runs of the same command, started together, from the same directory.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: train_cli(*TINY, "data.max_train_examples=100", cwd=tmp_path), range(2))
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-2000:]
    runs = sorted(tmp_path.glob("runs/*/*/metrics.json"))
    assert len(runs) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epochs=-1", "error: trainer.epochs=-1: must be an integer >= 1"),
        ("loss.temperature=0", "error: loss.temperature=0.0: must be a finite number > 0"),
        ("trainer.epochs=abc", "error: trainer.epochs='abc': must be an integer"),
    ],
)
def test_train_py_bad_value_is_one_line_and_exit_2(train_cli, tmp_path, override, message):
    result = train_cli(override, cwd=tmp_path)  # the default run directory, under runs/
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [message]
    assert "error" not in result.stdout
    # No run directory is left behind (the latest run directory is always a run), nor the day's folder.
    assert list(tmp_path.glob("runs/*")) == []


@pytest.mark.slow
def test_bad_input_keeps_a_run_directory_that_holds_an_earlier_run_and_logs_why(train_cli, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "history.csv").write_text("epoch,accuracy\n0,0.5\n")
    result = train_cli("trainer.epochs=abc", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert (run_dir / "history.csv").read_text() == "epoch,accuracy\n0,0.5\n"
    assert "error: trainer.epochs='abc': must be an integer\n" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_train_py_unknown_group_option_is_one_line_with_the_closest_choices(train_cli, tmp_path):
    result = train_cli("loss=sparse", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: loss=sparse: no such option of the loss group; valid choices: ")
    assert line.endswith("did you mean sparse_from_logits or sparse_softmax or tf_nn_sparse_logits?")
    assert "HYDRA_FULL_ERROR" not in result.stderr and not (tmp_path / "run").exists()
