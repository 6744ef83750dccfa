"""Whole processes, timed from start to exit, with their peak resident memory.

    framework_run(epochs, precision)   python train.py trainer.epochs=N ...: start to metrics.json (its exit)
    plain_run(epochs, precision)       python benchmarks/plain_convnet.py --epochs N ...: start to exit
    bare_import()                      python -c "import keras": the floor any Keras program starts from

Both training processes train the keras.io convnet on the same embedded MNIST
split (4,000 training, 500 validation, 500 test images) and predict the test
split at the end. The peak memory is the child's own (`os.wait4`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str]) -> dict:
    """Run `command` from the repository root; its wall seconds and peak RSS (MB). Fails loudly."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryFile() as output:
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            output.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n"
                               f"{output.read().decode(errors='replace')[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def framework_run(epochs: int, precision: str) -> dict:
    from keras_loss_recipes.reporting.results import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        run = timed([sys.executable, str(ROOT / "train.py"), f"trainer.epochs={epochs}",
                     f"trainer.precision={precision}", "trainer.verbose=0", f"hydra.run.dir={tmp}/run"])
        run["startup_s"] = read_metrics(Path(tmp) / "run")["startup_s"]
    return run


def plain_run(epochs: int, precision: str) -> dict:
    return timed([sys.executable, str(ROOT / "benchmarks" / "plain_convnet.py"), "--epochs", str(epochs),
                  "--precision", precision])


def bare_import() -> dict:
    return timed([sys.executable, "-c", "import keras"])
