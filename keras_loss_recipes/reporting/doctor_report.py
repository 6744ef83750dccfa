"""The loss doctor's report: its verdict, the fix for this model, and how it is written out.

Pure data in, text out: the report is a JSON-able dict (doctor.json), and the
console summary, doctor.md, the TensorBoard text and the docs page are all
rendered from it, so `docs/doctor.md` can be checked against its stored JSON.

    clean     every backend and precision measured computes the exact loss
    lossy     at least one takes a path that loses information (clipped, NaN, logits read as probabilities)
    unknown   the doctor could not see the head, so it measured nothing; never taken for clean

>>> tf = {"backend": "tensorflow", "precision": "float32", "path": "rescued_softmax", "exact": True}
>>> jax = {"backend": "jax", "precision": "float32", "path": "clipped_probabilities", "exact": False}
>>> verdict([tf]), verdict([tf, jax]), lossy_runs([tf, jax])
('clean', 'lossy', ['jax float32'])
"""
from __future__ import annotations

import json
from pathlib import Path

REPORT_FILE = "doctor.json"
MARKDOWN_FILE = "doctor.md"
TENSORBOARD_DIR = "doctor"


def verdict(results: list[dict]) -> str:
    if lossy_runs(results):
        return "lossy"
    if not results or any(r["path"] == "unknown" for r in results):
        return "unknown"
    return "clean"


def lossy_runs(results: list[dict]) -> list[str]:
    """Where a known path loses information, as "backend precision" labels."""
    return [f"{r['backend']} {r['precision']}" for r in results if not r["exact"] and r["path"] != "unknown"]


def fix_lines(report: dict) -> list[str]:
    """What to change in this model, in one or two lines (none if it is clean)."""
    head, loss, verdict_ = report["head"], report["loss"], report["verdict"]
    fixed_loss = f"`{loss['fixed_code']}`"
    if verdict_ == "clean":
        return []
    if verdict_ == "unknown":
        reason = head["reason"] or "the measured loss matches none of the computations the doctor knows"
        return [f"The doctor cannot tell: {reason}.",
                f"To let it (and Keras) see the logits, end the model in a Dense layer without activation, "
                f"compile with {fixed_loss} and apply the activation at inference; then run the doctor again."]
    activation = probability_activation(head["kind"], loss["labels"])
    probabilities = (f"Probabilities at inference: `keras.activations.{activation}(model(x))`, or "
                     f"`keras.Sequential([model, keras.layers.Activation(\"{activation}\")])`.")
    if head["kind"] == "logits":
        return [f"Layer '{head['layer']}' outputs logits but the loss reads them as probabilities: "
                f"compile with {fixed_loss}.", probabilities]
    return [f"Remove the {head['kind']} from layer '{head['layer']}' ({_removal(head)}) and compile with "
            f"{fixed_loss}.", probabilities]


def probability_activation(head_kind: str, labels: str) -> str:
    """The activation that turns the logits of a model with this head (softmax, sigmoid or logits) and a loss
    of these labels (binary, onehot, sparse) into probabilities."""
    if head_kind != "logits":
        return head_kind
    return "sigmoid" if labels == "binary" else "softmax"


def _removal(head: dict) -> str:
    if head["activation_in_layer"]:
        return f"`{head['layer_class']}(..., activation=None)`"
    removal = f"drop the {head['layer_class']} layer and output '{head['logits_from']}' directly"
    if head["layer"] == "predictions":  # the keras.applications name for the classifier's output
        removal += "; a keras.applications model: `classifier_activation=None`"
    return removal


def _gap(value) -> str:
    return "never" if value is None else f"{value:g}"


def _number(value) -> str:
    return "NaN" if value is None else f"{value:.4g}"


def describe(result: dict) -> str:
    """One measured backend and precision in words: where the loss departs and where its gradient dies."""
    if result["path"] == "unknown" and result.get("reason"):
        return "not measured: the head is unknown"
    if result["departs_from_gap"] is None:
        return "exact at every gap"
    text = f"wrong from gap {_gap(result['departs_from_gap'])} ({result['how']})"
    if result["gradient_dies_from_gap"] is not None:
        text += f"; gradient dead from gap {_gap(result['gradient_dies_from_gap'])}"
    return text


def head_text(report: dict) -> str:
    head = report["head"]
    if head["kind"] == "unknown":
        return f"unknown (output layer '{head['layer']}', {head['layer_class']})"
    units = f"{head['width']} unit{'s' if head['width'] != 1 else ''}"
    dtype = f"{head['dtype']}, kept under a mixed policy" if head["pinned"] else head["dtype"]
    layer = f"layer '{head['layer']}' ({head['layer_class']}, {units}, {dtype})"
    if head["kind"] == "logits":
        return f"logits: the output of {layer}, no activation"
    if head["activation_in_layer"]:
        return f"{head['kind']} in {layer}; logits: its output before the {head['kind']}"
    return f"{head['kind']} as {layer}; logits: the output of '{head['logits_from']}'"


