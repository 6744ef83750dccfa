"""Stability telemetry, the NaN/inf policy, mixed precision and the probe recipe."""
import csv
import warnings

import numpy as np
import pytest

from keras_loss_recipes import losses
from keras_loss_recipes.recipes import probe
from keras_loss_recipes.recipes import train as train_recipe
from tests.conftest import TINY

STABILITY_TAGS = {
    "stability/logit_max_abs", "stability/logit_gap", "stability/saturated_frac",
    "stability/grad_norm", "stability/logit_grad_norm", "stability/nonfinite_steps",
    "stability/exact_ce", "stability/loss_gap", "stability/loss_scale",
}
COMPARED = ["val_accuracy", "test_accuracy", "test_loss", "test_exact_ce", "epochs_completed"]


def event_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def test_telemetry_is_written_per_epoch_and_every_n_steps(compose, tmp_path):
    m = train_recipe.run(compose(*TINY, "trainer.epochs=2", "telemetry.every_n_steps=1"), tmp_path)
    acc = event_tags(tmp_path / "train")
    tags = set(acc.Tags()["tensors"])
    assert STABILITY_TAGS <= tags
    assert [e.step for e in acc.Tensors("stability/logit_gap")] == [0, 1]
    assert len(acc.Tensors("stability_steps/logit_gap")) == 6  # 3 steps of 128 (300 images) x 2 epochs
    st = m["stability"]
    # A stable formulation reports exactly the exact cross entropy; nothing saturates yet.
    assert abs(st["stability/loss_gap"]) < 1e-4
    assert st["stability/saturated_frac"] == 0.0 and st["stability/nonfinite_steps"] == 0
    assert st["stability/grad_norm"] > 0 and st["stability/logit_grad_norm"] > 0


def test_telemetry_does_not_change_what_is_trained(compose, tmp_path):
    on = train_recipe.run(compose(*TINY, "trainer.epochs=2"), tmp_path / "on")
    off = train_recipe.run(compose(*TINY, "trainer.epochs=2", "telemetry=off"), tmp_path / "off")
    assert [on[k] for k in COMPARED] == [off[k] for k in COMPARED]
    assert off["stability"] == {}
    assert not any(t.startswith("stability") for t in event_tags(tmp_path / "off" / "train").Tags()["tensors"])


def test_steps_per_execution_does_not_change_what_is_trained(compose, tmp_path, monkeypatch):
    from tests.backend_driver import record_fits

    fits = record_fits(monkeypatch.setattr)
    one = train_recipe.run(compose(*TINY, "trainer.epochs=2", "trainer.steps_per_execution=1"), tmp_path / "one")
    two = train_recipe.run(compose(*TINY, "trainer.epochs=2", "trainer.steps_per_execution=2"), tmp_path / "two")
    assert fits == [1, 2]  # each model ran as compiled with the option (equal figures alone would pass with 1)
    assert [one[k] for k in COMPARED] == [two[k] for k in COMPARED]
    assert one["stability"] == two["stability"]


def test_clipped_path_shows_a_loss_gap_and_a_vanishing_logit_gradient(compose, tmp_path):
    common = [*TINY, "stress.logit_scale=300", "trainer.epochs=2"]
    clipped = train_recipe.run(compose(*common, "loss=clipped_probs"), tmp_path / "clipped")
    fused = train_recipe.run(compose(*common, "loss=from_logits"), tmp_path / "fused")
    # The clipped loss under-reports: far below the exact cross entropy.
    assert clipped["stability"]["stability/loss_gap"] < -10
    assert abs(fused["stability"]["stability/loss_gap"]) < 1e-2 * fused["stability"]["stability/exact_ce"]
    assert clipped["stability"]["stability/saturated_frac"] > 0.5
    assert clipped["test_exact_ce"] > fused["test_exact_ce"]


@pytest.mark.parametrize(
    "policy, status, weights_finite",
    [("stop", "diverged", True), ("skip", "ok", True), ("continue", "ok", False)],
)
def test_nonfinite_policies(compose, tmp_path, policy, status, weights_finite):
    cfg = compose(*TINY, "loss=naive", "stress.logit_scale=1000", "trainer.epochs=2",
                  f"trainer.on_nonfinite={policy}")
    m = train_recipe.run(cfg, tmp_path)
    assert m["status"] == status
    assert m["loss_path"] == "naive" and m["warnings"]
    assert m["first_nonfinite"] == {"epoch": 1, "step": 1}
    assert m["nonfinite_steps"] == (1 if policy == "stop" else 6)
    # The last epoch's stability figures count its own non-finite steps (stop: its first and only one).
    last_epoch = m["stability"]["stability/nonfinite_steps"]
    assert last_epoch == 1 if policy == "stop" else 0 < last_epoch <= m["nonfinite_steps"]
    # stop and skip keep NaN updates out of the weights, so the test logits stay finite
    assert np.isfinite(m["test_exact_ce"] if m["test_exact_ce"] is not None else np.nan) == weights_finite
    if policy == "stop":
        assert m["epochs_completed"] == 0


