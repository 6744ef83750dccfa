"""What TensorBoard shows of a sweep, asked of a real TensorBoard server over HTTP."""
from __future__ import annotations

import itertools

import pytest
import yaml

from recipes.reporting.hparams import declare_experiment, log_run
from recipes.reporting.tensorboard_views import LAYOUT, write_layout, write_run_summary
from recipes.runtime.run_names import job_dir_name, swept_keys
from scripts.tensorboard_server import get_json, hparams_default_columns, post_json, serve

COMMON = ["model=mlp", "trainer.epochs=1"]


def fake_sweep(sweep_dir, losses=("softmax_ce", "sparse_from_logits"), seeds=(0, 1)):
    """A loss x seed sweep as the sweep callback and its jobs leave it: the experiment, then per job
    the overrides Hydra saves and the hparams and final metrics that the recipe logs."""
    declare_experiment(sweep_dir, swept_keys(["loss=" + ",".join(losses), "seed=" + ",".join(map(str, seeds)),
                                              *COMMON]))
    write_layout(sweep_dir)
    for num, (loss, seed) in enumerate(itertools.product(losses, seeds)):
        overrides = [f"loss={loss}", f"seed={seed}", *COMMON]
        run = sweep_dir / job_dir_name(num, overrides, swept=["loss", "seed"])
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        path = "rescued_softmax" if loss == "softmax_ce" else "fused_logits"
        metrics = {
            "status": "ok", "loss_path": path, "backend": "tensorflow", "test_accuracy": 0.9 + seed / 100,
            "test_exact_ce": 0.3, "val_accuracy": 0.91, "nonfinite_steps": 0, "test_loss": 0.3,
            "config": {"loss": {"name": loss}, "seed": seed, "model": {"name": "mlp"}, "trainer": {"epochs": 1},
                       "data": {"name": "mnist_embedded"}},
            "loss": loss, "warnings": [],
        }
        log_run(run, metrics)
        write_run_summary(run, metrics)


def test_job_dir_names_are_short_shell_safe_and_name_what_the_sweep_varies():
    overrides = ["model=mlp", "loss=softmax_ce", "seed=0", "optimizer.learning_rate=0.0013680095"]
    swept = swept_keys(["model=mlp", "loss=softmax_ce,naive", "seed=range(3)"],
                       {"optimizer.learning_rate": "interval(0.0001, 0.01)"})
    assert swept == ["loss", "seed", "optimizer.learning_rate"]
    assert job_dir_name(7, overrides, swept) == "07_loss-softmax_ce_seed-0_learning_rate-0.00137"
    long = job_dir_name(123, [f"+extra.key_{i}=it's a [value]" for i in range(9)])
    assert len(long) <= 60 and long.startswith("123_key_0-it-s-a-value")
    assert set(long) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@pytest.mark.slow
def test_hparams_dashboard_opens_on_what_the_sweep_varies_and_its_outcomes(tmp_path):
    fake_sweep(tmp_path)
    with serve(tmp_path) as base:
        hparams, metrics = hparams_default_columns(base)
        groups = post_json(base + "data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                      "STATUS_RUNNING"],
            "colParams": [], "startIndex": 0, "sliceSize": 100, "includeMetrics": True,
        })
        layout = get_json(base + "data/plugin/custom_scalars/layout")
        text = get_json(base + "data/plugin/text/text?run=01_loss-softmax_ce_seed-1&tag=run%2Fsummary")
    # The stability dashboard opens laid out: one category per group, its charts in order.
    assert [c["title"] for c in layout["category"]] == [title for title, _ in LAYOUT]
    assert [c["title"] for c in layout["category"][0]["chart"]] == [chart for chart, _ in LAYOUT[0][1]]
    # The run's summary in the Text tab, rendered: its path in words and the command that reproduces it.
    [entry] = text
    assert "rescued_softmax" in entry["text"] and "python train.py loss=softmax_ce seed=1 model=mlp" in entry["text"]
    # What varies (loss, seed) and the outcomes (loss_path, status) first, by name; then the rest.
    assert hparams[:4] == ["loss", "loss_path", "seed", "status"]
    assert metrics[:2] == ["final/test_accuracy", "final/test_exact_ce"]
    sessions = [s for g in groups["sessionGroups"] for s in g["sessions"]]
    assert len(sessions) == 4
    assert sorted(s["name"] for s in sessions) == ["00_loss-softmax_ce_seed-0", "01_loss-softmax_ce_seed-1",
                                                   "02_loss-sparse_from_logits_seed-0",
                                                   "03_loss-sparse_from_logits_seed-1"]
    values = {g["name"]: g["hparams"] for g in groups["sessionGroups"]}
    assert values["00_loss-softmax_ce_seed-0"]["overrides"] == "loss=softmax_ce seed=0 model=mlp trainer.epochs=1"
