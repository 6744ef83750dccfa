"""The loss doctor: what your saved model computes as its loss, per backend and precision.

    python train.py recipe=doctor checkpoint=path/to/model.keras
    python train.py recipe=doctor checkpoint=model.keras recipe.loss=categorical_crossentropy   # saved uncompiled
    python train.py recipe=doctor checkpoint=model.keras recipe.strict=true   # exit 1 unless the loss is exact
    python train.py recipe=doctor checkpoint=model.keras recipe.fix=true      # and write the fixed models
    python train.py recipe=doctor checkpoint=model.keras recipe.fix=true recipe.calibrate=true   # T fitted on data=
    python -m keras_loss_recipes.recipes.doctor --docs          # re-generate docs/doctor.md and docs/doctor.json

The steps:
    1. read the model's graph from the file (`training.heads`): its output head (a softmax or
       sigmoid in a layer's activation, an Activation or Softmax layer, or plain logits), where the
       logits are, and the loss it was compiled with, or the one `recipe.loss` names;
    2. measure, per installed backend in a child process of its own (`keras_loss_recipes.recipes.doctor.worker`), in
       float32 and the mixed policies: the loss path on the probe batches, where the loss departs
       from the exact one over the logit gap (capped or NaN), and where its gradient dies;
    3. report (`reporting.doctor_report`): the verdict, the fix for this model, doctor.json,
       doctor.md and the same as TensorBoard text, in the run directory;
    4. with recipe.fix=true, the fix done (`fix`): model.logits.keras (the head taken off, compiled with
       the from_logits=True loss) and model.inference.keras (softmax of logits / T; T fitted on the
       validation split of `data` with recipe.calibrate=true, else 1), beside the report;
    5. with recipe.strict=true, exit code 1 unless every backend and precision computes the exact loss.
Bad input (not a Keras file, no classifier head, an unknown loss or option, a head that recipe.fix=true
cannot take off) is one `error:` line and exit code 2, before anything is measured.

The package: this module is the recipe; `diagnosis` holds the doctor's steps (and `diagnose`, the same
for a live model, from Python), `fix` does the fix, `worker` measures one backend (in its child process),
`examples` saves the models it is tested and documented on, `__main__` writes the docs page, `sigmoid_table`
prints the sigmoid family's paths and losses per backend.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.recipes.doctor.diagnosis import (ALL, Diagnosis, Plan, diagnose, examine, installed_backends,
                                                         measure, prepare, run_workers, skipped_backends)
from keras_loss_recipes.recipes.doctor.diagnosis import model_file as _model_file
from keras_loss_recipes.reporting import doctor_report
from keras_loss_recipes.reporting.doctor_report import probability_activation
from keras_loss_recipes.reporting.generated import environment
from keras_loss_recipes.runtime.errors import UserError

__all__ = ["Diagnosis", "Plan", "diagnose", "doctor", "examine", "installed_backends", "measure", "model_file",
           "options", "plan", "prepare", "run", "run_workers", "skipped_backends", "write_docs"]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
DOCS_EXAMPLE = "convnet"  # the docs page examines this model of keras_loss_recipes.recipes.doctor.examples
DOCS_COMMAND = "python -m keras_loss_recipes.recipes.doctor --docs"
STRICT_EXIT = 1  # recipe.strict=true and the loss is not exact everywhere
PREFIX = "recipe."  # how the recipe's options are spelled in its errors


def model_file(checkpoint) -> Path:
    if checkpoint in (None, ""):
        raise UserError("checkpoint is not set: recipe=doctor needs checkpoint=<path to a .keras model file>")
    return _model_file(checkpoint)


def options(**given):
    """The doctor's options (`recipe`) as configs/recipe/doctor.yaml gives them, typed, with `given` instead."""
    from omegaconf import OmegaConf

    from keras_loss_recipes.config.compose import compose_train

    return OmegaConf.merge(compose_train(["recipe=doctor"]).recipe, given)


def plan(path: Path, options) -> Plan:
    """Read the model file and check the options (the typed `recipe` of recipe=doctor: `options()`); UserError
    on anything the doctor cannot examine. Every installed backend unless recipe.backends names some."""
    checked = prepare(path, options.loss, options.from_logits, ALL if options.backends is None else options.backends,
                      options.precisions, prefix=PREFIX)
    if options.calibrate and not options.fix:
        raise UserError("recipe.calibrate=true fits the T of the inference model that recipe.fix=true writes: "
                        "set recipe.fix=true too")
    if options.fix:
        from keras_loss_recipes.recipes.doctor.fix import check_calibratable, check_fixable

        check_fixable(checked.model.head, checked.where)
        if options.calibrate:
            check_calibratable(probability_activation(checked.model.head.kind, checked.loss.labels),
                               "recipe.calibrate=true", "leave recipe.calibrate=false")
    return checked


