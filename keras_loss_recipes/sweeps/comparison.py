"""The comparison report of a sweep: which formulation did what, over seeds.

`write_report(sweep_dir)` writes into the sweep directory:
    comparison.csv   one row per run: every config value, status, metrics
    comparison.md    of a grid, one row per group (the config values that vary, seed aside):
                     mean +- std over seeds of the runs that finished `ok`;
                     diverged and failed runs are counted, never averaged in; and their
                     calibration: the temperature each fitted on its validation logits, and
                     the test ECE and NLL before and after it
    comparison.png   test accuracy and exact CE per group, validation accuracy per epoch; groups closer than
                     their spread over seeds are drawn equal (comparison_figure.py)
    comparison/      the same table (text) and figure (image) for TensorBoard
A search (an Optuna sweep, `sweep_record`) gets its own .md and .png instead:
its trials ranked by the objective, the best one, and its progress (`search_report`).
It runs by itself at the end of every multirun (`sweep.SweepReport`), and on
demand with `python -m keras_loss_recipes.cli.compare <sweep dir>`.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from keras_loss_recipes.sweeps.comparison_figure import plot
from keras_loss_recipes.reporting.calibration import (
    CALIBRATION_KEYS, ECE_BINS, SCORE_NAMES, after_key, at_bound, before_after, before_key, confidence)
from keras_loss_recipes.reporting.results import earlier_attempts
from keras_loss_recipes.sweeps.search_report import write_search_report
from keras_loss_recipes.sweeps.record import hydra_record, job_number, search_of
from keras_loss_recipes.reporting.spread import mean_std
from keras_loss_recipes.runtime import atomic
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.run_files import METRICS_FILE, MOVED_ASIDE
from keras_loss_recipes.sweeps.job_names import SWEEP_FILE

# Vary between runs without defining a group (recipe.run_name follows the model and the loss).
IGNORED_KEYS = {"seed", "trainer.verbose", "recipe.run_name"}
RUN_FIELDS = [
    "run", "status", "loss", "loss_path", "backend", "seed", "val_accuracy", "val_exact_ce", "test_accuracy", "test_loss",
    "test_exact_ce", *CALIBRATION_KEYS, "nonfinite_steps", "first_nonfinite_step", "origin", "epochs_completed",
    "train_samples_per_s", "wall_s", "error", "resumed",
    "attempts", "earlier_attempts",  # how often it ran, and what stopped each attempt before the last
    "job",
]


def mark_sweep(sweep_dir: Path, overrides: list[str], swept: list[str] = ()) -> None:
    """Record the sweep's overrides and the keys it varies (which name its job directories)."""
    import time

    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    marker = Path(sweep_dir) / SWEEP_FILE  # written by sweep.SweepReport when a multirun starts
    if not marker.exists():
        atomic.write_text(marker, json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "overrides": overrides,
                                      "swept": list(swept)}, indent=2) + "\n")


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def collect_runs(sweep_dir: Path) -> list[dict]:
    """Every run under `sweep_dir` that wrote a metrics.json, with its flattened config."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such directory")
    if not any((sweep_dir / name).is_file() for name in (SWEEP_FILE, "multirun.yaml")):
        raise UserError(
            f"{sweep_dir}: not a sweep directory (a multirun leaves {SWEEP_FILE} or multirun.yaml "
            "there); pass the directory a multirun printed, e.g. runs/sweeps/<time>"
        )
    runs = []
    for path in sorted(sweep_dir.rglob(METRICS_FILE)):
        if path.parent == sweep_dir or MOVED_ASIDE in str(path.parent.relative_to(sweep_dir)):
            continue  # a run moved aside (trainer.overwrite=true) is not one of the sweep's jobs
        metrics = json.loads(path.read_text())
        if metrics.get("recipe", "train") != "train":
            continue
        first = metrics.get("first_nonfinite") or {}
        record = hydra_record(path.parent)
        runs.append({
            **metrics,
            "run": str(path.parent.relative_to(sweep_dir)),
            "first_nonfinite_step": first.get("step"),
            "origin": (metrics.get("nonfinite_origin") or {}).get("where"),  # where the first NaN/inf began
            "earlier_attempts": "; ".join(stopped := earlier_attempts(path.parent)),  # what stopped it before
            "attempts": len(stopped) + 1,
            "flat_config": flatten(metrics.get("config", {})),
            "job": job_number(record),
            "sweeper": record.get("sweeper"),
        })
    if not runs:
        raise UserError(f"{sweep_dir}: no run of this sweep has written its metrics.json yet")
    return runs


def varying_keys(runs: list[dict]) -> list[str]:
    """The config keys that take two or more values across the runs. A key some runs lack (an option of one
    model that another does not take) varies only where the runs that have it differ."""
    keys = sorted({k for r in runs for k in r["flat_config"]})
    varying = [k for k in keys if len({repr(r["flat_config"][k]) for r in runs if k in r["flat_config"]}) > 1]
    return [k for k in varying if k not in IGNORED_KEYS] or ["loss.name"]


def short_key(key: str) -> str:
    """`loss.name` reads better as `loss`."""
    return key[: -len(".name")] if key.endswith(".name") else key


def group_label(run: dict, keys: list[str]) -> str:
    """The run's values of `keys`; a key it lacks is left out (its model takes no such option)."""
    return ", ".join(f"{short_key(k)}={run['flat_config'][k]}" for k in keys if k in run["flat_config"])