@pytest.mark.parametrize(
    "precision, unsafe, path",
    [
        ("mixed_float16", False, "rescued_softmax"),
        ("mixed_bfloat16", False, "rescued_softmax"),
        ("mixed_float16", True, "clipped_probabilities"),
    ],
)
def test_mixed_precision_paths_and_policy_restored(compose, tmp_path, precision, unsafe, path):
    import keras

    cfg = compose(*TINY, "loss=softmax_ce", f"trainer.precision={precision}", f"stress.unsafe_head_dtype={unsafe}")
    m = train_recipe.run(cfg, tmp_path)
    assert m["status"] == "ok" and m["precision"] == precision
    assert m["loss_path"] == path
    assert keras.config.dtype_policy().name == "float32"
    if precision == "mixed_float16":
        assert m["stability"]["stability/loss_scale"] > 1  # Keras wrapped Adam in a LossScaleOptimizer


def test_probe_recipe_finds_the_documented_failure_gaps(compose, tmp_path):
    cfg = compose("recipe=probe", "recipe.points=101", "recipe.dtypes=[float32,float16]")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        m = probe.run(cfg, tmp_path)
    # mistake_double_softmax and mistake_double_sigmoid are measured on purpose: Keras's warnings are not printed.
    assert not [w for w in shown if "produced by a" in str(w.message)]
    first = {(f["dtype"], f["loss"]): f["first_bad_gap"] for f in m["failures"]}
    assert 84 <= first[("float32", "naive")] <= 92  # float32 exp(-gap) underflows near 87
    assert 14 <= first[("float16", "naive")] <= 20  # float16 near 17
    assert 16 <= first[("float32", "clipped_probs")] <= 18  # the clip caps the loss at 16.118
    for name in ("from_logits", "sparse_from_logits", "tf_nn_logits", "softmax_ce"):
        assert first[("float32", name)] is None and first[("float16", name)] is None
    # The sigmoid family over the logit's magnitude (gaps 0, 2, 4, ...): the clip at 15.94, the naive sigmoid
    # rounding to 1 (inf from about 17); TensorFlow rescues the sigmoid head, in float16 too.
    assert first[("float32", "bce_clipped_probs")] == first[("float32", "bce_naive")] == 16
    for name in ("bce_from_logits", "tf_nn_sigmoid_logits", "sigmoid_bce"):
        assert first[("float32", name)] is None and first[("float16", name)] is None
    with open(tmp_path / "probe.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 101 * len(losses.names())
    naive_far = [r for r in rows if r["loss"] == "bce_naive" and r["dtype"] == "float32" and float(r["gap"]) >= 18]
    assert all(float(r["value"]) == np.inf for r in naive_far)
    clipped = [r for r in rows if r["loss"] == "bce_clipped_probs" and r["dtype"] == "float32" and float(r["gap"]) >= 18]
    assert all(abs(float(r["value"]) - 15.942) < 1e-3 and float(r["grad_norm"]) == 0.0 for r in clipped)
    clipped_far = [r for r in rows if r["loss"] == "clipped_probs" and r["dtype"] == "float32" and float(r["gap"]) >= 50]
    assert all(float(r["grad_norm"]) == 0.0 for r in clipped_far)  # the clip kills the gradient
    assert all(abs(float(r["value"]) - 16.118) < 1e-3 for r in clipped_far)
    exact_far = [r for r in rows if r["loss"] == "sparse_from_logits" and float(r["gap"]) >= 50]
    assert all(abs(float(r["grad_norm"]) - np.sqrt(2)) < 1e-3 for r in exact_far)
    assert (tmp_path / "probe.png").stat().st_size > 10_000
    acc = event_tags(tmp_path / "probe")
    assert "probe/figure" in acc.Tags()["tensors"] or "probe/figure" in acc.Tags()["images"]
    assert "probe/float32/naive/rel_error" in acc.Tags()["tensors"]
