"""Training throughput of the framework against the plain keras.io convnet, in one run.

    python benchmarks/throughput.py                 # about 6 minutes on 2 CPU cores
    python benchmarks/throughput.py --repeats 1 --epochs 2   # a quick look
    python benchmarks/throughput.py --backends tensorflow,jax,torch --repeats 1 --skip-process

Same machine, same data (the embedded MNIST training split tiled to 20,000
images), same model (the keras.io simple MNIST convnet), batch 128, Adam:
  plain           the keras.io example: model.fit on numpy arrays, softmax head,
                  categorical_crossentropy
  sparse_off      the framework, loss=sparse_from_logits, telemetry=off
  sparse_on       the framework, loss=sparse_from_logits, telemetry on
  softmax_on      the framework, loss=softmax_ce, telemetry on
Each repeat runs all four in turn (A B C D A B C D ...), so machine noise hits
all alike; the first epoch of every fit (tracing, warm-up) is left out, and
validation time is never counted. Then `python train.py` is started twice as a
new process: time from process start to the first training step, and the peak
resident memory of a default run.

The last line is machine-readable:
    ratio_off=1.02 ratio_on=0.97 startup_s=6.1 peak_rss_mb=1234
(ratios: the framework's median samples/s over plain Keras's).

`--backend jax` runs all of it on that Keras backend (both sides: plain Keras
and the framework); `--backends a,b,c` runs one child process per backend (Keras
picks its backend once per process) and ends with a table of all of them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 128  # --batch
TILE = 5  # 4,000 embedded training images x 5 = 20,000


def data():
    import numpy as np

    from recipes.data.embedded import load_embedded

    splits = load_embedded(val_examples=500, test_examples=500, split_seed=0)
    splits.x_train = np.concatenate([splits.x_train] * TILE)
    splits.y_train = np.concatenate([splits.y_train] * TILE)
    return splits


def plain_keras(splits, epochs: int, batch: int = BATCH) -> list[float]:
    """The keras.io "Simple MNIST convnet", as a user would write it."""
    import keras
    from keras import layers

    from recipes.training.callbacks import TrainThroughput

    x = splits.x_train.astype("float32") / 255
    y = keras.utils.to_categorical(splits.y_train, 10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    # The same timer the framework uses for its own figures.
    timer = TrainThroughput(len(x))
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[timer])
    return [len(x) / s for s in timer.epoch_seconds[1:]]


def framework(splits, epochs: int, loss: str, telemetry: bool, batch: int = BATCH) -> list[float]:
    from hydra import compose, initialize_config_dir

    from recipes import train as train_recipe
    from recipes.settings import validate

    overrides = [f"loss={loss}", f"telemetry={'on' if telemetry else 'off'}", f"trainer.epochs={epochs}",
                 f"trainer.batch_size={batch}", "trainer.verbose=0"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    setup = validate(cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train_recipe.train_prepared(cfg, setup, splits, Path(run_dir))
    return [len(splits.y_train) / s for s in metrics["epoch_train_seconds"][1:]]


def new_process_run(args: list[str]) -> tuple[dict, float]:
    """`python train.py args` in a fresh process: its metrics.json and its peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={tmp}/run"],
                       cwd=ROOT, check=True, capture_output=True)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    # ru_maxrss of children is the largest child so far: runs are ordered so that it is this one.
    return metrics, max(peak_kb, before) / 1024


def compare_backends(args) -> int:
    rows = []
    for backend in args.backends.split(","):
        command = [sys.executable, str(Path(__file__).resolve()), "--backend", backend,
                   "--repeats", str(args.repeats), "--epochs", str(args.epochs), "--batch", str(args.batch)]
        if args.skip_process:
            command.append("--skip-process")
        print(f"== {backend}: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        print(result.stdout, end="", flush=True)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return result.returncode
        medians = {line.split()[0]: float(line.split()[1]) for line in result.stdout.splitlines()
                   if line.split() and line.split()[0] in ("plain", "sparse_off", "sparse_on", "softmax_on")
                   and len(line.split()) == 4}
        rows.append((backend, medians))
    print(f"\n{'backend':11s} {'plain':>8s} {'off':>8s} {'on':>8s} {'softmax':>8s} {'off/plain':>9s} {'on/plain':>9s}"
          "   median training samples/s")
    for backend, m in rows:
        print(f"{backend:11s} {m['plain']:8.0f} {m['sparse_off']:8.0f} {m['sparse_on']:8.0f} {m['softmax_on']:8.0f} "
              f"{m['sparse_off'] / m['plain']:9.2f} {m['sparse_on'] / m['plain']:9.2f}")
    return 0


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="per fit; the first is not counted")
    parser.add_argument("--skip-process", action="store_true", help="skip the start-up and memory runs")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size of both sides (default 128)")
    parser.add_argument("--backend", help="the Keras backend of this run (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--backends", help="comma-separated: one child process per backend, then a table")
    args = parser.parse_args(argv)
    if args.backends:
        return compare_backends(args)
    if args.backend:
        # Before Keras is imported; the framework's config reads the same variable.
        os.environ["KERAS_BACKEND"] = args.backend

    import keras

    splits = data()
    variants = {
        "plain": lambda: plain_keras(splits, args.epochs, args.batch),
        "sparse_off": lambda: framework(splits, args.epochs, "sparse_from_logits", False, args.batch),
        "sparse_on": lambda: framework(splits, args.epochs, "sparse_from_logits", True, args.batch),
        "softmax_on": lambda: framework(splits, args.epochs, "softmax_ce", True, args.batch),
    }
    results = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, fn in variants.items():
            values = fn()
            results[name].extend(values)
            print(f"repeat {repeat + 1}/{args.repeats} {name:11s} " + " ".join(f"{v:.0f}" for v in values), flush=True)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"\nmachine: {cpu}, {os.cpu_count()} cores; keras {keras.__version__} ({keras.backend.backend()}); "
          f"{len(splits.y_train)} training images, batch {args.batch}, {args.repeats} repeats x {args.epochs - 1} timed epochs")
    print(f"{'variant':12s} {'median':>8s} {'min':>8s} {'max':>8s}   training samples/s")
    for name, values in results.items():
        print(f"{name:12s} {summary(values)}")
    plain = statistics.median(results["plain"])
    ratio_off = statistics.median(results["sparse_off"]) / plain
    ratio_on = statistics.median(results["sparse_on"]) / plain
    line = f"ratio_off={ratio_off:.2f} ratio_on={ratio_on:.2f}"
    if not args.skip_process:
        quick, _ = new_process_run(["trainer.epochs=1", "data.max_train_examples=256", "trainer.verbose=0"])
        _, peak_mb = new_process_run([])
        print(f"start-up to first training step: {quick['startup_s']:.1f} s; peak RSS of a default run: {peak_mb:.0f} MB")
        line += f" startup_s={quick['startup_s']:.1f} peak_rss_mb={peak_mb:.0f}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
