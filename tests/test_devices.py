"""Devices: the GPU error on a CPU machine, XLA warnings, MirroredStrategy on 2 logical CPUs."""
import logging
import subprocess
import sys

import pytest

from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.runtime.distribution import jit_setting
from keras_loss_recipes.runtime.workers import results_in
from tests.conftest import ROOT, TINY


def test_metrics_record_the_device(compose, tmp_path):
    m = train_recipe.run(compose(*TINY), tmp_path)
    assert m["device"] in ("cpu", "gpu") and m["device_name"] and m["replicas"] == 1


def test_forcing_xla_on_a_cpu_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert jit_setting(True, "cpu", distributed=False) is True
        assert jit_setting("auto", "cpu", distributed=False) == "auto"
    assert sum("about 6x slower" in r.getMessage() for r in caplog.records) == 1


MIRRORED_DRIVER = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.config.compose import compose_train
from keras_loss_recipes.runtime.workers import report
out = {}
for dist in ("none", "mirrored"):
    overrides = ["model=mlp", "data.max_train_examples=128", "optimizer=sgd", "trainer.epochs=2",
                 "trainer.verbose=0", f"trainer.distribution={dist}", 'trainer.devices=["/cpu:0","/cpu:1"]']
    cfg = compose_train(overrides)
    out[dist] = train_recipe.run(cfg, os.path.join(sys.argv[2], dist))
keys = ("status", "replicas", "test_accuracy", "test_exact_ce", "history", "stability")
report({d: {k: m[k] for k in keys} for d, m in out.items()})
"""


@pytest.mark.slow(seconds=30)
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    result = subprocess.run([sys.executable, "-c", MIRRORED_DRIVER, str(ROOT), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [out] = results_in(result.stdout)
    single, mirrored = out["none"], out["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["status"] == "ok"
    # Two steps of one batch each: the two replicas' half-batch gradients, summed, are the one device's
    # gradient, so the runs agree to float32 rounding (measured: the same to 2.4e-7 in loss). Over more steps
    # that rounding grows (SGD, 8 steps an epoch: 2e-4 in loss after one epoch; Adam, whose first updates
    # are the gradient's sign, 0.003 to 0.017, and 0.004 to 0.014 in test accuracy after two), so a longer
    # run could only be held to a loose bound that would let a wrong gradient through.
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert mirrored["history"][key] == pytest.approx(single["history"][key], rel=1e-5, abs=1e-6), key
    assert mirrored["test_exact_ce"] == pytest.approx(single["test_exact_ce"], rel=1e-5)
    assert mirrored["test_accuracy"] == single["test_accuracy"]
    # The telemetry sees the per-example loss, not Keras's per-replica share of it.
    assert abs(mirrored["stability"]["stability/loss_gap"]) < 1e-3