def doctor(cfg, run: Run) -> dict:
    """The doctor's report on the checkpoint, into `run`'s directory; with recipe.fix=true the fixed models
    beside it; exit code 1 under recipe.strict when the verdict is not clean."""
    run_dir = run.dir
    checked = plan(model_file(cfg.checkpoint), cfg.recipe)
    run.prepare()
    fixed = write_fixed(cfg, checked, run_dir) if cfg.recipe.fix else None
    report = measure(checked, run_dir).report  # the children's logs stay in the run directory
    if fixed:
        report["fixed"] = fixed
    doctor_report.write_all(run_dir, report)
    metrics = {k: report[k] for k in ("status", "recipe", "checkpoint", "verdict", "lossy", "wall_s", "fixed")
               if k in report}
    run.write_metrics(metrics)
    print("\n".join(doctor_report.console_lines(report)), flush=True)
    log.info("doctor: report written to %s (%s, %s)", run_dir, doctor_report.REPORT_FILE, doctor_report.MARKDOWN_FILE)
    if cfg.recipe.strict and report["verdict"] != "clean":
        print(f"doctor: recipe.strict=true and the verdict is {report['verdict']}: exit code {STRICT_EXIT}",
              file=sys.stderr, flush=True)
        raise SystemExit(STRICT_EXIT)
    return metrics


def write_fixed(cfg, checked: Plan, run_dir: Path) -> dict:
    """recipe.fix=true: the fixed models (`fix.fix`) saved into the run directory, and what the report says
    of them. With recipe.calibrate=true, T is fitted on the validation split of `data`."""
    from keras_loss_recipes.recipes.doctor.fix import fix
    from keras_loss_recipes.runtime.quiet import start_backend

    start_backend()  # this process loads the model: Keras's start, without the CPU machine's chatter
    validation, source = None, None
    if cfg.recipe.calibrate:
        from keras_loss_recipes.data import load_splits
        from keras_loss_recipes.data.pipeline import model_inputs

        splits = load_splits(cfg.data)
        validation = model_inputs(splits.x_val, splits.inputs), splits.y_val
        source = f"the validation split of data={splits.name} ({len(splits.y_val)} examples)"
    fixed = fix(checked.subject, loss=cfg.recipe.loss, validation_data=validation)
    logits_file, inference_file = fixed.save(run_dir, Path(checked.subject).name.removesuffix(".keras"))
    optimizer = getattr(fixed.logits_model, "optimizer", None)
    return {"logits_model": logits_file.name, "inference_model": inference_file.name,
            "loss": checked.loss.code(from_logits=True),
            "optimizer": type(optimizer).__name__ if checked.model.compile_config else None,
            "activation": probability_activation(checked.model.head.kind, checked.loss.labels),
            "temperature": fixed.temperature, "temperature_from": source}


run = in_process(doctor)


# --- the docs page: the keras.io convnet, examined ---------------------------------------------


def write_docs(docs_dir: Path = DOCS) -> None:
    """Save the docs example model, run the doctor on it with recipe.fix=true and then with recipe.strict=true
    on the fixed model it wrote, as a user runs them; store both reports and render the page."""
    from keras_loss_recipes.recipes.doctor.fix import LOGITS_SUFFIX

    began = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "keras_loss_recipes.recipes.doctor.examples", str(scratch), DOCS_EXAMPLE],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        model = scratch / f"{DOCS_EXAMPLE}.keras"
        report = _doctor_command([f"checkpoint={model}", "recipe.fix=true"], scratch / "fix", env)
        fixed = scratch / "fix" / f"{DOCS_EXAMPLE}{LOGITS_SUFFIX}"
        after = _doctor_command([f"checkpoint={fixed}", "recipe.strict=true"], scratch / "strict", env)
    # Named by the file alone, not the temporary directory it was saved in.
    report["checkpoint"], after["checkpoint"] = model.name, fixed.name
    report["after_fix"] = {
        "report": after, "exit_code": 0,  # _doctor_command raised otherwise
        "fix_command": f"python train.py recipe=doctor checkpoint={model.name} recipe.fix=true",
        "strict_command": f"python train.py recipe=doctor checkpoint=<its run directory>/{fixed.name} recipe.strict=true"}
    report["environment"] = environment(DOCS_COMMAND, time.time() - began, quick=False, left_out=[])
    (docs_dir / doctor_report.REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (docs_dir / doctor_report.MARKDOWN_FILE).write_text(doctor_report.render_docs_page(report))
    print(f"doctor: wrote {docs_dir / doctor_report.MARKDOWN_FILE} and {docs_dir / doctor_report.REPORT_FILE}")


def _doctor_command(overrides: list[str], run_dir: Path, env: dict) -> dict:
    """`python train.py recipe=doctor OVERRIDES` in `run_dir`, as a user runs it: its doctor.json; an error
    with the end of its stderr unless it exits 0."""
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "recipe=doctor", *overrides,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"recipe=doctor {' '.join(overrides)} exited with code {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads((run_dir / doctor_report.REPORT_FILE).read_text())
