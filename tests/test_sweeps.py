"""Sweeps: every job lands in the sweep dir, failures never stop it, HParams and the report are right."""
import json
import math
import statistics
import subprocess
import sys

import pytest

from recipes.reporting import comparison as compare
from recipes.runtime.errors import UserError
from tests.conftest import ROOT, TINY

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
    assert (tmp_path / "comparison.png").stat().st_size > 5000


def test_report_refuses_a_directory_that_is_not_a_sweep(tmp_path):
    with pytest.raises(UserError, match="not a sweep directory"):
        compare.write_report(tmp_path)
    result = subprocess.run([sys.executable, "-m", "recipes.compare", str(tmp_path / "nope")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "no such directory" in result.stderr and "Traceback" not in result.stderr


# --- real sweeps through train.py -m ---------------------------------------


@pytest.mark.slow
def test_sweep_lands_in_one_dir_with_hparams_and_a_matching_report(train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = train_cli("-m", *SWEEP, "loss=sparse_from_logits,clipped_probs", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_metrics(sweep)
    assert sorted(runs) == sorted(
        f"data.max_train_examples=300,loss={loss},model=mlp,seed={seed},trainer.epochs=1"
        for loss in ("sparse_from_logits", "clipped_probs") for seed in (0, 1)
    )
    assert {m["status"] for m in runs.values()} == {"ok"}
    # HParams: the sweep declares the experiment, every run is a session with its hparams.
    [experiment] = hparams_plugin_data(sweep)
    assert {m.name.tag for m in experiment.experiment.metric_infos} >= {"epoch_accuracy", "final/test_accuracy"}
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
    assert "sweep summary (4 jobs)" in result.stdout + result.stderr
    # startup_s is each job's own: the first job imports TensorFlow, the later ones start when they start.
    first_job = max(runs.values(), key=lambda m: m["startup_s"])
    for metrics in runs.values():
        if metrics is not first_job:
            assert 0 < metrics["startup_s"] <= metrics["wall_s"] + 0.5
            assert metrics["startup_s"] < first_job["startup_s"]


@pytest.mark.slow
def test_failing_and_diverging_jobs_do_not_stop_the_sweep(train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = train_cli("-m", *SWEEP, "loss=sparse_from_logits,naive", "stress.logit_scale=1000",
                       "trainer.batch_size=64,0", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
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
    md = (sweep / "comparison.md").read_text()
    assert "failed" in md and (sweep / "comparison.png").exists()


@pytest.mark.slow
# submitit_local (one process per job) is exercised by
# tests/test_backends.py::test_compare_backends_preset_reports_the_rescue_difference.
@pytest.mark.parametrize("launcher", ["joblib"])
def test_parallel_launchers_run_a_two_job_sweep(train_cli, tmp_path, launcher):
    pytest.importorskip({"joblib": "hydra_plugins.hydra_joblib_launcher",
                         "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2", "trainer.threads=1"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    result = train_cli("-m", f"hydra/launcher={launcher}", *extra, *SWEEP,
                       "loss=sparse_from_logits,softmax_ce", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_metrics(sweep)
    assert len(runs) == 2 and {m["status"] for m in runs.values()} == {"ok"}
    assert (sweep / "comparison.md").exists()


@pytest.mark.slow
def test_optuna_search_runs_trials_in_memory(train_cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    result = train_cli("hparams_search=optuna", "hydra.sweeper.n_trials=2", *SWEEP, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_metrics(sweep)
    assert len(runs) == 2
    assert all(m["loss"] == "from_logits" and 0.0 <= m["config"]["loss"]["label_smoothing"] <= 0.2 for m in runs.values())
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best
