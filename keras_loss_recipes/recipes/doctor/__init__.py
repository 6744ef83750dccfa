"""The loss doctor: what your saved model computes as its loss, per backend and precision.

    python train.py recipe=doctor checkpoint=path/to/model.keras
    python train.py recipe=doctor checkpoint=model.keras recipe.loss=categorical_crossentropy   # saved uncompiled
    python train.py recipe=doctor checkpoint=model.keras recipe.strict=true   # exit 1 unless the loss is exact
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
    4. with recipe.strict=true, exit code 1 unless every backend and precision computes the exact loss.
Bad input (not a Keras file, no classifier head, an unknown loss or option) is one `error:` line and
exit code 2, before anything is measured.

The package: this module is the recipe; `worker` measures one backend (in its child process),
`examples` saves the models it is tested and documented on, `__main__` writes the docs page.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_loss_recipes.losses import LossOptionError
from keras_loss_recipes.losses.keras_losses import HEADS_FOR, KERAS_LOSSES, KerasLoss, parse
from keras_loss_recipes.losses.keras_losses import names as loss_names
from keras_loss_recipes.reporting import doctor_report
from keras_loss_recipes.reporting.generated import environment
from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.runtime.backends import BACKENDS
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.install_hints import install_hint
from keras_loss_recipes.runtime.session import PRECISIONS
from keras_loss_recipes.runtime.workers import Worker, each_backend
from keras_loss_recipes.runtime.workers import run as run_worker
from keras_loss_recipes.config.settings import require_choice
from keras_loss_recipes.training.heads import SavedModel, read_saved_model
from keras_loss_recipes.training.saved_form import WEIGHTS_SUFFIX

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
DOCS_EXAMPLE = "convnet"  # the docs page examines this model of keras_loss_recipes.recipes.doctor.examples
DOCS_COMMAND = "python -m keras_loss_recipes.recipes.doctor --docs"
STRICT_EXIT = 1  # recipe.strict=true and the loss is not exact everywhere


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def skipped_backends(backends: list[str]) -> list[str]:
    """One line per backend not measured, and why: not installed (and how to install it), or not asked for."""
    installed = installed_backends()
    return [f"skipped {b}: not installed ({install_hint(b)})" if b not in installed
            else f"skipped {b}: not in recipe.backends" for b in BACKENDS if b not in backends]


def model_file(checkpoint) -> Path:
    if checkpoint in (None, ""):
        raise UserError("checkpoint is not set: recipe=doctor needs checkpoint=<path to a .keras model file>")
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint={checkpoint}: no such file")
    if path.name.endswith(WEIGHTS_SUFFIX):
        raise UserError(f"checkpoint={checkpoint}: weights only, not a model (a run saves them for a subclassed "
                        "model that a .keras file would not give back as trained); the doctor needs the model's "
                        "class: build it in your code, load these weights, and save it with model.save('model."
                        "keras'), the class registered with @keras.saving.register_keras_serializable()")
    if path.suffix != ".keras":
        raise UserError(f"checkpoint={checkpoint}: not a .keras model file; save the model with "
                        "model.save('model.keras') (Keras 3's format)")
    return path


def choose_loss(model: SavedModel, name, from_logits) -> tuple[KerasLoss, str]:
    """The loss to examine and where it came from: `recipe.loss`, else the model file's compiled loss."""
    require_choice("recipe.from_logits", from_logits, (None, True, False))
    choices = [*loss_names(), *KERAS_LOSSES]  # Keras takes a loss by its function or its class name
    if name is not None:
        require_choice("recipe.loss", name, choices)
        return parse(name, from_logits), "recipe.loss"
    if model.compiled_loss is None:
        raise UserError(f"checkpoint={model.path}: the model was saved without a compiled loss; name the loss "
                        f"to examine with recipe.loss=<{' | '.join(loss_names())}>")
    source = "compiled into the model file" + (", from_logits by recipe.from_logits" if from_logits is not None else "")
    try:
        return parse(model.compiled_loss, from_logits), source
    except LossOptionError as err:
        raise UserError(f"checkpoint={model.path}: {err} (set recipe.loss to examine one of them instead)") from None


