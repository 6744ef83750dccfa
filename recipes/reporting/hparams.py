"""TensorBoard HParams: every run logs its hyperparameters and final metrics; a sweep declares them.

A run's hparams and `final/*` scalars go into the run directory itself, next
to the `train/` and `validation/` runs that Keras writes, so the HParams
dashboard links each session to its `validation/epoch_accuracy` curve.
"""
from __future__ import annotations

import math
from pathlib import Path

# (name in the dashboard, path in the composed config)
HPARAMS = [
    ("loss", "loss.name"),
    ("data", "data.name"),
    ("model", "model.name"),
    ("optimizer", "optimizer.name"),
    ("learning_rate", "optimizer.learning_rate"),
    ("batch_size", "trainer.batch_size"),
    ("epochs", "trainer.epochs"),
    ("precision", "trainer.precision"),
    ("seed", "seed"),
    ("logit_scale", "stress.logit_scale"),
    ("head_init_std", "stress.head_init_std"),
    ("unsafe_head_dtype", "stress.unsafe_head_dtype"),
    ("temperature", "loss.temperature"),
    ("label_smoothing", "loss.label_smoothing"),
]
# Outcomes shown as hparams too, so the table can be filtered by them.
OUTCOME_HPARAMS = ["status", "loss_path", "backend"]
FINAL_METRICS = ["val_accuracy", "test_accuracy", "test_exact_ce", "test_loss", "nonfinite_steps"]
# (group, tag): group is the sub-run directory, "" the run directory itself.
DASHBOARD_METRICS = [("validation", "epoch_accuracy"), ("validation", "epoch_loss")] + [
    ("", f"final/{name}") for name in FINAL_METRICS
]


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def hparam_values(metrics: dict) -> dict:
    """Hyperparameters of a run, from the config stored in its metrics.json."""
    config = metrics.get("config", {})
    values = {name: _get(config, path) for name, path in HPARAMS}
    values.update({name: metrics.get(name) for name in OUTCOME_HPARAMS})
    # HParams accept bool, number or string; None is shown as the string "none".
    return {k: ("none" if v is None else v) for k, v in values.items()}


def log_run(run_dir: Path, metrics: dict) -> None:
    """Write the run's hparams and final metrics as TensorBoard summaries in `run_dir`."""
    from recipes.runtime.event_files import summary_writer

    # The dashboard shows the description: which saved model the figures are of.
    model = metrics.get("test_model")
    about = f"of {model}, the model after the last epoch" if model else None
    with summary_writer(run_dir) as writer:
        writer.hparams(hparam_values(metrics), trial_id=Path(run_dir).name)
        for name in FINAL_METRICS:
            value = metrics.get(name)
            if isinstance(value, (int, float)):
                writer.scalar(f"final/{name}", float(value), 0, description=about)
            elif value is None and name in metrics:
                writer.scalar(f"final/{name}", math.nan, 0, description=about)


def declare_experiment(sweep_dir: Path) -> None:
    """Tell the HParams dashboard which hparams and metrics a sweep has."""
    # summary_v2, not hparams.api: the api module imports TensorFlow.
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = [hp.HParam(name) for name, _ in HPARAMS] + [hp.HParam(name) for name in OUTCOME_HPARAMS]
    metrics = [
        hp.Metric(tag, group=group or None, display_name=(f"{group}/{tag}" if group else tag))
        for group, tag in DASHBOARD_METRICS
    ]
    from recipes.runtime.event_files import summary_writer

    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with summary_writer(sweep_dir) as writer:
        writer.hparams_config(hparams, metrics)
