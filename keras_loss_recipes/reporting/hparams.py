"""TensorBoard HParams: every run logs its hyperparameters and final metrics; a sweep declares them.

A run's hparams and `final/*` scalars go into the run directory itself, next
to the `train/` and `validation/` runs that Keras writes, so the HParams
dashboard links each session to its `validation/epoch_accuracy` curve.

The dashboard shows five hparam columns and five metric columns by default:
the hparams marked as differing first (then by name), the metrics in the
order declared. A sweep marks what it varies, and `status` and `loss_path`,
the outcomes a sweep is read for, so a `loss x seed` sweep opens on
loss, loss_path, seed and status, next to test accuracy and exact CE. The calibration figures
(temperature scaling: reporting/calibration.py) come after those five, one click away.
"""
from __future__ import annotations

import math
from pathlib import Path

from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS

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
ALWAYS_SHOWN = frozenset({"status", "loss_path"})
# The job's command-line overrides, whole (Hydra keeps them in .hydra/overrides.yaml).
OVERRIDES_HPARAM = "overrides"
FINAL_METRICS = ["test_accuracy", "test_exact_ce", "val_accuracy", "nonfinite_steps", "test_loss", *CALIBRATION_KEYS]
# The fitted T is not the hparam `temperature` (loss.temperature, which training divides by): told apart.
METRIC_NAMES = {"temperature": "fitted_temperature"}


def final_tag(key: str) -> str:
    """The dashboard's tag of metrics.json's `key`."""
    return f"final/{METRIC_NAMES.get(key, key)}"


# (group, tag): group is the sub-run directory, "" the run directory itself.
DASHBOARD_METRICS = [("", final_tag(name)) for name in FINAL_METRICS] + [
    ("validation", "epoch_accuracy"), ("validation", "epoch_loss")
]


def hparam_name(key: str) -> str:
    """The dashboard's name for an override key: `loss` (a group) and `loss.name` are `loss`,
    `optimizer.learning_rate` is `learning_rate`; a key with no column of its own keeps its name."""
    key = key.lstrip("+~")
    for name, path in HPARAMS:
        if key in (path, path.removesuffix(".name")):
            return name
    return key


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of the job in `run_dir`, as Hydra saved them."""
    import yaml

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def _plain(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def hparam_values(metrics: dict, overrides: list[str] = ()) -> dict:
    """Hyperparameters of a run, from the config stored in its metrics.json and its overrides.

    An override of a key with no column of its own (`data.val_examples=100`) gets one,
    named by the key, so whatever a sweep varies can be seen and filtered.
    """
    config = metrics.get("config", {})
    values = {name: _get(config, path) for name, path in HPARAMS}
    values.update({name: metrics.get(name) for name in OUTCOME_HPARAMS})
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and hparam_name(key) not in values:
            values[hparam_name(key)] = _plain(value)
    if overrides:
        values[OVERRIDES_HPARAM] = " ".join(overrides)
    # HParams accept bool, number or string; None is shown as the string "none".
    return {k: ("none" if v is None else v) for k, v in values.items()}


def log_run(writer, run_dir: Path, metrics: dict, overrides: list[str]) -> None:
    """The run's hparams and final metrics, as TensorBoard summaries, into `writer` (an EventWriter of
    `run_dir`)."""
    # The dashboard shows the description: which saved model the figures are of.
    model = metrics.get("test_model")
    about = f"of {model}, the model after the last epoch" if model else None
    writer.hparams(hparam_values(metrics, overrides), trial_id=Path(run_dir).name)
    for name in FINAL_METRICS:
        value = metrics.get(name)
        if isinstance(value, (int, float)):
            writer.scalar(final_tag(name), float(value), 0, description=about)
        elif value is None and name in metrics:
            writer.scalar(final_tag(name), math.nan, 0, description=about)


def declare_experiment(sweep_dir: Path, swept: list[str] = ()) -> None:
    """Tell the HParams dashboard which hparams and metrics a sweep has, and which it varies.

    `swept`: the override keys the sweep varies (`swept_keys`).
    """
    # summary_v2, not hparams.api: the api module imports TensorFlow.
    from tensorboard.plugins.hparams import summary_v2 as hp

    from keras_loss_recipes.runtime.event_files import summary_writer

    varied = [hparam_name(key) for key in swept]
    names = [name for name, _ in HPARAMS] + OUTCOME_HPARAMS
    names += [name for name in varied if name not in names] + [OVERRIDES_HPARAM]
    metrics = [
        hp.Metric(tag, group=group or None, display_name=(f"{group}/{tag}" if group else tag))
        for group, tag in DASHBOARD_METRICS
    ]
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with summary_writer(sweep_dir) as writer:
        writer.hparams_config([hp.HParam(name) for name in names], metrics,
                              differs=frozenset(varied) | ALWAYS_SHOWN)