def check_fit(model: SavedModel, loss: KerasLoss) -> None:
    head = model.head
    if head.kind != "unknown" and not loss.fits(head.kind):
        raise UserError(f"checkpoint={model.path}: {loss.code()} does not fit the model's {head.kind} output "
                        f"(layer '{head.layer}'); it takes a {' or '.join(HEADS_FOR[loss.labels])} output")


def examination(model: SavedModel, loss: KerasLoss, precisions: list[str]) -> dict:
    """What one worker examines: the head, the loss and the precisions (JSON for the child)."""
    return {"head": dataclasses.asdict(model.head), "loss": dataclasses.asdict(loss), "precisions": precisions}


def run_workers(examinations: list[dict], backends: list[str], work_dir: Path) -> dict[str, list[dict]]:
    """Each backend's results (one per examination and precision), measured in a child process per backend.

    The children run side by side, and each result is printed as it arrives.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_file = work_dir / "doctor_examinations.json"
    spec_file.write_text(json.dumps(examinations))
    total = sum(len(e["precisions"]) for e in examinations) * len(backends)
    print(f"doctor: measuring {total} combinations on {', '.join(backends)} (one process each)", flush=True)
    for line in skipped_backends(backends):
        print(f"doctor: {line}", flush=True)
    began = time.time()

    def measure(backend: str) -> list[dict]:
        def arrived(result: dict) -> None:
            print(f"  {backend:10s} {result['precision']:15s} {result['path']:24s} "
                  f"({result['seconds']:.1f}s; {time.time() - began:.0f}s elapsed)", flush=True)

        worker = Worker(backend, ["-m", "keras_loss_recipes.recipes.doctor.worker", str(spec_file)], work_dir / f"doctor-{backend}.log")
        return [{"backend": backend, **result} for result in run_worker(worker, on_result=arrived)]

    return each_backend(backends, measure, side_by_side=True)


def build_report(model: SavedModel, loss: KerasLoss, source: str, backends: list[str],
                 results: list[dict], checkpoint: str) -> dict:
    """The report (doctor.json) of one model, from its results on every backend."""
    head = {k: v for k, v in dataclasses.asdict(model.head).items() if k != "layer_config"}
    results = [{k: v for k, v in r.items() if k != "spec"} for r in results]
    report = {
        "status": "ok", "recipe": "doctor", "checkpoint": checkpoint,
        "model": {"name": model.name, "class_name": model.class_name, "keras_version": model.keras_version},
        "head": head,
        "loss": {**dataclasses.asdict(loss), "labels": loss.labels, "code": loss.code(),
                 "fixed_code": loss.code(from_logits=True), "source": source},
        "backends": backends, "not_installed": [b for b in BACKENDS if b not in installed_backends()],
        "results": results,
        "verdict": doctor_report.verdict(results), "lossy": doctor_report.lossy_runs(results),
    }
    report["fix"] = doctor_report.fix_lines(report)
    return report


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one doctor run examines, all of it checked before anything is measured."""

    path: Path
    model: SavedModel
    loss: KerasLoss
    loss_source: str
    backends: list[str]
    precisions: list[str]


def options(**given):
    """The doctor's options (`recipe`) as configs/recipe/doctor.yaml gives them, typed, with `given` instead."""
    from omegaconf import OmegaConf

    from keras_loss_recipes.config.compose import compose_train

    return OmegaConf.merge(compose_train(["recipe=doctor"]).recipe, given)


