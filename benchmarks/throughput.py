"""The framework's speed against plain Keras, per precision, and the hardware's limit.

    python benchmarks/throughput.py                  # about 15 minutes on 2 idle CPU cores; writes
                                                     # docs/performance.json and docs/performance.md
    python benchmarks/throughput.py --quick --out /tmp/bench      # a look in a few minutes
    python benchmarks/performance_page.py docs/performance.json   # the page again, from the JSON

In one process, interleaved (every side of every precision in turn, then again
for each repeat, so machine noise hits all alike), the keras.io convnet trains
on the embedded MNIST training split tiled to `--images`, batch 128, Adam,
validating on the same 500 images, on four sides (benchmarks/sides.py: plain
Keras, plain Keras on the framework's input pipeline, the framework with
telemetry off and on) in each precision. The first epoch of every fit (tracing,
warm-up) is left out. Then, as whole processes: an N-epoch run of each side from
start to exit, a bare `import keras`, and the peak memory of the framework's run.
Beside it: the training FLOPs per example, from the layers' shapes, and the
large-matmul peak of each dtype, measured in the same run (benchmarks/hardware.py).
With several Keras backends installed, each other backend runs the float32 sides
in a child process of its own.

Everything measured goes into the JSON with its spread (min, median, max and
the count of values); the page is rendered from it, tables and all.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import importlib.util
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import hardware, processes  # noqa: E402
from benchmarks.sides import SIDES, fit_side  # noqa: E402
from keras_loss_recipes.runtime import workers  # noqa: E402
from keras_loss_recipes.runtime.backends import BACKENDS  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MATMUL_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
OTHER_BACKEND_SIDES = ("plain", "framework_off", "framework_on")
DOCS = ROOT / "docs"
BATCH = 128


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def data(images: int):
    import numpy as np

    from keras_loss_recipes.data.embedded import load_embedded

    splits = load_embedded(val_examples=500, test_examples=500, split_seed=0)
    reps = -(-images // len(splits.y_train))
    splits.x_train = np.concatenate([splits.x_train] * reps)[:images]
    splits.y_train = np.concatenate([splits.y_train] * reps)[:images]
    return splits


def run_fits(args, splits) -> dict:
    """fits[precision][side] = {"wall_s": [...], "step_s": [...]}, the timed epochs of every repeat."""
    fits = {p: {s: {"wall_s": [], "step_s": []} for s in args.sides} for p in args.precisions}
    total, done, began = args.repeats * len(args.precisions) * len(args.sides), 0, time.time()
    for repeat in range(args.repeats):
        for precision in args.precisions:
            for side in args.sides:
                epochs = fit_side(side, splits, args.epochs, precision, args.batch)
                for key in ("wall_s", "step_s"):
                    fits[precision][side][key].extend(epochs[key][1:])  # the first epoch warms up
                done += 1
                rate = len(splits.y_train) / statistics.median(epochs["wall_s"][1:])
                eta = (time.time() - began) / done * (total - done)
                print(f"[{done}/{total}] repeat {repeat + 1} {precision:15s} {side:14s} {rate:7.0f} samples/s "
                      f"(whole epoch); about {eta / 60:.0f} min left of the fits", flush=True)
    return fits


def summarize(fits: dict, images: int, flops: int, peaks: dict) -> dict:
    summary = {}
    for precision, sides in fits.items():
        summary[precision] = {}
        for side, epochs in sides.items():
            wall = [images / s for s in epochs["wall_s"]]
            step = [images / s for s in epochs["step_s"]]
            gflops = statistics.median(step) * flops / 1e9
            summary[precision][side] = {
                "wall_samples_per_s": stats(wall), "step_samples_per_s": stats(step),
                "step_gflops": gflops, "fraction_of_peak": gflops / peaks[precision] if peaks.get(precision) else None,
            }
    return summary


def ratio(summary: dict, precision: str, side: str, against: str = "plain") -> float | None:
    sides = summary.get(precision, {})
    if side not in sides or against not in sides:
        return None
    return sides[side]["wall_samples_per_s"]["median"] / sides[against]["wall_samples_per_s"]["median"]


def speedup(summary: dict, precision: str, side: str) -> float | None:
    if precision not in summary or "float32" not in summary or side not in summary[precision]:
        return None
    return (summary[precision][side]["wall_samples_per_s"]["median"]
            / summary["float32"][side]["wall_samples_per_s"]["median"])


# (goal, how it is computed, target)
GOALS = [
    ("framework / plain Keras, whole epoch, float32, telemetry off", ("ratio", "float32", "framework_off"), 1.0),
    ("framework / plain Keras, whole epoch, float32, telemetry on", ("ratio", "float32", "framework_on"), 0.95),
    ("framework / plain Keras, whole epoch, mixed_bfloat16, telemetry off",
     ("ratio", "mixed_bfloat16", "framework_off"), 1.0),
    ("framework / plain Keras, whole epoch, mixed_bfloat16, telemetry on",
     ("ratio", "mixed_bfloat16", "framework_on"), 0.95),
    ("framework in mixed_bfloat16 / its own float32 speed (telemetry on)",
     ("speedup", "mixed_bfloat16", "framework_on"), 1.6),
]


def goals(summary: dict, process: dict | None) -> list[dict]:
    out = []
    for name, (kind, precision, side), target in GOALS:
        value = ratio(summary, precision, side) if kind == "ratio" else speedup(summary, precision, side)
        out.append({"goal": name, "value": value, "target": target, "at_least": True, "precision": precision,
                    "held": None if value is None else value >= target})
    if process:
        over = process["framework_startup_s"]["median"] - process["bare_import_s"]["median"]
        out.append({"goal": "framework start-up above a bare `import keras`, seconds", "value": over,
                    "target": 1.0, "at_least": False, "held": over <= 1.0})
        rss = process["framework_peak_rss_mb"]["max"]
        out.append({"goal": "peak resident memory of the framework's run, MB", "value": rss,
                    "target": 1536, "at_least": False, "held": rss <= 1536})
    return out


def run_processes(args) -> dict:
    """Whole processes, interleaved: the framework and the plain script per precision, and a bare import."""
    runs = {"bare_import": []}
    for repeat in range(args.process_repeats):
        runs["bare_import"].append(processes.bare_import())
        for precision in args.process_precisions:
            runs.setdefault(f"framework/{precision}", []).append(processes.framework_run(args.process_epochs, precision))
            runs.setdefault(f"plain/{precision}", []).append(processes.plain_run(args.process_epochs, precision))
            print(f"processes, repeat {repeat + 1}/{args.process_repeats} {precision}: framework "
                  f"{runs[f'framework/{precision}'][-1]['wall_s']:.1f} s, plain {runs[f'plain/{precision}'][-1]['wall_s']:.1f} s",
                  flush=True)
    framework = [r for k, v in runs.items() if k.startswith("framework/") for r in v]
    return {
        "epochs": args.process_epochs,
        "wall_s": {k: stats([r["wall_s"] for r in v]) for k, v in runs.items()},
        "bare_import_s": stats([r["wall_s"] for r in runs["bare_import"]]),
        "framework_startup_s": stats([r["startup_s"] for r in framework]),
        "framework_peak_rss_mb": stats([r["peak_rss_mb"] for r in framework]),
        "plain_peak_rss_mb": stats([r["peak_rss_mb"] for k, v in runs.items() if k.startswith("plain/") for r in v]),
    }


def profile_precision(summary: dict) -> str:
    """The precision to profile: that of the first missed framework / plain Keras goal, else float32."""
    missed = [g for g in goals(summary, None) if g["held"] is False and "/ plain Keras" in g["goal"]]
    return missed[0]["precision"] if missed else "float32"


def profile_framework(splits, epochs: int, precision: str, top: int = 15) -> dict:
    """cProfile of one framework fit (telemetry on): the functions its time is spent in, by own time."""
    profiler = cProfile.Profile()
    profiler.runcall(fit_side, "framework_on", splits, epochs, precision, BATCH)
    entries = pstats.Stats(profiler)
    rows = []
    for (path, line, function), (_, calls, tottime, cumtime, _) in entries.stats.items():
        if Path(path).parent == Path(__file__).parent:
            continue  # the benchmark's own wrappers
        rows.append({"function": f"{Path(path).name}:{line}({function})", "calls": calls,
                     "tottime_s": tottime, "cumtime_s": cumtime})
    total = sum(r["tottime_s"] for r in rows)
    return {"precision": precision, "total_s": total,
            "functions": sorted(rows, key=lambda r: -r["tottime_s"])[:top]}


def other_backends(args) -> dict:
    """The float32 sides on every other installed backend, one worker process each (benchmarks/other_backend.py)."""
    import keras

    current = keras.backend.backend()
    others = [b for b in BACKENDS if b != current and importlib.util.find_spec(b) is not None]

    def measure(backend: str) -> dict:
        print(f"== {backend}: a child process", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            worker = workers.Worker(backend, [
                str(ROOT / "benchmarks" / "other_backend.py"), "--backend", backend, "--precisions", "float32",
                "--sides", ",".join(OTHER_BACKEND_SIDES), "--repeats", str(args.backend_repeats),
                "--epochs", str(args.epochs), "--images", str(args.images),
                "--no-processes", "--no-backends", "--no-profile"], Path(tmp) / "stderr.log")
            [summary] = workers.run(worker, on_line=lambda line: print(line, flush=True))
        return summary

    return workers.each_backend([] if args.no_backends else others, measure, side_by_side=False)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("keras", *BACKENDS):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="training images per epoch (default 2,000)")
    parser.add_argument("--epochs", type=int, default=3, help="per fit; the first is not counted (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every side and precision (default 3)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--process-epochs", type=int, default=2)
    parser.add_argument("--process-repeats", type=int, default=2)
    # float32 only by default: without a bfloat16 unit, a mixed run takes minutes on a 2-core CPU.
    parser.add_argument("--process-precisions", default="float32")
    parser.add_argument("--backend-repeats", type=int, default=1)
    parser.add_argument("--backend", help="the Keras backend of this run (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--no-processes", action="store_true", help="skip the whole-process runs")
    parser.add_argument("--no-backends", action="store_true", help="skip the other installed backends")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile of a framework fit")
    parser.add_argument("--no-docs", action="store_true", help="write no page, only the JSON")
    parser.add_argument("--quick", action="store_true",
                        help="a short look: 1,000 images, 2 epochs, 1 repeat, one 1-epoch process run each")
    parser.add_argument("--out", type=Path, default=DOCS, help="where performance.json and .md go (default docs/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.repeats, args.process_repeats, args.process_epochs = 1000, 2, 1, 1, 1
    args.precisions = args.precisions.split(",")
    args.sides = args.sides.split(",")
    args.process_precisions = args.process_precisions.split(",")
    for name, given, valid in (("--precisions", args.precisions, PRECISIONS), ("--sides", args.sides, SIDES),
                               ("--process-precisions", args.process_precisions, PRECISIONS)):
        bad = [v for v in given if v not in valid]
        if bad:
            parser.exit(2, f"error: {name} {','.join(bad)}: valid choices: {', '.join(valid)}\n")
    if args.epochs < 2:
        parser.exit(2, "error: --epochs must be at least 2 (the first epoch is not counted)\n")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # before Keras is imported
    command = "python benchmarks/throughput.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                    if (argv if argv is not None else sys.argv[1:]) else "")
    import logging

    from keras_loss_recipes.runtime.quiet import start_backend

    start_backend()  # Keras and its backend, without the CPU-machine start-up chatter
    import keras

    from benchmarks.plain_convnet import build_convnet

    # Every fit builds fresh models, so TensorFlow's retracing advice is expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from keras_loss_recipes.runtime.backends import cpu_name

    began = time.time()
    splits = data(args.images)
    flops = hardware.training_flops_per_sample(build_convnet("float32"))
    peaks = {p: hardware.matmul_peak(MATMUL_DTYPES[p]) for p in args.precisions}
    print("matmul peak, GFLOP/s: " + ", ".join(f"{p} {v:.1f}" for p, v in peaks.items()), flush=True)
    fits = run_fits(args, splits)
    summary = summarize(fits, len(splits.y_train), flops, peaks)
    process = None if args.no_processes else run_processes(args)
    results = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "features": hardware.cpu_features(),
                    "backend": keras.backend.backend(), "versions": versions()},
        "settings": {"images": len(splits.y_train), "validation_images": len(splits.y_val), "batch": args.batch,
                     "epochs": args.epochs, "repeats": args.repeats, "precisions": args.precisions,
                     "sides": args.sides},
        "flops": {"forward_per_sample": hardware.forward_flops_per_sample(build_convnet("float32")),
                  "training_per_sample": flops},
        "matmul_peak_gflops": peaks,
        "fits": fits,
        "summary": summary,
        "processes": process,
        "profile": None if args.no_profile else profile_framework(splits, args.epochs, profile_precision(summary)),
        "backends": other_backends(args),
    }
    results["goals"] = goals(summary, process)
    results["seconds"] = time.time() - began
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "performance.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out / 'performance.json'}", flush=True)
    if not args.no_docs:
        from benchmarks.performance_page import write_page

        print(f"wrote {write_page(args.out / 'performance.json')}", flush=True)
    for goal in results["goals"]:
        if goal["value"] is None:  # its precision or side was not in this run
            continue
        held = "-" if goal["held"] is None else ("held" if goal["held"] else "MISSED")
        print(f"{held:7s} {goal['goal']}: {goal['value']:.2f} ({'>=' if goal['at_least'] else '<='} {goal['target']})")
    unmeasured = [goal["goal"] for goal in results["goals"] if goal["value"] is None]
    if unmeasured:
        print(f"not measured in this run (its precisions or sides were left out): {'; '.join(unmeasured)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
