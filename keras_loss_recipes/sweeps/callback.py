"""The Hydra callback of a multirun: its HParams experiment, its reports, and exit 1 if a job failed.

What counts as a failed job: sweeps/outcome.py."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from keras_loss_recipes.sweeps import job_names

log = logging.getLogger(__name__)
# Job directories are named by `${job_dir:...}` (configs/train.yaml). Hydra loads this module
# for the callback in every process that runs a job, whichever launcher starts it.
job_names.register()


def summary_table(runs: list[dict]) -> str:
    def num(v):
        return "-" if not isinstance(v, (int, float)) else f"{v:.4f}"

    width = max(len(r["run"]) for r in runs)
    lines = [f"{'job':<{width}}  {'status':<9} {'loss_path':<24} {'val_acc':>8} {'test_acc':>8} {'test_CE':>9}  error / where it broke"]
    for r in runs:
        lines.append(
            f"{r['run']:<{width}}  {r.get('status', '?'):<9} {str(r.get('loss_path') or '-'):<24} "
            f"{num(r.get('val_accuracy')):>8} {num(r.get('test_accuracy')):>8} {num(r.get('test_exact_ce')):>9}  "
            f"{_note(r)[:80]}"
        )
    return "\n".join(lines)


def _note(run: dict) -> str:
    """The last column: a failed job's error, where a job's first NaN/inf began, or what stopped a resumed job
    before (a preemption it was requeued after)."""
    if run.get("error"):
        return run["error"]
    if run.get("origin"):
        return f"broke: {run['origin']}"
    return f"resumed after: {run['earlier_attempts']}" if run.get("earlier_attempts") else ""


class SweepReport(Callback):
    def on_multirun_start(self, config, **kwargs) -> None:
        from keras_loss_recipes.sweeps.comparison import mark_sweep
        from keras_loss_recipes.reporting.hparams import declare_experiment
        from keras_loss_recipes.sweeps.outcome import note_start
        from keras_loss_recipes.reporting.tensorboard_views import write_layout
        from keras_loss_recipes.sweeps.job_names import swept_keys

        sweep_dir = Path(config.hydra.sweep.dir)
        overrides = list(config.hydra.overrides.task)
        swept = swept_keys(overrides, dict(config.hydra.sweeper.get("params") or {}))
        note_start(sweep_dir)  # the jobs written from now on are this multirun's
        mark_sweep(sweep_dir, overrides, swept)  # before any job: their directory names read it
        declare_experiment(sweep_dir, swept)
        write_layout(sweep_dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        """The report of every job, as any ended; then, if a job gave no result, one line and exit code 1."""
        from keras_loss_recipes.sweeps.outcome import outcome

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            _report(sweep_dir)
        except Exception:  # a fault of the report's own: said, and the jobs are still judged
            log.exception("the comparison report failed")
        ended = outcome(sweep_dir)
        if ended.failed:
            print(ended.line(), file=sys.stderr, flush=True)
            raise SystemExit(1)  # not an Exception: Hydra's callbacks pass it on, and the process ends with it


def _report(sweep_dir: Path) -> None:
    """comparison.{md,csv,png}, and the summary on the console."""
    from keras_loss_recipes.sweeps.comparison import write_report
    from keras_loss_recipes.runtime.errors import UserError

    try:
        report = write_report(sweep_dir)
    except UserError as err:
        log.warning("no comparison report: %s", err)
        return
    if report["kind"] == "search":
        log.info("search summary (%d trials, ranked by %s, best first):\n%s\n%s", len(report["runs"]),
                 report["objective"], report["summary"], report["best"])
    else:
        log.info("sweep summary (%d jobs):\n%s", len(report["runs"]), summary_table(report["runs"]))
        log.info("comparison by %s:\n%s", ", ".join(report["keys"]), report["table"])
    log.info("report: %s/comparison.{md,csv,png}; dashboards: tensorboard --logdir %s", sweep_dir, sweep_dir)