def summarize(runs: list[dict], keys: list[str]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(group_label(run, keys), []).append(run)
    rows = []
    for label, members in groups.items():
        ok = [r for r in members if r.get("status") == "ok"]
        firsts = [r["first_nonfinite_step"] for r in members if r.get("first_nonfinite_step") is not None]
        rows.append({
            "group": label,
            "runs": len(members),
            "ok": len(ok),
            "diverged": sum(r.get("status") == "diverged" for r in members),
            "failed": sum(r.get("status") == "failed" for r in members),
            "test_accuracy": mean_std([r.get("test_accuracy") for r in ok]),
            "test_exact_ce": mean_std([r.get("test_exact_ce") for r in ok]),
            "first_nan_step": statistics.median(firsts) if firsts else None,
            "origins": sorted({r["origin"] for r in members if r.get("origin")}),
            "nonfinite_steps": mean_std([r.get("nonfinite_steps") for r in members if r.get("status") != "failed"])[0],
            "loss_path": "/".join(sorted({r.get("loss_path") for r in members if r.get("loss_path")})) or "-",
            "samples_per_s": mean_std([r.get("train_samples_per_s") for r in ok])[0],
            "val_curves": [r.get("history", {}).get("val_accuracy", []) for r in ok],
            **{key: mean_std([r.get(key) for r in ok]) for key in CALIBRATION_KEYS},
        })
    return rows


def _fmt(pair, digits=3) -> str:
    mean, std = pair
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| group | runs | ok | diverged | failed | test accuracy | test exact CE | first NaN step | where it broke "
        "| nonfinite steps | loss_path | samples/s | fitted T | "
        + " | ".join(f"test {SCORE_NAMES[s]} before → after" for s in CALIBRATION_SCORES) + " |",
        "|---" * (13 + len(CALIBRATION_SCORES)) + "|",
    ]
    for r in rows:
        first_nan = "-" if r["first_nan_step"] is None else f"{r['first_nan_step']:g}"
        nonfinite = "-" if r["nonfinite_steps"] is None else f"{r['nonfinite_steps']:g}"
        speed = "-" if r["samples_per_s"] is None else f"{r['samples_per_s']:.0f}"
        lines.append(
            f"| {r['group']} | {r['runs']} | {r['ok']} | {r['diverged']} | {r['failed']} | "
            f"{_fmt(r['test_accuracy'])} | {_fmt(r['test_exact_ce'])} | {first_nan} | {'; '.join(r['origins']) or '-'} | "
            f"{nonfinite} | "
            f"{r['loss_path']} | {speed} | {_temperature(r['temperature'])} | "
            + " | ".join(before_after(r[before_key(s)], r[after_key(s)]) for s in CALIBRATION_SCORES) + " |"
        )
    return "\n".join(lines) + "\n"


CALIBRATION_SCORES = ("ece", "nll")  # in the table; the Brier score too in comparison.csv
CALIBRATION_NOTE = ("Fitted T: the temperature each run fits on its validation logits (temperature scaling: T > 1, "
                    "it was over-confident; T < 1, under-confident), then the test figures before → after dividing "
                    f"the logits by it (means; ECE with {ECE_BINS} bins); the accuracy stays. ")


def _temperature(fitted) -> str:
    """mean ± std (over-confident | under-confident[, at the bound])."""
    if fitted[0] is None:
        return "-"
    return f"{_fmt(fitted)} ({confidence(fitted[0])}" + (", at the bound" if at_bound(fitted[0]) else "") + ")"


def write_tensorboard(sweep_dir: Path, table: str, png: Path) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(sweep_dir / "comparison") as writer:
        writer.text("comparison/table", table, 0)
        writer.png("comparison/figure", png)


def write_csv(sweep_dir: Path, runs: list[dict]) -> None:
    # The config's keys after the run's fields, each once (`backend` and `seed` are both).
    config_keys = sorted({k for r in runs for k in r["flat_config"]} - set(RUN_FIELDS))
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=RUN_FIELDS + config_keys, extrasaction="ignore")
    writer.writeheader()
    for r in runs:
        writer.writerow({**{k: r.get(k) for k in RUN_FIELDS}, **r["flat_config"]})
    atomic.write_text(sweep_dir / "comparison.csv", handle.getvalue())


def write_grid_report(sweep_dir: Path, runs: list[dict]) -> dict:
    keys = varying_keys(runs)
    rows = summarize(runs, keys)
    table = markdown_table(rows)
    atomic.write_text(
        sweep_dir / "comparison.md",
        f"# Comparison of {len(runs)} runs in {sweep_dir}\n\nGrouped by: {', '.join(keys)}. "
        "Means and stds are over the runs that finished `ok`; diverged and failed runs are counted. "
        "Test figures are each run's last.keras (the model after the last epoch). " + CALIBRATION_NOTE + "\n\n"
        + table
    )
    plot(rows, sweep_dir / "comparison.png")
    return {"kind": "grid", "runs": runs, "rows": rows, "keys": keys, "table": table}


def write_report(sweep_dir: Path, tensorboard: bool = True) -> dict:
    """The grid's report, or a search's (told apart by the sweeper each job recorded)."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir)
    write_csv(sweep_dir, runs)
    search = search_of([r["sweeper"] for r in runs], next(
        (r["flat_config"]["optimized_metric"] for r in runs if "optimized_metric" in r["flat_config"]), None))
    if search is None:
        report = write_grid_report(sweep_dir, runs)
    else:
        report = write_search_report(sweep_dir, runs, search, list(search.spaces) or varying_keys(runs))
    if tensorboard:
        write_tensorboard(sweep_dir, report["table"], sweep_dir / "comparison.png")
    return report
