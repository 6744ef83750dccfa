"""A GPU's ordering on a CPU: a small model whose pace is set by the work around each step.

    python benchmarks/gpu_proxy.py              # about 6 minutes on 2 CPU cores; writes docs/gpu_proxy.json
                                                # and the proxy's section of docs/performance.md
    python benchmarks/gpu_proxy.py --quick --out /tmp/proxy     # a look in a minute

On a GPU a step of the recipes' models takes a fraction of a millisecond, so
whatever the host does for each step (reading the step's figures back, a
callback's batch hook) and at each epoch end (backups, saved models, logs)
decides the speed. On a CPU the convnet's arithmetic hides it. The proxy makes
the arithmetic small and keeps the GPU's way of running: JAX on the CPU (JAX
dispatches a step and returns at once, as on a GPU, unless the host asks for a
result), the mlp (one hidden layer of 128), batch 1024, 40,000 images an
epoch. It is the guard of the GPU figures on machines without one.

Sides, interleaved, with repeats, in this one process:
    plain              the same mlp as a user writes it in plain Keras: logits, a from-logits
                       loss, numpy arrays, `fit(verbose=0)`, no callbacks
    framework_off      `python train.py model=mlp loss=sparse_from_logits telemetry=off` at this size
    framework_on       the same with the stability telemetry (the default), steps_per_execution=auto
    framework_on_spe<N>  framework_on with `trainer.steps_per_execution=N` (by default N=8: what
                       auto, 1 here, is measured against)
The first epoch of every fit (tracing) is not counted. A goal's ratio is the
median over the repeats of the ratio within each repeat (its sides run one after
the other, so a slow spell of the machine hits them alike). Then a cProfile of
one framework_on fit says where its time goes.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"
SIDES = ("plain", "framework_off", "framework_on")
# (goal, numerator side, denominator side, figure, target): the GPU goals, held on the proxy.
GOALS = [
    ("framework (telemetry on) / plain Keras, whole epoch", "framework_on", "plain", "wall", 0.9),
    ("framework (telemetry on) / plain Keras, training steps only", "framework_on", "plain", "step", 0.95),
    ("framework, telemetry on / off, whole epoch", "framework_on", "framework_off", "wall", 0.95),
]


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fit_plain(splits, epochs: int, batch: int) -> dict:
    import keras

    from keras_loss_recipes.data.pipeline import scale_images
    from keras_loss_recipes.training.callbacks import TrainThroughput
    from keras_loss_recipes.training.models import mlp

    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input(splits.x_train.shape[1:])
    model = keras.Model(inputs, mlp(inputs, splits.num_classes))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="adam",
                  metrics=["accuracy"])
    timer = TrainThroughput(len(splits.y_train))
    model.fit(scale_images(splits.x_train), splits.y_train, batch_size=batch, epochs=epochs, verbose=0,
              validation_data=(scale_images(splits.x_val), splits.y_val), callbacks=[timer])
    return {"wall_s": timer.epoch_wall_seconds, "step_s": timer.epoch_seconds}


def fit_framework(splits, epochs: int, batch: int, telemetry: bool, steps_per_execution: int = 1) -> dict:
    from benchmarks.sides import fit_framework as fit

    return fit(splits, epochs, "float32", batch, telemetry,
               extra=("model=mlp", f"trainer.steps_per_execution={steps_per_execution}"))


def fit_side(side: str, splits, epochs: int, batch: int) -> dict:
    if side == "plain":
        return fit_plain(splits, epochs, batch)
    if side.startswith("framework_on_spe"):
        return fit_framework(splits, epochs, batch, True, int(side[len("framework_on_spe"):]))
    return fit_framework(splits, epochs, batch, side == "framework_on")


def run_fits(args, splits) -> dict:
    fits = {side: {"wall_s": [], "step_s": []} for side in args.sides}
    total, done, began = args.repeats * len(args.sides), 0, time.time()
    for repeat in range(args.repeats):
        for side in args.sides:
            epochs = fit_side(side, splits, args.epochs, args.batch)
            for key in fits[side]:
                fits[side][key].extend(epochs[key][1:])  # the first epoch traces and warms up
            done += 1
            eta = (time.time() - began) / done * (total - done)
            print(f"[{done}/{total}] repeat {repeat + 1} {side:22s} "
                  f"{len(splits.y_train) / statistics.median(epochs['wall_s'][1:]):8.0f} samples/s (whole epoch); "
                  f"about {eta / 60:.1f} min left", flush=True)
    return fits


def summarize(fits: dict, images: int) -> dict:
    return {side: {"wall_samples_per_s": stats([images / s for s in f["wall_s"]]),
                   "step_samples_per_s": stats([images / s for s in f["step_s"]]),
                   "epoch_end_ms": stats([1000 * (w - s) for w, s in zip(f["wall_s"], f["step_s"])])}
            for side, f in fits.items()}


def paired_ratio(fits: dict, side: str, against: str, figure: str, per_fit: int) -> float:
    """The median over repeats of (side's median epoch time / its own) within each repeat: the two fits of a
    repeat run one after the other, so a slow spell of the machine hits both."""
    mine, theirs = fits[side][f"{figure}_s"], fits[against][f"{figure}_s"]
    ratios = [statistics.median(theirs[i:i + per_fit]) / statistics.median(mine[i:i + per_fit])
              for i in range(0, len(mine), per_fit)]
    return statistics.median(ratios)


def goals(fits: dict, per_fit: int) -> list[dict]:
    out = []
    for name, side, against, figure, target in GOALS:
        value = paired_ratio(fits, side, against, figure, per_fit) if side in fits and against in fits else None
        out.append({"goal": name, "value": value, "target": target,
                    "held": None if value is None else value >= target})
    return out


def profile(splits, epochs: int, batch: int, top: int = 12) -> dict:
    """cProfile of one framework_on fit: the functions with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.runcall(fit_framework, splits, epochs, batch, True)
    rows = [{"function": f"{Path(path).name}:{line}({function})", "calls": calls, "tottime_s": tottime,
             "cumtime_s": cumtime}
            for (path, line, function), (_, calls, tottime, cumtime, _) in pstats.Stats(profiler).stats.items()
            if Path(path).parent != Path(__file__).parent]
    total = sum(r["tottime_s"] for r in rows)
    return {"epochs": epochs, "total_s": total, "functions": sorted(rows, key=lambda r: -r["tottime_s"])[:top]}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="jax", help="the Keras backend (default jax: it queues steps, as a GPU)")
    parser.add_argument("--images", type=int, default=40000, help="training images per epoch (default 40,000)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4, help="per fit; the first is not counted (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every side (default 5: this machine is noisy)")
    parser.add_argument("--steps-per-execution", default="8",
                        help="extra framework_on sides at these trainer.steps_per_execution, comma separated "
                             "(default 8, against framework_on's auto; empty for none)")
    parser.add_argument("--quick", action="store_true", help="10,000 images, 3 epochs, 1 repeat")
    parser.add_argument("--out", type=Path, default=DOCS, help="where gpu_proxy.json goes (default docs/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.repeats = 10000, 3, 1
    if args.epochs < 2:
        parser.exit(2, "error: --epochs must be at least 2 (the first epoch is not counted)\n")
    spe = [s for s in str(args.steps_per_execution).split(",") if s.strip()]
    if not all(s.strip().isdigit() and int(s) >= 1 for s in spe):
        parser.exit(2, f"error: --steps-per-execution {args.steps_per_execution}: whole numbers >= 1\n")
    args.sides = [*SIDES, *(f"framework_on_spe{int(s)}" for s in spe)]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras is imported
    from keras_loss_recipes.runtime.quiet import start_backend

    start_backend()
    import keras

    from benchmarks.hardware import cpu_features
    from benchmarks.throughput import data, versions
    from keras_loss_recipes.runtime.backends import cpu_name

    began = time.time()
    splits = data(args.images)
    fits = run_fits(args, splits)
    summary = summarize(fits, len(splits.y_train))
    results = {
        "command": " ".join(["python benchmarks/gpu_proxy.py", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "features": cpu_features(),
                    "backend": keras.backend.backend(), "versions": versions()},
        "settings": {"images": len(splits.y_train), "validation_images": len(splits.y_val), "batch": args.batch,
                     "epochs": args.epochs, "repeats": args.repeats, "sides": args.sides, "model": "mlp"},
        "fits": fits,
        "summary": summary,
        "goals": goals(fits, args.epochs - 1),
        "profile": profile(splits, args.epochs, args.batch),
    }
    results["seconds"] = time.time() - began
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_proxy.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out / 'gpu_proxy.json'}", flush=True)
    if (args.out / "performance.json").exists():
        from benchmarks.performance_page import write_page

        print(f"wrote {write_page(args.out / 'performance.json')}", flush=True)
    for goal in results["goals"]:
        held = "-" if goal["held"] is None else ("held" if goal["held"] else "MISSED")
        print(f"{held:7s} {goal['goal']}: {goal['value']:.2f} (>= {goal['target']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