def fixed_lines(report: dict) -> list[str]:
    """What recipe.fix=true wrote (none without it): the logits model and the inference model."""
    fixed = report.get("fixed")
    if not fixed:
        return []
    optimizer = (f"the optimizer {fixed['optimizer']} as saved" if fixed["optimizer"] else
                 "Keras's default optimizer (the model was saved uncompiled)")
    source = f"fitted on {fixed['temperature_from']}" if fixed["temperature_from"] else "no data to fit it on"
    return [f"`{fixed['logits_model']}`: the same weights, outputting logits, compiled with `{fixed['loss']}` "
            f"and {optimizer}.",
            f"`{fixed['inference_model']}`: probabilities, {fixed['activation']}(logits / T) with "
            f"T = {fixed['temperature']:.4g} ({source})."]


def console_lines(report: dict) -> list[str]:
    """What the doctor prints at the end of a run."""
    lines = [f"doctor: {report['checkpoint']}: model '{report['model']['name']}' ({report['model']['class_name']})",
             f"  head: {head_text(report)}",
             f"  loss: {report['loss']['code']} ({report['loss']['source']})"]
    for r in report["results"]:
        lines.append(f"  {r['backend']:10s} {r['precision']:15s} {r['path']:24s} {describe(r)}")
    lines.append(f"verdict: {report['verdict']}" + (f" ({', '.join(report['lossy'])})" if report["lossy"] else ""))
    lines += [("fix: " if i == 0 else "     ") + line for i, line in enumerate(report["fix"])]
    lines += [("fixed: " if i == 0 else "       ") + line for i, line in enumerate(fixed_lines(report))]
    return lines


