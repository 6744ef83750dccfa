"""What the stability telemetry costs: `StabilityMonitor` in a plain Keras script, and the recipes' telemetry.

    python benchmarks/telemetry_cost.py            # writes docs/telemetry_cost.json and .md (about 15 min, 2 cores)
    python benchmarks/telemetry_cost.py --backends jax --pairs 1 --recipe-pairs 2 --images 4000 --out /tmp/cost
    python benchmarks/telemetry_cost.py --backends tensorflow --pairs 40 --skip-recipes --out /tmp/tf   # more pairs
    python benchmarks/telemetry_cost.py --merge /tmp/tf/telemetry_cost.json    # ... put into docs/, the page again
    python benchmarks/telemetry_cost.py --backends tensorflow --hooks begin --skip-recipes --out /tmp/begin
                                                   # one of the monitor's hooks alone (begin: the weights' copy)

Both parts train the keras.io "Simple MNIST convnet" on the embedded MNIST training split tiled to `--images`
(54,000 by default: what keras.io's fit trains on after its validation_split=0.1 of 60,000), batch 128,
validating on the 500 validation images. A *whole epoch* is what a user waits for: training, validation and
every epoch-end callback. The first epoch of every fit (tracing, warm-up) is never counted.

1. **The monitor, per installed backend** (a child process each): the plain script of benchmarks/plain_convnet.py
   fits once with `StabilityMonitor(probe=256 training images, log_dir=...)` switched on and off from one epoch
   to the next (its epoch hooks are called or skipped; `on_train_begin`'s loss-path check runs once, in the
   warm-up epoch, and is timed apart). Epochs 1 and 2 are a pair, 3 and 4 the next, and so on, the monitored
   epoch first in every other pair, so a drift of the machine's speed cancels out. Each pair gives one ratio,
   monitored / plain: the same compiled step, the same data, seconds apart. Beside it, the seconds spent in
   the monitor's own hooks (its figures, TensorBoard writes and its copy of the weights).
2. **The recipes' telemetry** (`telemetry=on`, the default, against `telemetry=off`), per precision, on
   TensorFlow. The telemetry is part of the compiled training step, so it cannot be switched within a fit:
   the recipe's network is compiled twice in one session, with and without it, and trained in turns, a
   block of `--block-steps` steps each (one pass over that many batches, a short epoch of its own: with
   telemetry, its figures are read and written at the block's end, as the recipe's StabilityLogger does at
   an epoch's end, so the epoch-end share is counted once per block: more often than in a real epoch).
   Whole runs of the recipe vary too much from one to the next on a shared machine to show a few percent.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COMMAND = "python benchmarks/telemetry_cost.py"
PROBE = 256
BATCH = 128
RECIPE_PRECISIONS = ("float32", "mixed_bfloat16")


def training_splits(images: int):
    """The embedded split with its training images tiled to `images`."""
    import dataclasses

    import numpy as np

    from keras_loss_recipes.data.embedded import load_embedded

    splits = load_embedded(500, 500, 0)
    return dataclasses.replace(splits, x_train=np.resize(splits.x_train, (images, *splits.x_train.shape[1:])),
                               y_train=np.resize(splits.y_train, images))


def monitored_epochs(pairs: int) -> list[bool]:
    """Which epochs the monitor runs in: the warm-up epoch, then pairs whose order swaps every other pair."""
    schedule = [True]
    for pair in range(pairs):
        schedule += [True, False] if pair % 2 == 0 else [False, True]
    return schedule


HOOKS = ("both", "begin", "end")  # which of the monitor's epoch hooks a monitored epoch runs (--hooks)


def switched(monitor, schedule: list[bool], hooks: str = "both"):
    """A callback that passes the epoch hooks on to `monitor` in the epochs `schedule` marks, timing them;
    `hooks`: both, or only the epoch-start hook (the weights' host copy) or only the epoch-end one (the figures
    on the probe, the TensorBoard write)."""
    import keras

    class Switched(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.hook_s = [0.0] * len(schedule)
            self.train_begin_s = None

        def set_model(self, model):
            super().set_model(model)
            monitor.set_model(model)

        def _timed(self, epoch, hook, *args):
            began = time.perf_counter()
            hook(*args)
            self.hook_s[epoch] += time.perf_counter() - began

        def on_train_begin(self, logs=None):
            began = time.perf_counter()
            monitor.on_train_begin(logs)
            self.train_begin_s = time.perf_counter() - began

        def on_epoch_begin(self, epoch, logs=None):
            if schedule[epoch] and hooks in ("both", "begin"):
                self._timed(epoch, monitor.on_epoch_begin, epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            if schedule[epoch] and hooks in ("both", "end"):
                self._timed(epoch, monitor.on_epoch_end, epoch, logs)

        def on_train_end(self, logs=None):
            monitor.on_train_end(logs)

    return Switched()


def measure_monitor(pairs: int, images: int, hooks: str = "both") -> dict:
    """This process's backend: one fit, the monitor switched on and off epoch by epoch. Each epoch's training
    part (its steps, TrainThroughput's `epoch_seconds`) is recorded beside the whole."""
    import warnings

    import keras

    from benchmarks.plain_convnet import build_convnet
    from keras_loss_recipes import StabilityMonitor
    from keras_loss_recipes.data.pipeline import scale_images
    from keras_loss_recipes.training.callbacks import TrainThroughput

    warnings.simplefilter("ignore")  # the monitor's loss-path warning on JAX and PyTorch: measured, not shown
    splits = training_splits(images)
    x, x_val = scale_images(splits.x_train), scale_images(splits.x_val)
    y, y_val = keras.utils.to_categorical(splits.y_train, 10), keras.utils.to_categorical(splits.y_val, 10)
    model = build_convnet()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    schedule = monitored_epochs(pairs)
    timer = TrainThroughput(len(y))
    with tempfile.TemporaryDirectory() as log_dir:
        monitor = switched(StabilityMonitor(probe=(x[:PROBE], y[:PROBE]), log_dir=log_dir), schedule, hooks)
        model.fit(x, y, batch_size=BATCH, epochs=len(schedule), validation_data=(x_val, y_val), verbose=0,
                  callbacks=[timer, monitor])
    wall, train = timer.epoch_wall_seconds, timer.epoch_seconds
    on = [wall[e] for e in range(1, len(schedule)) if schedule[e]]
    off = [wall[e] for e in range(1, len(schedule)) if not schedule[e]]
    train_on = [train[e] for e in range(1, len(schedule)) if schedule[e]]
    train_off = [train[e] for e in range(1, len(schedule)) if not schedule[e]]
    return {"backend": keras.backend.backend(), "train_images": len(y), "schedule": schedule, "hooks": hooks,
            "epoch_wall_s": wall, "monitored_epoch_s": on, "plain_epoch_s": off,
            "ratios": [m / p for m, p in zip(on, off)],
            "epoch_train_s": train, "train_ratios": [m / p for m, p in zip(train_on, train_off)],
            "hook_s": [s for e, s in enumerate(monitor.hook_s) if e and schedule[e]],
            "train_begin_s": monitor.train_begin_s}


@contextlib.contextmanager
def recipe_models(precision: str, images: int, run_dir: str):
    """The recipe's network compiled twice in one session, telemetry off and on, with the training data."""
    from benchmarks.sides import framework_config
    from keras_loss_recipes.config.settings import check_loss
    from keras_loss_recipes.lifecycle.run import Run
    from keras_loss_recipes.recipes.train import build_and_compile, set_random_seed
    from keras_loss_recipes.recipes.train.context import Training
    from keras_loss_recipes.runtime.session import started_session

    splits = training_splits(images)
    base = ["loss=sparse_from_logits", f"trainer.batch_size={BATCH}", f"trainer.precision={precision}",
            "trainer.verbose=0"]
    configs = {on: framework_config([*base, f"telemetry={'on' if on else 'off'}"]) for on in (False, True)}
    with Run(configs[True], run_dir).opened() as run, started_session(configs[True].trainer) as session:
        models = {}
        for on, cfg in configs.items():
            set_random_seed(cfg.seed)
            job = Training(cfg, check_loss(cfg), splits, run, session)
            models[on] = build_and_compile(job)[0]
        yield models, job.dataset(splits.x_train, splits.y_train, shuffle=True)


def measure_recipes(blocks: int, block_steps: int, images: int) -> list[dict]:
    """Per precision, blocks of `block_steps` training steps, each a short epoch of its own (its stability
    figures read and written at its end, as the recipe's StabilityLogger does), alternating between the
    network with telemetry and without; the order swaps every other pair."""
    import keras

    from keras_loss_recipes.training.callbacks import StabilityLogger

    rows = []
    for precision in RECIPE_PRECISIONS:
        with tempfile.TemporaryDirectory() as run_dir, recipe_models(precision, images, run_dir) as (models, data):
            logger = StabilityLogger(Path(run_dir) / "train")
            logger.on_train_end = lambda logs=None: None  # each block's fit ends; the event file goes on

            def block(on: bool) -> float:
                began = time.perf_counter()
                models[on].fit(data.take(block_steps), epochs=1, verbose=0, shuffle=False,
                               callbacks=[logger] if on else [])
                return time.perf_counter() - began

            block(False), block(True)  # tracing and warm-up
            off, on = [], []
            for pair in range(blocks):
                for telemetry in (False, True) if pair % 2 == 0 else (True, False):
                    (on if telemetry else off).append(block(telemetry))
            logger.writer.close()
            if not logger.epochs or not logger.epochs[-1]:
                raise SystemExit("the telemetry wrote no stability figures: the benchmark measures nothing")
        print(f"  {precision}: ratios median {statistics.median(a / b for a, b in zip(on, off)):.3f}",
              file=sys.stderr, flush=True)
        rows.append({"backend": keras.backend.backend(), "precision": precision, "block_steps": block_steps, "figures_per_block": sorted(logger.epochs[-1]),
                     "off_block_s": off, "on_block_s": on, "ratios": [a / b for a, b in zip(on, off)]})
    return rows


def installed_backends() -> list[str]:
    import importlib.util

    return [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]


def in_child(backend: str, args: list[str]):
    done = subprocess.run([sys.executable, __file__, "--child", *args], env={**os.environ, "KERAS_BACKEND": backend},
                          stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{backend}: the benchmark's child process failed (exit {done.returncode}); its errors above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


BURST = 1.5  # an epoch this many times the plain epochs' median: the machine, not the monitor, slowed it


def bursts(row: dict) -> str:
    """How many epochs of each side ran BURST times slower than the plain median: `2 / 3`."""
    typical = statistics.median(row["plain_epoch_s"])
    return " / ".join(str(sum(s > BURST * typical for s in row[side])) for side in ("monitored_epoch_s",
                                                                                 "plain_epoch_s"))


def page(result: dict) -> str:
    monitor, recipes = result["monitor"], result["recipes"]
    commands = result["command"] if isinstance(result["command"], list) else [result["command"]]
    lines = [f"# What the stability telemetry costs (generated by {' and '.join(f'`{c}`' for c in commands)}; "
             "do not edit)", "",
             f"Machine: {result['cpu']}, {result['cores']} cores. The keras.io convnet on "
             f"{result['images']:,} training images per epoch (the embedded MNIST split, tiled), batch {BATCH}, "
             "validating on 500 images. A whole epoch: training, validation and every epoch-end callback. "
             "Figures: median (min-max); a ratio of 1.000 is free.", "",
             "## StabilityMonitor in a plain script", "",
             f"One fit per backend; the monitor (a probe of {PROBE} images, TensorBoard on) switched on and off from "
             "one epoch to the next, pairs of epochs after the warm-up (how many: the table), the monitored epoch first "
             "in every other pair. Ratio: the monitored epoch / the plain one beside it. The monitor's own hooks: "
             "seconds per monitored epoch in its epoch-start and epoch-end hooks. The loss-path check runs once "
             "per fit, at its start. Ratio of the training parts: the same pairs, each epoch's steps alone "
             "(validation and the epoch-end callbacks left out): where an epoch is slow, it says whether its "
             "steps were. The fastest epoch of each side: a burst of the machine only ever adds time, so the two "
             f"fastest epochs are the least disturbed pair. Bursts: the epochs of each side that took more than {BURST:g} "
             "times the plain epochs' median (on this shared 2-core machine whole epochs of TensorFlow's steps "
             "sometimes run at half speed, with the monitor or without).", "",
             "| backend | pairs | hooks run | plain epoch, s | monitored epoch, s | ratio | ratio of the training parts | "
             "fastest monitored / fastest plain | bursts, monitored / plain | in the monitor's hooks, s per epoch | "
             "hooks / plain epoch | loss-path check at the start, s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in monitor:
        share = [h / p for h, p in zip(row["hook_s"], row["plain_epoch_s"])]
        lines.append(f"| {row['backend']} | {len(row['ratios'])} | {row.get('hooks', 'both')} | "
                     f"{spread(row['plain_epoch_s'], 2)} | "
                     f"{spread(row['monitored_epoch_s'], 2)} | {spread(row['ratios'])} | "
                     f"{spread(row['train_ratios']) if row.get('train_ratios') else '-'} | "
                     f"{min(row['monitored_epoch_s']) / min(row['plain_epoch_s']):.3f} | {bursts(row)} | "
                     f"{spread(row['hook_s'], 3)} | "
                     f"{spread(share, 4)} | {row['train_begin_s']:.2f} |")
    lines += ["", "Each epoch, monitored or plain, in the order it ran (whole epoch, s / its training part, s; "
              "m: monitored):", ""]
    for row in monitor:
        epochs = [f"{'m' if on else 'p'} {w:.2f}/{t:.2f}" for on, w, t in
                  zip(row["schedule"][1:], row["epoch_wall_s"][1:], row.get("epoch_train_s", [])[1:])]
        lines.append(f"* {row['backend']}: {', '.join(epochs) or '-'}")
    if not recipes:
        return "\n".join(lines) + "\n"
    lines += ["", "## The recipes' telemetry (`telemetry=on`, the default, against `telemetry=off`)", "",
              "The recipe's network (`loss=sparse_from_logits`) compiled with and without its telemetry in one "
              f"session, trained in turns: {result['recipe_pairs']} pairs of blocks per precision, each block "
              f"{result['block_steps']} steps ({result['block_steps'] * BATCH:,} images), a short epoch with the "
              "stability figures read and written at its end; the order swapped every other pair, after one "
              "warm-up block each. Ratio: the block with telemetry / the block without beside it.", "",
              "| backend | precision | telemetry off, block s | telemetry on, block s | ratio |", "|---|---|---|---|---|"]
    for row in recipes:
        lines.append(f"| {row['backend']} | {row['precision']} | {spread(row['off_block_s'], 2)} | "
                     f"{spread(row['on_block_s'], 2)} | {spread(row['ratios'])} |")
    return "\n".join(lines) + "\n"


def updated(earlier: dict, new: dict) -> dict:
    """`earlier`'s page with what `new` measured in place of its rows: the same machine and sizes, or an error."""
    for key in ("cpu", "cores", "images"):
        if earlier.get(key) != new[key]:
            raise SystemExit(f"error: --update: the earlier page was measured with {key}={earlier.get(key)!r}, this "
                             f"run with {new[key]!r}; measure every part again instead (without --update)")
    measured = {row["backend"] for row in new["monitor"]}
    merged = dict(earlier)
    merged["monitor"] = [row for row in earlier["monitor"] if row["backend"] not in measured] + new["monitor"]
    order = ("tensorflow", "jax", "torch")
    merged["monitor"].sort(key=lambda row: order.index(row["backend"]) if row["backend"] in order else len(order))
    commands = earlier["command"] if isinstance(earlier["command"], list) else [earlier["command"]]
    merged["command"] = [*commands, new["command"]]
    if new["recipes"]:
        merged.update(recipes=new["recipes"], recipe_pairs=new["recipe_pairs"], block_steps=new["block_steps"])
    return merged


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=None, help="the monitor's backends, comma-separated (default: every "
                        "installed one)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of epochs with and without the monitor")
    parser.add_argument("--recipe-pairs", type=int, default=20, help="pairs of blocks per precision")
    parser.add_argument("--block-steps", type=int, default=60, help="training steps per block")
    parser.add_argument("--images", type=int, default=54000)
    parser.add_argument("--hooks", choices=HOOKS, default="both", help="the monitor's epoch hooks a monitored "
                        "epoch runs: both (default), or one of them alone, to tell their costs apart")
    parser.add_argument("--skip-recipes", action="store_true", help="the monitor's part only")
    parser.add_argument("--merge", metavar="JSON", help="put another run's telemetry_cost.json (e.g. more pairs on "
                        "one backend) into the --out folder's, as --update would have, and write the page")
    parser.add_argument("--render", action="store_true", help="only write telemetry_cost.md again from the "
                        "--out folder's telemetry_cost.json")
    parser.add_argument("--update", action="store_true", help="replace only what this run measured (its backends' "
                        "rows, the recipes' part unless skipped) in the --out folder's telemetry_cost.json; keep "
                        "the rest, with the command that measured it")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for telemetry_cost.json and .md")
    parser.add_argument("--child", choices=("monitor", "recipes"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.child == "monitor":
        print(json.dumps(measure_monitor(args.pairs, args.images, args.hooks)))
        return 0
    if args.merge:
        out = Path(args.out)
        merged = updated(json.loads((out / "telemetry_cost.json").read_text()), json.loads(Path(args.merge).read_text()))
        merged["command"].append(f"{COMMAND} --merge {args.merge}")
        (out / "telemetry_cost.json").write_text(json.dumps(merged, indent=1) + "\n")
        args.render = True
    if args.render:
        out = Path(args.out)
        (out / "telemetry_cost.md").write_text(page(json.loads((out / "telemetry_cost.json").read_text())))
        print(f"wrote {out / 'telemetry_cost.md'}")
        return 0
    if args.child == "recipes":
        print(json.dumps(measure_recipes(args.recipe_pairs, args.block_steps, args.block_steps * BATCH)))
        return 0
    sizes = ["--images", str(args.images), "--pairs", str(args.pairs), "--recipe-pairs", str(args.recipe_pairs),
             "--block-steps", str(args.block_steps), "--hooks", args.hooks]
    monitor = []
    for backend in args.backends.split(",") if args.backends else installed_backends():
        print(f"{backend}: the monitor, {args.pairs} pairs of epochs ...", flush=True)
        monitor.append(in_child(backend, ["monitor", *sizes]))
        print(f"  ratios {', '.join(f'{r:.3f}' for r in monitor[-1]['ratios'])}; training part "
              f"{', '.join(f'{r:.3f}' for r in monitor[-1]['train_ratios'])}", flush=True)
    recipes = []
    if not args.skip_recipes:
        print(f"tensorflow: the recipes, {args.recipe_pairs} pairs of blocks per precision ...", flush=True)
        recipes = in_child("tensorflow", ["recipes", *sizes])
    given = sys.argv[1:] if argv is None else list(argv)
    result = {"command": " ".join([COMMAND, *given]), "cpu": cpu_name(), "cores": os.cpu_count(),
              "images": args.images, "pairs": args.pairs, "recipe_pairs": args.recipe_pairs,
              "block_steps": args.block_steps, "monitor": monitor, "recipes": recipes}
    out = Path(args.out)
    if args.update and (out / "telemetry_cost.json").exists():
        result = updated(json.loads((out / "telemetry_cost.json").read_text()), result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "telemetry_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "telemetry_cost.md").write_text(page(result))
    print(f"wrote {out / 'telemetry_cost.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