def plan(path: Path, options) -> Plan:
    """Read the model file and check the options (the typed `recipe` of recipe=doctor: `options()`); UserError
    on anything the doctor cannot examine."""
    backends = _listed("recipe.backends", options.backends, BACKENDS, default=installed_backends())
    missing = [b for b in backends if b not in installed_backends()]
    if missing:
        raise UserError(f"recipe.backends: {', '.join(missing)} is not installed; installed: "
                        f"{', '.join(installed_backends())}")
    precisions = _listed("recipe.precisions", options.precisions, PRECISIONS, default=list(PRECISIONS))
    model = read_saved_model(path)
    loss, source = choose_loss(model, options.loss, options.from_logits)
    check_fit(model, loss)
    return Plan(path, model, loss, source, backends, precisions)


def examine(plans: list[Plan], work_dir: Path, checkpoints: list[str] | None = None) -> list[dict]:
    """Measure several plans (on the same backends) with one child process per backend; their reports.

    `checkpoints` names the models in the reports (default: their paths).
    """
    backends = plans[0].backends
    assert all(p.backends == backends for p in plans), "one child per backend examines every plan"
    by_backend = run_workers([examination(p.model, p.loss, p.precisions) for p in plans], backends, work_dir)
    names = checkpoints or [str(p.path) for p in plans]
    return [build_report(p.model, p.loss, p.loss_source, backends,
                         [r for b in backends for r in by_backend[b] if r["spec"] == i], names[i])
            for i, p in enumerate(plans)]


def _listed(key: str, value, choices, default: list[str]) -> list[str]:
    """A list option: null means `default`; each entry must be one of `choices`."""
    if value is None:
        return list(default)
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise UserError(f"{key}=[]: name at least one of {', '.join(choices)}")
    for v in values:
        require_choice(key, v, choices)
    return values


def doctor(cfg, run: Run) -> dict:
    """The doctor's report on the checkpoint, into `run`'s directory; exit code 3 under recipe.strict when the
    verdict is not clean."""
    run_dir = run.dir
    checked = plan(model_file(cfg.checkpoint), cfg.recipe)
    run.prepare()
    began = time.time()
    [report] = examine([checked], run_dir)  # the children's logs stay in the run directory
    report["wall_s"] = round(time.time() - began, 1)
    doctor_report.write_all(run_dir, report)
    metrics = {k: report[k] for k in ("status", "recipe", "checkpoint", "verdict", "lossy", "wall_s")}
    run.write_metrics(metrics)
    print("\n".join(doctor_report.console_lines(report)), flush=True)
    log.info("doctor: report written to %s (%s, %s)", run_dir, doctor_report.REPORT_FILE, doctor_report.MARKDOWN_FILE)
    if cfg.recipe.strict and report["verdict"] != "clean":
        print(f"doctor: recipe.strict=true and the verdict is {report['verdict']}: exit code {STRICT_EXIT}",
              file=sys.stderr, flush=True)
        raise SystemExit(STRICT_EXIT)
    return metrics


run = in_process(doctor)


# --- the docs page: the keras.io convnet, examined ---------------------------------------------


def write_docs(docs_dir: Path = DOCS) -> None:
    """Save the docs example model, examine it with the defaults, store its report and render the page."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "keras_loss_recipes.recipes.doctor.examples", str(scratch), DOCS_EXAMPLE],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        began = time.time()
        # Named by the file alone, not the temporary directory it was saved in.
        [report] = examine([plan(scratch / f"{DOCS_EXAMPLE}.keras", options())], scratch, [f"{DOCS_EXAMPLE}.keras"])
        report["wall_s"] = round(time.time() - began, 1)
    report["environment"] = environment(DOCS_COMMAND, report["wall_s"], quick=False, left_out=[])
    (docs_dir / doctor_report.REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (docs_dir / doctor_report.MARKDOWN_FILE).write_text(doctor_report.render_docs_page(report))
    print(f"doctor: wrote {docs_dir / doctor_report.MARKDOWN_FILE} and {docs_dir / doctor_report.REPORT_FILE}")
