"""Sweeps: every job lands in the sweep dir, failures never stop it, HParams and the report are right."""
import itertools
import json
import math
import statistics
import subprocess
import sys

import pytest
import yaml

from keras_loss_recipes.sweeps import comparison as compare
from keras_loss_recipes.sweeps import search_report
from keras_loss_recipes.sweeps.record import search_of
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.sweeps.job_names import job_dir_name, swept_keys
from tests.conftest import ROOT, TINY, needs_module

SWEEP = [*TINY, "trainer.epochs=1"]


def run_metrics(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}


def hparams_plugin_data(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [plugin_data_pb2.HParamsPluginData.FromString(c) for c in acc.PluginTagToContent("hparams").values()]


# --- the report on synthetic runs (fast) ----------------------------------


def fake_run(sweep_dir, name, loss, seed, status="ok", acc=0.9, ce=0.3, first=None):
    run = sweep_dir / name
    run.mkdir(parents=True)
    metrics = {
        "status": status, "loss": loss, "loss_path": "fused_logits", "seed": seed,
        "val_accuracy": acc, "test_accuracy": acc, "test_exact_ce": ce, "nonfinite_steps": 0 if first is None else 1,
        "first_nonfinite": None if first is None else {"epoch": 1, "step": first},
        "train_samples_per_s": 1000.0, "history": {"val_accuracy": [acc - 0.1, acc]},
        "config": {"loss": {"name": loss}, "seed": seed, "trainer": {"epochs": 2}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_report_groups_by_what_varies_and_never_averages_diverged_runs(tmp_path):
    (tmp_path / "multirun.yaml").write_text("{}")
    fake_run(tmp_path, "a0", "from_logits", 0, acc=0.90, ce=0.30)
    fake_run(tmp_path, "a1", "from_logits", 1, acc=0.80, ce=0.50)
    fake_run(tmp_path, "b0", "naive", 0, status="diverged", acc=0.10, ce=math.nan, first=3)
    fake_run(tmp_path, "b1", "naive", 1, acc=0.70, ce=0.90)
    fake_run(tmp_path, "b1.previous-20261201-101010", "naive", 1, acc=0.10, ce=9.0)  # moved aside: no job
    report = compare.write_report(tmp_path, tensorboard=False)
    assert report["keys"] == ["loss.name"]
    rows = {r["group"]: r for r in report["rows"]}
    assert rows["loss=from_logits"]["test_accuracy"] == pytest.approx((0.85, statistics.stdev([0.9, 0.8])))
    naive = rows["loss=naive"]
    assert (naive["runs"], naive["ok"], naive["diverged"]) == (2, 1, 1)
    assert naive["test_accuracy"] == (0.70, 0.0)  # the diverged run is counted, not averaged
    assert naive["first_nan_step"] == 3
    md = (tmp_path / "comparison.md").read_text()
    assert "| loss=naive | 2 | 1 | 1 | 0 | 0.700 ± 0.000 |" in md
    csv_lines = (tmp_path / "comparison.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("run,status,loss,loss_path")
    header = csv_lines[0].split(",")
    assert len(header) == len(set(header)), header  # each column once
    assert (tmp_path / "comparison.png").stat().st_size > 5000


def test_an_option_one_model_takes_and_another_lacks_is_no_group_key():
    mlp = {"flat_config": {"model.name": "mlp", "model.hidden_units": 128, "loss.name": "a"}}
    yours = {"flat_config": {"model.name": "my_models.build", "loss.name": "a"}}
    assert compare.varying_keys([mlp, yours]) == ["model.name"]
    wider = {"flat_config": {**mlp["flat_config"], "model.hidden_units": 256}}
    assert compare.varying_keys([mlp, wider, yours]) == ["model.hidden_units", "model.name"]
    keys = compare.varying_keys([mlp, wider, yours])
    assert [compare.group_label(r, keys) for r in (mlp, yours)] == ["model.hidden_units=128, model=mlp",
                                                                   "model=my_models.build"]


def test_a_sweep_whose_every_job_failed_still_gets_its_report(tmp_path):
    """As failures.record_failure writes a failed job: no path, no figures, the error."""
    compare.mark_sweep(tmp_path, ["loss=softmax_ce,naive"])
    for num, loss in enumerate(("softmax_ce", "naive")):
        (tmp_path / f"0{num}_loss-{loss}").mkdir()
        (tmp_path / f"0{num}_loss-{loss}" / "metrics.json").write_text(json.dumps({
            "status": "failed", "error": "SlurmJobEnded: SLURM job 1_0 ended CANCELLED", "loss": loss, "seed": 0,
            "config": {"loss": {"name": loss}, "seed": 0}}))
    report = compare.write_report(tmp_path, tensorboard=False)
    assert [(r["runs"], r["ok"], r["failed"]) for r in report["rows"]] == [(1, 0, 1), (1, 0, 1)]
    assert (tmp_path / "comparison.png").stat().st_size > 5000


def test_report_refuses_a_directory_that_is_not_a_sweep(tmp_path):
    with pytest.raises(UserError, match="not a sweep directory"):
        compare.write_report(tmp_path)
    result = subprocess.run([sys.executable, "-m", "keras_loss_recipes.cli.compare", str(tmp_path / "nope")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "no such directory" in result.stderr and "Traceback" not in result.stderr


def test_the_exit_code_judges_the_jobs_this_multirun_ran_and_takes_a_diverged_job_as_a_result(tmp_path):
    """sweep_outcome on job directories as jobs leave them: an earlier multirun's job and a run moved aside are
    not this multirun's; diverged is a result; preempted and no metrics.json are not."""
    import os

    from keras_loss_recipes.sweeps import outcome as sweep_outcome

    def job(name, status=None, hydra=True, age_s=0.0):
        run = tmp_path / name
        (run / ".hydra").mkdir(parents=True)
        written = [run / ".hydra" / "hydra.yaml"] if hydra else []
        if status:
            written.append(run / "metrics.json")
        for path in written:
            path.write_text(json.dumps({"status": status}) if path.name == "metrics.json" else "hydra: {}")
            os.utime(path, (path.stat().st_mtime - age_s,) * 2)

    job("00_earlier", "failed", age_s=3600)  # left by an earlier multirun into this directory
    sweep_outcome.note_start(tmp_path)
    job("01_ok", "ok")
    job("02_nan", "diverged")
    job("03_stopped", "preempted")
    job("04_bad", "failed")
    job("04_bad.previous-20261201-101010", "failed")  # an earlier run of that job, moved aside
    job("05_cancelled_before_it_started", "failed", hydra=False)  # as the SLURM launcher records it
    job("06_crashed")
    ended = sweep_outcome.outcome(tmp_path)
    assert [j.name for j in ended.jobs] == ["01_ok", "02_nan", "03_stopped", "04_bad", "05_cancelled_before_it_started",
                                            "06_crashed"]
    assert ended.line() == (
        f"4 of 6 jobs failed: {tmp_path / '03_stopped'} (preempted: the same command resumes it), {tmp_path / '04_bad'}, "
        f"{tmp_path / '05_cancelled_before_it_started'}, {tmp_path / '06_crashed'} (no metrics.json)")


# --- the comparison figure's drawing decisions, on made-up numbers (fast) ---


def test_the_figure_draws_groups_closer_than_their_resolution_as_equal():
    from keras_loss_recipes.sweeps import comparison_figure as figure

    # Three formulations that ended within 3e-9 of each other, one run each: one tie, drawn at one value.
    drawn, tie_of = figure.drawn_values([(1.848330001, 0.0), (1.848330003, 0.0), (1.848330002, 0.0)])
    assert tie_of == [0, 0, 0] and len(set(drawn)) == 1
    assert figure.value_labels(drawn, tie_of) == ["1.848 (tied)"] * 3
    # One run a group: the resolution is 1e-6 of the value.
    assert figure.ties([(1.0, 0.0), (1.000002, 0.0)]) == [0, 1]
    assert figure.ties([(1.0, 0.0), (1.0000009, 0.0)]) == [0, 0]
    # Several seeds: a difference within a group's std is a tie; a group with no ok run has none.
    assert figure.ties([(0.80, 0.05), (0.83, 0.01), (0.90, 0.01), (None, None)]) == [0, 0, 1, None]
    # A chain of small steps does not join values further apart than the resolution.
    assert figure.ties([(1.0, 0.1), (1.08, 0.1), (1.16, 0.1), (1.24, 0.1)]) == [0, 0, 1, 1]
    # Labels carry the digits that tell different values apart, and no more.
    drawn, tie_of = figure.drawn_values([(1.75016, 0.0), (1.75019, 0.0), (37.2161, 0.0)])
    assert figure.value_labels(drawn, tie_of) == ["1.75016", "1.75019", "37.2161"]


def test_the_figure_uses_a_log_axis_only_where_the_values_span_more_than_ten_times():
    from keras_loss_recipes.sweeps.comparison_figure import use_log_scale

    assert not use_log_scale([37.2, 37.2, 235.8])  # 6x: linear
    assert use_log_scale([0.9, 0.91, 45.0])  # 50x
    assert not use_log_scale([1.0, 10.0])  # 10x exactly: linear
    assert not use_log_scale([0.0, 5.0, 100.0])  # a zero has no place on a log axis
    assert not use_log_scale([2.0, None, float("nan")])


def figure_row(group, ce, acc=0.65, std=0.0, path="fused_logits", curves=([0.41, 0.64],)):
    return {"group": group, "runs": 1, "ok": 1, "diverged": 0, "failed": 0, "loss_path": path,
            "test_accuracy": (acc, std), "test_exact_ce": (ce, std), "val_curves": list(curves)}


def test_the_figure_of_a_tie_has_equal_bars_plain_tick_labels_and_whole_epochs():
    import matplotlib.pyplot as plt

    from keras_loss_recipes.sweeps import comparison_figure as figure

    def shown_ticks(ax, axis):
        low, high = sorted(getattr(ax, f"get_{axis}lim")())
        return [t for t in getattr(ax, f"get_{axis}ticklabels")() if low <= t.get_position()[axis == "y"] <= high]

    rows = [figure_row("loss=from_logits", 1.848330001), figure_row("loss=sparse_from_logits", 1.848330003),
            figure_row("loss=softmax_ce", 1.848330002, path="rescued_softmax")]
    fig = figure.draw(rows)
    fig.canvas.draw()
    accuracy, ce, curves = fig.axes
    assert ce.get_xscale() == "linear" and ce.get_xlim()[0] == 0
    assert len({bar.get_width() for bar in ce.patches}) == 1 and len(ce.patches) == 3
    # Plain numbers, each read as written: no offset, no "x 10^0".
    for ax in (accuracy, ce):
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert [float(t.get_text()) for t in shown_ticks(ax, "x")]
    epochs = [float(t.get_text()) for t in shown_ticks(curves, "x")]
    assert epochs == [1.0, 2.0]
    assert "(the same curve as loss=from_logits)" in curves.get_legend().get_texts()[2].get_text()
    plt.close(fig)
    # 50x apart: a log axis, dots rather than bars, its ticks plain numbers too.
    fig = figure.draw([figure_row("loss=softmax_ce", 0.9, std=0.01), figure_row("loss=clipped_probs", 45.0, std=2.0)])
    fig.canvas.draw()
    ce = fig.axes[1]
    assert ce.get_xscale() == "log" and not ce.patches
    assert all(float(t.get_text()) > 0 for t in shown_ticks(ce, "x") if t.get_text())
    assert len([t for t in shown_ticks(ce, "x") if t.get_text()]) >= 3
    plt.close(fig)


# --- a search (Optuna) against a grid, on synthetic runs (fast) ------------

OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
SPACES = {"optimizer.learning_rate": "tag(log, interval(0.0001, 0.01))", "trainer.batch_size": "choice(64, 128, 256)",
          "loss.label_smoothing": "interval(0.0, 0.2)", "loss.temperature": "interval(0.5, 2.0)"}


def fake_job(sweep_dir, num, sweeper, val_acc, lr, batch, smoothing, temperature, status="ok", val_ce=None,
             **config_keys):
    """A job as Hydra and train.py leave it: .hydra/hydra.yaml (sweeper, job number) and metrics.json."""
    import yaml

    run = sweep_dir / f"job_{num}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"sweeper": sweeper, "job": {"num": num}}}, sort_keys=False))
    config = {"loss": {"name": "from_logits", "label_smoothing": smoothing, "temperature": temperature},
              "optimizer": {"learning_rate": lr}, "trainer": {"batch_size": batch}, "seed": 0, **config_keys}
    (run / "metrics.json").write_text(json.dumps({
        "status": status, "loss": "from_logits", "loss_path": "fused_logits", "val_accuracy": val_acc,
        "test_accuracy": None if val_acc is None else val_acc - 0.01, "test_exact_ce": 0.5,
        "val_exact_ce": val_ce if val_ce is not None or val_acc is None else 2.0 - val_acc,
        "history": {"val_accuracy": [] if val_acc is None else [val_acc]}, "config": config}))


def test_a_search_report_ranks_the_trials_and_shows_the_best_values_to_the_digits_that_matter(tmp_path):
    compare.mark_sweep(tmp_path, ["hparams_search=optuna"])
    sweeper = {"_target_": OPTUNA, "direction": "maximize", "params": SPACES}
    fake_job(tmp_path, 0, sweeper, 0.50, 0.0007501954443620128, 128, 0.15834500761653292, 1.2933423796293568)
    fake_job(tmp_path, 1, sweeper, None, 0.0093, 256, 0.1, 0.6, status="failed")
    fake_job(tmp_path, 2, sweeper, 0.80, 0.001368009527972693, 64, 0.004043679488065144, 1.748929768321907)
    fake_job(tmp_path, 3, sweeper, 0.70, 0.0012520653814999472, 64, 0.08473095986778095, 1.4688411695999841)
    report = compare.write_report(tmp_path, tensorboard=False)
    assert report["kind"] == "search"
    assert [t["job"] for t in report["trials"]] == [2, 3, 0, 1]  # best first, the failed trial last
    assert report["best"] == ("best: trial 2, validation accuracy 0.8000 (test accuracy 0.7900): optimizer.learning_rate=0.0014 "
                              "trainer.batch_size=64 loss.label_smoothing=0.004 loss.temperature=1.75")
    assert search_report.progress(report["runs"], search_of([sweeper])) == [(0, 0.5, 0.5), (2, 0.8, 0.8), (3, 0.7, 0.8)]
    summary = report["summary"].splitlines()
    assert summary[0].split() == ["rank", "trial", "status", "val_acc", "test_acc", "test_CE",
                                  "learning_rate", "batch_size", "label_smoothing", "temperature"]
    assert summary[1].split() == ["1", "2", "ok", "0.8000", "0.7900", "0.5000", "0.0014", "64", "0.004", "1.75"]
    assert summary[4].split()[:3] == ["4", "1", "failed"] and max(len(line) for line in summary) < 110
    md = (tmp_path / "comparison.md").read_text()
    assert "Grouped by" not in md and "| 2 | 3 | ok | 0.7000 |" in md
    assert (tmp_path / "comparison.png").stat().st_size > 5000


def test_a_search_for_the_lowest_exact_cross_entropy_ranks_the_lowest_first(tmp_path):
    compare.mark_sweep(tmp_path, ["hparams_search=optuna", "optimized_metric=val_exact_ce"])
    sweeper = {"_target_": OPTUNA, "direction": "${objective_direction:${optimized_metric}}", "params": SPACES}
    # The cross entropy ranks the trials against their accuracy: ranking by accuracy gives [1, 2, 0].
    for num, (val_acc, val_ce) in enumerate([(0.5, 1.1), (0.8, 1.4), (0.7, 1.3)]):
        fake_job(tmp_path, num, sweeper, val_acc, 0.001, 64, 0.1, 1.0, optimized_metric="val_exact_ce", val_ce=val_ce)
    report = compare.write_report(tmp_path, tensorboard=False)
    assert [t["job"] for t in report["trials"]] == [0, 2, 1]
    assert report["objective"] == "validation exact cross entropy"
    assert report["best"].startswith("best: trial 0, validation exact cross entropy 1.1000 ")
    assert report["summary"].splitlines()[0].split()[3] == "val_CE"
    assert "set to minimize the validation exact cross entropy" in (tmp_path / "comparison.md").read_text()


def test_a_grid_keeps_the_grouped_report_and_its_figure_fits_long_group_names(tmp_path):
    import warnings

    compare.mark_sweep(tmp_path, [])
    grid = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}
    for num, lr in enumerate([0.001368009527972693, 0.0012520653814999472, 0.0007501954443620128]):
        fake_job(tmp_path, num, grid, 0.5, lr, 64 * (num + 1), 0.08473095986778095 + num, 1.4688411695999841 - num)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        report = compare.write_report(tmp_path, tensorboard=False)
    assert report["kind"] == "grid" and len(report["keys"]) == 4 and len(report["rows"]) == 3
    assert "Grouped by: loss.label_smoothing" in (tmp_path / "comparison.md").read_text()
    assert not [w for w in shown if "layout" in str(w.message)]  # e.g. matplotlib's "Tight layout not applied"


# --- real sweeps through train.py -m ---------------------------------------


@pytest.mark.slow(seconds=60)
def test_sweep_lands_in_one_dir_with_hparams_and_a_matching_report(tiny_sweep):
    sweep, result = tiny_sweep  # TINY_SWEEP: two losses, two seeds
    assert result["returncode"] == 0, result["stderr"][-3000:]
    runs = run_metrics(sweep)
    # Short, shell-safe job directories: the job number, then what the sweep varies.
    assert sorted(runs) == ["00_loss-sparse_from_logits_seed-0", "01_loss-sparse_from_logits_seed-1",
                            "02_loss-clipped_probs_seed-0", "03_loss-clipped_probs_seed-1"]
    assert {m["status"] for m in runs.values()} == {"ok"}
    # HParams: the sweep declares the experiment, marking what it varies and the outcomes as differing;
    # every run is a session with its hparams and its whole overrides.
    [experiment] = hparams_plugin_data(sweep)
    assert {m.name.tag for m in experiment.experiment.metric_infos} >= {"epoch_accuracy", "final/test_accuracy"}
    assert {h.name for h in experiment.experiment.hparam_infos if h.differs} == {"loss", "seed", "status",
                                                                                "loss_path"}
    hp = hparams_plugin_data(sweep / "02_loss-clipped_probs_seed-0")[0].session_start_info.hparams
    assert set(hp["overrides"].string_value.split()) == {*TINY, "loss=clipped_probs", "seed=0"}
    for name, metrics in runs.items():
        [session] = hparams_plugin_data(sweep / name)
        hp = session.session_start_info.hparams
        assert hp["loss"].string_value == metrics["loss"] and hp["status"].string_value == "ok"
        assert hp["seed"].number_value == metrics["seed"]
    # The report's numbers are the runs' numbers.
    rows = {line.split(" | ")[0].strip("| "): line for line in (sweep / "comparison.md").read_text().splitlines()
            if line.startswith("| loss=")}
    accs = [m["test_accuracy"] for m in runs.values() if m["loss"] == "clipped_probs"]
    assert f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}" in rows["loss=clipped_probs"]
    assert "sweep summary (4 jobs)" in result["stdout"] + result["stderr"]
    assert "absl::InitializeLog" not in result["stderr"] and "cuInit" not in result["stderr"]  # a quiet start here too
    # startup_s is each job's own: the first job imports TensorFlow, the later ones start when they start.
    first_job = max(runs.values(), key=lambda m: m["startup_s"])
    for metrics in runs.values():
        if metrics is not first_job:
            assert 0 < metrics["startup_s"] <= metrics["wall_s"] + 0.5
            assert metrics["startup_s"] < first_job["startup_s"]


@pytest.mark.slow(seconds=15)
def test_failing_and_diverging_jobs_do_not_stop_the_sweep(train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = train_cli("-m", *SWEEP, "loss=sparse_from_logits,naive", "stress.logit_scale=1000",
                       "trainer.batch_size=64,0", f"hydra.sweep.dir={sweep}")
    # Every job ran and the report was written (below); then the failed jobs, in one line, and exit code 1.
    # The diverged job is a result: not among them.
    assert result.returncode == 1, result.stderr[-3000:]
    failed_dirs = [sweep / "01_loss-sparse_from_logits_batch_size-0", sweep / "03_loss-naive_batch_size-0"]
    assert result.stderr.strip().splitlines()[-1] == f"2 of 4 jobs failed: {failed_dirs[0]}, {failed_dirs[1]}"
    statuses = {(m["loss"], m["config"]["trainer"]["batch_size"]): m["status"] for m in run_metrics(sweep).values()}
    assert statuses == {
        ("sparse_from_logits", 64): "ok",
        ("naive", 64): "diverged",
        ("sparse_from_logits", 0): "failed",
        ("naive", 0): "failed",
    }
    failed = [m for m in run_metrics(sweep).values() if m["status"] == "failed"]
    assert all("trainer.batch_size=0: must be an integer >= 1" in m["error"] for m in failed)
    # A diverging run is a result, not a crash: said on the console, recorded with its first NaN step.
    [diverged] = [m for m in run_metrics(sweep).values() if m["status"] == "diverged"]
    assert diverged["first_nonfinite"]["step"] == 1 and "DIVERGED" in result.stdout + result.stderr
    # The report counts each group's runs by status: the failed and diverged ones counted, not averaged in.
    table = report_rows((sweep / "comparison.md").read_text())
    counts = {group: (row["runs"], row["ok"], row["diverged"], row["failed"]) for group, row in table.items()}
    assert counts == {
        "loss=sparse_from_logits, trainer.batch_size=64": ("1", "1", "0", "0"),
        "loss=naive, trainer.batch_size=64": ("1", "0", "1", "0"),
        "loss=sparse_from_logits, trainer.batch_size=0": ("1", "0", "0", "1"),
        "loss=naive, trainer.batch_size=0": ("1", "0", "0", "1"),
    }
    assert table["loss=naive, trainer.batch_size=64"]["first NaN step"] == "1"
    # Where it broke: the diagnosis of that step, in the table and on the job's summary line.
    assert table["loss=naive, trainer.batch_size=64"]["where it broke"] == "loss (naive)"
    assert table["loss=sparse_from_logits, trainer.batch_size=64"]["where it broke"] == "-"
    assert "broke: loss (naive)" in result.stdout + result.stderr
    assert table["loss=naive, trainer.batch_size=64"]["test accuracy"] == "-"  # a diverged run is not averaged
    assert (sweep / "comparison.png").exists() and "sweep summary (4 jobs)" in result.stdout + result.stderr


def report_rows(markdown: str) -> dict[str, dict[str, str]]:
    """comparison.md's table: group -> {column header: cell}."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| group |"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table if not line.startswith("|-")]
    rows = [dict(zip(cells[0], row)) for row in cells[1:]]
    return {row["group"]: row for row in rows}


@pytest.mark.slow(seconds=45)
# submitit_local (one process per job) is exercised by
# tests/test_backends.py::test_compare_backends_preset_reports_the_rescue_difference.
@pytest.mark.parametrize("launcher", ["joblib"])
def test_parallel_launchers_run_a_two_job_sweep(train_cli, tmp_path, launcher):
    needs_module({"joblib": "hydra_plugins.hydra_joblib_launcher",
                  "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher], "pip install -r requirements-sweeps.txt")
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2", "trainer.threads=1"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    result = train_cli("-m", f"hydra/launcher={launcher}", *extra, *SWEEP,
                       "trainer.batch_size=64,abc", f"hydra.sweep.dir={sweep}")
    # The job that failed in a worker process (a value of the wrong type) is judged in the sweep's own: named,
    # and exit code 1; the other job ran.
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == f"1 of 2 jobs failed: {sweep / '01_batch_size-abc'}"
    runs = run_metrics(sweep)
    assert sorted(m["status"] for m in runs.values()) == ["failed", "ok"]
    assert (sweep / "comparison.md").exists()


@pytest.mark.slow(seconds=15)
def test_optuna_search_minimises_the_validation_exact_cross_entropy_it_is_told_to(train_cli, tmp_path):
    """`optimized_metric=val_exact_ce`: train.py returns each trial's last validation exact cross entropy (also
    recorded per epoch), Optuna minimises it, and the report ranks the lowest first."""
    needs_module("hydra_plugins.hydra_optuna_sweeper", "pip install -r requirements-sweeps.txt")
    sweep = tmp_path / "sweep"
    result = train_cli("hparams_search=optuna", "hydra.sweeper.n_trials=3", "optimized_metric=val_exact_ce",
                       *SWEEP, "trainer.epochs=2", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_metrics(sweep)
    assert len(runs) == 3
    assert all(m["loss"] == "from_logits" and 0.0 <= m["config"]["loss"]["label_smoothing"] <= 0.2 for m in runs.values())
    # Recorded per epoch, and metrics.json's figure is the last epoch's.
    assert all(len(m["history"]["val_exact_ce"]) == 2 and m["val_exact_ce"] == m["history"]["val_exact_ce"][-1]
               for m in runs.values())
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(m["val_exact_ce"] for m in runs.values())  # minimised, not maximised
    # The summary of a search: ranked by the objective, the best trial's values, no directory names.
    output = result.stdout + result.stderr
    assert "search summary (3 trials, ranked by validation exact cross entropy, best first)" in output
    assert "Tight layout" not in output and "sweep summary" not in output
    ranked = sorted(runs.values(), key=lambda m: m["val_exact_ce"])
    summary = output.split("best first):\n", 1)[1].splitlines()
    assert summary[0].split()[3] == "val_CE"
    assert [float(line.split()[3]) for line in summary[1:4]] == [round(m["val_exact_ce"], 4) for m in ranked]
    assert summary[4].startswith("best: trial ") and f"validation exact cross entropy {best['best_value']:.4f}" in summary[4]
    assert f"trainer.batch_size={best['best_params']['trainer.batch_size']} " in summary[4]
    assert max(len(line) for line in summary[:4]) < 110
    page = (sweep / "comparison.md").read_text()
    assert "Search of 3 trials" in page and "set to minimize the validation exact cross entropy" in page
    assert (sweep / "comparison.png").exists()


def test_the_search_preset_takes_its_direction_from_the_optimized_metric():
    from hydra import compose, initialize_config_dir

    from keras_loss_recipes.config import resolvers
    from keras_loss_recipes.config.compose import config_dir

    resolvers.register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for metric, direction in [("val_accuracy", "maximize"), ("val_exact_ce", "minimize"), ("val_loss", "minimize")]:
            cfg = compose(config_name="train", overrides=["hparams_search=optuna", f"optimized_metric={metric}"],
                          return_hydra_config=True)
            assert cfg.hydra.sweeper.direction == direction
        assert compose(config_name="train").optimized_metric == "val_accuracy"  # the default


@pytest.mark.parametrize("extra", [[], ["hparams_search=optuna"]])
def test_a_test_figure_is_refused_as_the_optimized_metric(train_cli, tmp_path, extra):
    result = train_cli(*extra, "optimized_metric=test_accuracy", *SWEEP, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                       f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: optimized_metric='test_accuracy': valid choices: val_accuracy, val_exact_ce, val_loss "
        "(validation figures; a search never picks by the test split)"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


# --- job directory names (fast) ---------------------------------------------


def test_job_dir_names_are_short_shell_safe_and_name_what_the_sweep_varies():
    overrides = ["model=mlp", "loss=softmax_ce", "seed=0", "optimizer.learning_rate=0.0013680095"]
    swept = swept_keys(["model=mlp", "loss=softmax_ce,naive", "seed=range(3)"],
                       {"optimizer.learning_rate": "interval(0.0001, 0.01)"})
    assert swept == ["loss", "seed", "optimizer.learning_rate"]
    assert job_dir_name(7, overrides, swept) == "07_loss-softmax_ce_seed-0_learning_rate-0.00137"
    long = job_dir_name(123, [f"+extra.key_{i}=it's a [value]" for i in range(9)])
    assert len(long) <= 60 and long.startswith("123_key_0-it-s-a-value")
    assert set(long) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_the_optuna_sample_in_the_docs_is_what_the_generator_wrote():
    """docs/sweeps.md's sample search is pasted by scripts/optuna_sample.py: its command, the summary's columns
    as the report prints them for the preset's searched keys, ranks in order, and the best line naming rank 1."""
    from keras_loss_recipes.sweeps.search_report import short_names
    from scripts import optuna_sample

    page = (ROOT / "docs" / "sweeps.md").read_text()
    sample = page.split(optuna_sample.BEGIN, 1)[1].split(optuna_sample.END, 1)[0]
    assert f"(`python train.py {' '.join(optuna_sample.OVERRIDES)}`)" in " ".join(sample.split())
    lines = [line.strip() for line in sample.split("```")[1].strip().splitlines()]
    assert lines[0] == "search summary (4 trials, ranked by validation accuracy, best first):"
    searched = list(yaml.safe_load((ROOT / "configs" / "hparams_search" / "optuna.yaml").read_text())
                    ["hydra"]["sweeper"]["params"])
    assert lines[1].split() == ["rank", "trial", "status", "val_acc", "test_acc", "test_CE",
                                *short_names(searched).values()]
    rows = [line.split() for line in lines[2:-1]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    accuracies = [float(row[3]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert lines[-1].startswith(f"best: trial {rows[0][1]}, validation accuracy {rows[0][3]} ")
