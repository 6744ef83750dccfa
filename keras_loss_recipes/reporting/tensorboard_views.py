"""What TensorBoard shows of a run beyond its curves: a laid-out stability dashboard and a summary in words.

    write_layout(log_dir)              the Custom Scalars tab: the stability figures grouped into charts
    write_run_views(run_dir, metrics)  a run's HParams session and final figures, the Text tab's summary
                                       (formulation, loss path, warnings, results, command) and the layout,
                                       in one event file

The layout is written into every run directory and into a sweep's root;
TensorBoard merges identical layouts into one. Its charts take their lines from
`stability/<name>` (telemetry) and Keras's `epoch_*` scalars, in every run.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from keras_loss_recipes.losses.paths import MEANINGS
from keras_loss_recipes.reporting.hparams import log_run, read_overrides

SUMMARY_TAG = "run/summary"
# (category, [(chart title, tag regex)])
LAYOUT = [
    ("stability", [
        ("reported loss against exact cross entropy", r"stability/(loss|exact_ce)$"),
        ("gradient norms: all weights, and d(loss)/d(logits)", r"stability/(grad_norm|logit_grad_norm)$"),
        ("saturation: share of examples whose top probability is within 1e-7 of 1", r"stability/saturated_frac$"),
        ("logit gap: mean of max logit - min logit", r"stability/logit_gap$"),
        ("non-finite steps (NaN/inf loss or gradient)", r"stability/nonfinite_steps$"),
    ]),
    ("accuracy and loss per epoch", [
        ("accuracy (train, validation)", r"epoch_accuracy$"),
        ("loss as the formulation reports it (train, validation)", r"epoch_loss$"),
    ]),
]
FIGURES = [("test accuracy", "test_accuracy", "{:.4f}"), ("test exact CE", "test_exact_ce", "{:.4f}"),
           ("validation accuracy", "val_accuracy", "{:.4f}"), ("non-finite steps", "nonfinite_steps", "{:g}")]


def layout():
    from tensorboard.plugins.custom_scalar import layout_pb2

    return layout_pb2.Layout(category=[
        layout_pb2.Category(title=title, chart=[
            layout_pb2.Chart(title=chart, multiline=layout_pb2.MultilineChartContent(tag=[regex]))
            for chart, regex in charts
        ])
        for title, charts in LAYOUT
    ])


def write_layout(log_dir: Path) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(log_dir) as writer:
        writer.custom_scalars(layout())


def reproduce_command(overrides: list[str]) -> str:
    return " ".join(["python train.py", *(shlex.quote(o) for o in overrides)])


def run_summary(metrics: dict, overrides: list[str]) -> str:
    """The run in a few lines of markdown."""
    from keras_loss_recipes import losses

    name, backend, path = metrics.get("loss"), metrics.get("backend"), metrics.get("loss_path")
    lines = [f"### `{name}` on {backend}: {metrics.get('status')}", ""]
    if name in losses.names():
        lines.append(f"Computes `{losses.formulation(name).computes}`.")
    if path:
        lines.append(f"Loss path **{path}**: {MEANINGS.get(path, 'not measured')}.")
    removed = metrics.get("removed_head")
    if removed:
        lines += ["", f"Model `{metrics.get('model')}`: its {removed['kind']} head (layer `{removed['layer']}`, "
                      f"{removed['class']}) was taken off, so that `loss={name}` decides the loss from its logits."]
    if metrics.get("error"):
        lines += ["", f"Error: {metrics['error']}"]
    origin = metrics.get("nonfinite_origin")
    if origin:
        lines += ["", f"**Where it broke**: {origin['text']}."]
    for warning in metrics.get("warnings") or []:
        lines += ["", f"**Warning**: {warning}"]
    shown = [(label, fmt.format(metrics[key])) for label, key, fmt in FIGURES
             if isinstance(metrics.get(key), (int, float))]
    if shown:
        lines += ["", "| " + " | ".join(label for label, _ in shown) + " |",
                  "|" + "---|" * len(shown), "| " + " | ".join(value for _, value in shown) + " |"]
    lines += ["", f"Reproduce: `{reproduce_command(overrides)}`"]
    return "\n".join(lines) + "\n"


def write_run_views(run_dir: Path, metrics: dict, with_layout: bool = True) -> str:
    """What the dashboards show of a finished or failed run, in one event file of `run_dir`: the HParams
    session with the final figures, the run's summary (returned, as markdown) and, unless told
    otherwise, the custom-scalars layout."""
    from keras_loss_recipes.runtime.event_files import summary_writer

    overrides = read_overrides(run_dir)
    text = run_summary(metrics, overrides)
    with summary_writer(run_dir) as writer:
        log_run(writer, run_dir, metrics, overrides)
        writer.text(SUMMARY_TAG, text)
        if with_layout:
            writer.custom_scalars(layout())
    return text