def render_markdown(report: dict) -> str:
    """doctor.md: the same report as a page (also the TensorBoard text)."""
    loss = report["loss"]
    lines = [
        f"### Loss doctor: `{report['checkpoint']}`", "",
        f"* model: '{report['model']['name']}' ({report['model']['class_name']}, saved by Keras "
        f"{report['model']['keras_version']})",
        f"* head: {head_text(report)}",
        f"* loss: `{loss['code']}` ({loss['source']})",
        f"* measured on: {', '.join(report['backends'])}"
        + (f" (not installed: {', '.join(report['not_installed'])})" if report["not_installed"] else ""),
        "",
        "| backend | precision | loss path | loss at gap {0} (exact) | where it goes wrong |".format(
            _max_gap(report)),
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        at_max = "-" if "exact_at_max_gap" not in r else \
            f"{_number(r['loss_at_max_gap'])} ({_number(r['exact_at_max_gap'])})"
        lines.append(f"| {r['backend']} | {r['precision']} | {r['path']} | {at_max} | {describe(r)} |")
    lines += ["", f"**Verdict: {report['verdict']}**"
              + (f" (lossy on {', '.join(report['lossy'])})." if report["lossy"] else ".")]
    if report["fix"]:
        lines += ["", "**Fix:** " + " ".join(report["fix"])]
    if fixed_lines(report):
        lines += ["", "**Fixed** (recipe.fix=true): " + " ".join(fixed_lines(report))]
    return "\n".join(lines) + "\n"


def _max_gap(report: dict) -> str:
    gaps = {r["max_gap"] for r in report["results"] if "max_gap" in r}
    return _gap(gaps.pop()) if len(gaps) == 1 else "max"


def write_all(run_dir: Path, report: dict) -> None:
    """doctor.json, doctor.md and the report as TensorBoard text under doctor/."""
    from keras_loss_recipes.runtime.event_files import summary_writer

    run_dir = Path(run_dir)
    (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    (run_dir / MARKDOWN_FILE).write_text(markdown)
    with summary_writer(run_dir / TENSORBOARD_DIR) as writer:
        writer.text("doctor/report", markdown)


# docs/doctor.md up to its example: how to run the doctor, what it reads and measures, what recipe.fix=true writes.
DOCS_HOW = [
    "# The loss doctor",
    "",
    "<!-- generated by `python -m keras_loss_recipes.recipes.doctor --docs` from docs/doctor.json; do not edit -->",
    "",
    "Point it at your own saved Keras model; it tells you which computation your loss really is",
    "on each Keras backend and precision, and what to change if that loses information; asked to, it",
    "makes the change:",
    "",
    "```bash",
    "python train.py recipe=doctor checkpoint=path/to/model.keras",
    "python train.py recipe=doctor checkpoint=model.keras recipe.loss=categorical_crossentropy  # saved uncompiled",
    "python train.py recipe=doctor checkpoint=model.keras recipe.strict=true   # for CI: non-zero exit unless exact",
    "python train.py recipe=doctor checkpoint=model.keras recipe.fix=true      # and write the fixed model",
    "python train.py recipe=doctor checkpoint=model.keras recipe.fix=true recipe.calibrate=true  # T fitted on data=",
    "```",
    "",
    "It reads the model's graph from the file without running any of it: the output head (a softmax or",
    "sigmoid as a layer's `activation`, an `Activation` or `Softmax` layer, or plain logits, seen through",
    "`Reshape`, `Flatten`, `Dropout` and `Identity` layers after it), the layer whose output is the logits,",
    "and the loss the model was compiled with (or `recipe.loss`, with `recipe.from_logits`). The layers after",
    "a softmax are measured with it: on TensorFlow they keep Keras from rescuing it, so such a model is the",
    "clipped path there too. A head it cannot see, such as a softmax inside a `Lambda`, is reported as",
    "`unknown`, never as clean. Then, per installed backend in a process of its own, and in float32 and the",
    "mixed policies (`recipe.backends`, `recipe.precisions` narrow this down), it runs the model's own head",
    "and loss through Keras: the loss path on the probe batches of [losses.md](losses.md), and over a",
    "confidently wrong example at every logit gap, where the loss leaves the exact value (capped or NaN)",
    "and where its gradient dies.",
    "",
    "It writes `doctor.json`, `doctor.md` and the same report as TensorBoard text (`doctor/report`) into",
    "the run directory. `recipe.strict=true` exits with code 1 when any backend or precision is lossy or",
    "unknown; a file that is not a Keras model, an output that is no classifier head, or an unknown loss is",
    "one `error:` line and exit code 2.",
    "",
    "## The fix, written: `recipe.fix=true`",
    "",
    "For `checkpoint=model.keras` it also writes, into the run directory (the file given is never touched):",
    "",
    "* `model.logits.keras`: the same weights with the softmax (or sigmoid) taken off, compiled with the",
    "  matching `from_logits=True` loss (categorical, sparse or binary as the model's was, its other options",
    "  kept) and the model's optimizer, metrics and compile options as saved;",
    "* `model.inference.keras`: probabilities, the softmax (or sigmoid) of logits / T. T is 1, or, with",
    "  `recipe.calibrate=true`, fitted on the validation split of `data=` by temperature scaling (the exact",
    "  NLL, `keras_loss_recipes/evaluation/calibration.py`; softmax heads only). Both files load in plain Keras.",
    "",
    "It works for Sequential and functional models, `keras.applications` and keras_hub classifiers (built",
    "again from their options with `activation=None`). A head the doctor cannot see (a softmax inside a",
    "`Lambda`, an op after the softmax) cannot be taken off: one `error:` line says so, and nothing is",
    "measured or written.",
    "",
    "From Python, on a live model or a file (`diagnose` measures in this process on the current backend,",
    "or with `backends=\"all\"` in a process per installed backend, as the recipe does):",
    "",
    "```python",
    "from keras_loss_recipes import diagnose, fix   # the library: docs/api.md",
    "",
    "report = diagnose(model)          # report.rows, report.verdict, report.fix; print(report): the Markdown",
    "logits_model, loss, inference_model, temperature = fix(model, validation_data=(x_val, y_val))",
    "```",
    "",
]


def render_docs_page(report: dict) -> str:
    """docs/doctor.md: how to run the doctor, its report on the docs example with recipe.fix=true, and its
    report on the fixed model it wrote (docs/doctor.json holds both)."""
    env = report["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items() if version)
    after = report["after_fix"]
    return "\n".join([
        *DOCS_HOW,
        "## Example: the keras.io MNIST convnet",
        "",
        "The \"Simple MNIST convnet\" of keras.io (`keras_loss_recipes/recipes/doctor/examples.py`), with its",
        "`Dense(num_classes, activation=\"softmax\")` head and `loss=\"categorical_crossentropy\"`, through",
        f"`{after['fix_command']}`:",
        "",
        render_markdown(report).rstrip("\n"),
        "",
        f"Then `{after['strict_command']}` on the file it wrote (exit code {after['exit_code']}):",
        "",
        render_markdown(after["report"]).rstrip("\n"),
        "",
        f"Generated by `{env['command']}` on {env['machine']['cpu']} ({env['machine']['cores']} cores), "
        f"{env['date']}, with {versions}; the doctor took {report['wall_s']:g} s on the model and "
        f"{after['report']['wall_s']:g} s on the fixed one.",
        "",
    ])
