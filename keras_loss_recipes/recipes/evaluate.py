"""Evaluate a saved model: accuracy, exact cross entropy, calibration (ECE) and a reliability diagram.

`checkpoint` is a run directory or a .keras file. In a run directory it takes
last.keras, the model whose test figures the run recorded (so evaluating a run
with the same data gives the run's numbers); `checkpoint=<run dir>/best.keras`
evaluates the epoch with the best validation accuracy instead. The test split comes from the configured data (`data=`), so a model
trained on the embedded digits can be checked on full MNIST.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from keras_loss_recipes import losses
from keras_loss_recipes.data import load_splits, tasks
from keras_loss_recipes.data.pipeline import model_inputs
from keras_loss_recipes.evaluation import task_scores
from keras_loss_recipes.evaluation.calibration import expected_calibration_error, plot_reliability
from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.quiet import start_backend
from keras_loss_recipes.runtime.run_files import METRICS_FILE
from keras_loss_recipes.training import saved_form
from keras_loss_recipes.training.network import logits_model_of

log = logging.getLogger(__name__)
# In a run directory, the first that exists: the .keras files, then the weights a run saves in their place.
MODEL_FILES = (*saved_form.MODEL_FILES, *saved_form.WEIGHTS_FILES)
PIP_NAMES = {"keras_hub": "keras-hub", "keras_cv": "keras-cv", "keras_nlp": "keras-nlp"}


def resolve_checkpoint(checkpoint, recipe: str = "evaluate") -> Path:
    """The model file `checkpoint` names: itself, or the first of MODEL_FILES in a run directory."""
    if checkpoint in (None, ""):
        raise UserError(f"checkpoint is not set: recipe={recipe} needs checkpoint=<run dir or .keras file>")
    path = Path(str(checkpoint)).expanduser()
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"checkpoint={checkpoint}: the directory holds no {' or '.join(MODEL_FILES)}")
    if not path.exists():
        raise UserError(f"checkpoint={checkpoint}: no such file or directory")
    if path.suffix != ".keras" and not path.name.endswith(saved_form.WEIGHTS_SUFFIX):
        raise UserError(f"checkpoint={checkpoint}: not a .keras model file (or a run directory holding one)")
    return path


def load_model(path: Path):
    import keras

    _import_packages(path)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # zip, JSON or layer errors all mean the same to the user
        raise UserError(f"checkpoint={path}: not a loadable Keras model ({type(err).__name__}: {str(err)[:200]})") from None


def _import_packages(path: Path) -> None:
    """The packages whose classes the saved model names (keras_hub, the user's own), imported: Keras finds a
    registered class only once its module has run. One line names a package that is not installed."""
    import importlib
    import importlib.util
    import zipfile

    try:
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return  # not a model file: load_model says so
    for module in sorted(set(_modules(config))):
        package = module.split(".")[0]
        if package == "keras":
            continue
        if importlib.util.find_spec(package) is None:
            hint = (f"pip install {PIP_NAMES[package]}" if package in PIP_NAMES else
                    "run from the directory that holds it, or put it on PYTHONPATH")
            raise UserError(f"checkpoint={path}: the model is built of classes from {package} ({module}), "
                            f"which is not installed here: {hint}")
        importlib.import_module(module)


def _modules(config):
    """Every `module` a saved config names (of its layers, nested ones included)."""
    if isinstance(config, dict):
        if isinstance(config.get("module"), str):
            yield config["module"]
        for value in config.values():
            yield from _modules(value)
    elif isinstance(config, list):
        for value in config:
            yield from _modules(value)


def rebuilt_logits_model(path: Path, input_shape: tuple, num_classes: int):
    """The logits model of a run that saved weights (a subclassed model: `saved_form`): the network built
    again from the run's own config, the user's class included, with the weights loaded into it."""
    from keras_loss_recipes.config.schema import typed
    from keras_loss_recipes.config.settings import check_loss
    from keras_loss_recipes.data.inputs import input_dtype, kind_of
    from keras_loss_recipes.runtime.targets import resolve_target
    from keras_loss_recipes.training.network import build_network

    record = path.parent / METRICS_FILE
    if not record.is_file():
        raise UserError(f"checkpoint={path}: weights only, and no {METRICS_FILE} beside them names the model "
                        "they belong to; give the run directory that saved them")
    try:
        cfg = typed(json.loads(record.read_text())["config"])
    except UserError as err:
        raise UserError(f"checkpoint={path}: the config its run recorded in {METRICS_FILE} does not fit this "
                        f"version's ({err}); evaluate a .keras file of the run instead") from None
    target = cfg.model._target_
    try:
        resolve_target(target, "model._target_")
    except UserError as err:
        raise UserError(f"checkpoint={path}: weights only (the run's model is a subclassed model saved so); "
                        f"evaluating them needs its class, from model._target_={target}: {err}") from None
    _, logits_model, _ = build_network(cfg, check_loss(cfg), input_shape, num_classes,
                                       input_dtype=input_dtype(kind_of(cfg.data)))
    saved_form.weights_holder(logits_model).load_weights(path)
    return logits_model


def evaluate(cfg, run: Run) -> dict:
    """The checkpoint's figures on the configured data's test split, into `run`'s directory."""
    run_dir = run.dir
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    run.prepare()
    splits = tasks.check_labels(load_splits(cfg.data), cfg.task)
    start_backend()
    logits_model = saved_logits_model(checkpoint, splits, cfg.task)
    logits = np.asarray(logits_model.predict(model_inputs(splits.x_test, splits.inputs), batch_size=256,
                                   verbose=0), np.float64)
    check_width(logits.shape[-1], splits, checkpoint, cfg.task)
    sigmoid = losses.TASK_FAMILIES[cfg.task] == "sigmoid"
    # A sigmoid per unit is scored per unit: right where the logit's sign is the target's, ECE of max(p, 1 - p).
    scored = task_scores.scored_as(cfg.task, logits, splits.y_test)
    bins = cfg.recipe.bins
    result = {
        "status": "ok",
        "recipe": "evaluate",
        "task": cfg.task,
        "checkpoint": str(checkpoint),
        "model_file": checkpoint.name,
        "data": splits.name,
        "test_examples": len(splits.y_test),
        "test_accuracy": float(np.mean(scored[0].argmax(-1) == scored[1])),
        "test_exact_ce": task_scores.exact_ce(logits, splits.y_test, sigmoid),
        "test_ece": expected_calibration_error(*scored, bins),
        "ece_bins": bins,
    }
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    png = run_dir / "reliability.png"
    plot_reliability(*scored, png, f"{checkpoint.parent.name}/{checkpoint.name} on {splits.name}", bins)
    write_tensorboard(run_dir, result, png)
    run.write_metrics(result)
    log.info("evaluate %s on %s: accuracy=%.4f exact_ce=%.4f ECE=%.4f (%s)", checkpoint, splits.name,
             result["test_accuracy"], result["test_exact_ce"], result["test_ece"], run_dir / "eval.json")
    return result


run = in_process(evaluate)


def saved_logits_model(checkpoint: Path, splits, task: str = losses.MULTICLASS):
    """The model behind `checkpoint` (a .keras file, or a run's weights rebuilt from its config) that outputs
    its logits, checked to take the images of `splits`."""
    if checkpoint.name.endswith(saved_form.WEIGHTS_SUFFIX):
        logits_model = rebuilt_logits_model(checkpoint, splits.x_test.shape[1:], tasks.outputs(task, splits.num_classes))
    else:
        logits_model = logits_model_of(load_model(checkpoint))
    check_input_shape(logits_model, splits, checkpoint)
    return logits_model


def check_width(outputs: int, splits, checkpoint: Path, task: str = losses.MULTICLASS) -> None:
    """One line for a model with another number of outputs than `task` takes on the data (one per class; one for
    task=binary)."""
    if outputs != tasks.outputs(task, splits.num_classes):
        needs = " (task=binary takes one output)" if task == losses.BINARY else ""
        raise UserError(f"checkpoint={checkpoint}: the model has {outputs} outputs but data={splits.name} "
                        f"has {splits.num_classes} classes{needs}")


def check_input_shape(model, splits, checkpoint: Path) -> None:
    """One line, not Keras's traceback, for a model evaluated on images of another shape than it takes."""
    expected = tuple(model.input_shape[1:])
    images = tuple(splits.x_test.shape[1:])
    if len(expected) != len(images) or any(e not in (None, i) for e, i in zip(expected, images)):
        raise UserError(f"checkpoint={checkpoint}: the model takes inputs of shape {expected}; data={splits.name}'s "
                        f"images are {images}: evaluate it on the data it was trained on (the data= options in "
                        "its run's .hydra/overrides.yaml)")


def write_tensorboard(run_dir: Path, result: dict, png: Path) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(run_dir / "evaluate") as writer:
        for key in ("test_accuracy", "test_exact_ce", "test_ece"):
            writer.scalar(f"evaluate/{key}", result[key], 0)
        writer.png("evaluate/reliability", png)
