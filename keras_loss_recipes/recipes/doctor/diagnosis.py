"""`diagnose`: the loss doctor on a live Keras model or a saved `.keras` file, as a report object.

The one definition of the doctor's steps, which the recipe (`recipe=doctor`) calls too:
`prepare` reads the model's head and loss and checks every option (UserError, before anything
is measured); `measure` measures it, here on the current backend or in a child process per
backend; `Diagnosis` holds the report: a row per backend x precision, the verdict, the fix, and
the doctor's Markdown as its `str()` (and `_repr_markdown_`, for notebooks).

>>> import keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", name="probs")],
...                          name="classifier")
>>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
>>> report = diagnose(model, precisions=["mixed_float16"])  # a 16-bit softmax clips on every backend
>>> report.verdict, [row["path"] for row in report.rows]
('lossy', ['clipped_probabilities'])
>>> print(report.fix[0])
Remove the softmax from layer 'probs' (`Dense(..., activation=None)`) and compile with `SparseCategoricalCrossentropy(from_logits=True)`.
>>> str(report).splitlines()[0]
'### Loss doctor: `classifier (in memory)`'
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import tempfile
import time
from pathlib import Path

from keras_loss_recipes.config.settings import require_choice
from keras_loss_recipes.losses import LossOptionError
from keras_loss_recipes.losses.keras_losses import HEADS_FOR, KERAS_LOSSES, KerasLoss, parse
from keras_loss_recipes.losses.keras_losses import names as loss_names
from keras_loss_recipes.reporting import doctor_report
from keras_loss_recipes.runtime.backends import BACKENDS
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.install_hints import install_hint
from keras_loss_recipes.runtime.session import PRECISIONS
from keras_loss_recipes.runtime.workers import Worker, each_backend
from keras_loss_recipes.runtime.workers import run as run_worker
from keras_loss_recipes.training.heads import SavedModel, find_head, live_config, read_saved_model
from keras_loss_recipes.training.saved_form import WEIGHTS_SUFFIX

IN_MEMORY = " (in memory)"  # how a report names a live model: its name and this
ALL = "all"  # backends="all": every installed backend, a child process each


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def skipped_backends(backends: list[str], key: str = "recipe.backends") -> list[str]:
    """One line per backend not measured, and why: not installed (and how to install it), or not asked for."""
    installed = installed_backends()
    return [f"skipped {b}: not installed ({install_hint(b)})" if b not in installed
            else f"skipped {b}: not in {key}" for b in BACKENDS if b not in backends]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one diagnosis examines, all of it checked before anything is measured.

    `subject` names the model in the report (its path, or its name for a live model); `where` begins the
    errors about it; `here`: measured in this process on the current backend, not in child processes.
    """

    subject: str
    where: str
    model: SavedModel
    loss: KerasLoss
    loss_source: str
    backends: list[str]
    precisions: list[str]
    here: bool = False


def prepare(model_or_path, loss=None, from_logits=None, backends=None, precisions=None, prefix: str = "") -> Plan:
    """Read the model's head and loss and check the options; UserError on anything the doctor cannot examine.

    `prefix` is how the caller spells the options: "" for `diagnose(loss=...)`, "recipe." for the recipe.
    """
    here = backends is None
    if here:
        import keras

        backends = [keras.backend.backend()]
    else:
        backends = _listed(f"{prefix}backends", backends, [*BACKENDS, ALL], default=installed_backends())
        backends = installed_backends() if ALL in backends else backends
        missing = [b for b in backends if b not in installed_backends()]
        if missing:
            raise UserError(f"{prefix}backends: {', '.join(missing)} is not installed; installed: "
                            f"{', '.join(installed_backends())}")
    precisions = _listed(f"{prefix}precisions", precisions, PRECISIONS, default=list(PRECISIONS))
    model, where = read_model(model_or_path)
    chosen, source = choose_loss(model, where, loss, from_logits, prefix)
    check_fit(model, where, chosen)
    return Plan(model.path, where, model, chosen, source, backends, precisions, here)


def read_model(model_or_path) -> tuple[SavedModel, str]:
    """The head and compiled loss of a live keras.Model or of a `.keras` file, and how errors name it."""
    if isinstance(model_or_path, (str, Path)):
        path = model_file(model_or_path)
        return read_saved_model(path), f"checkpoint={path}"
    import keras

    from keras_loss_recipes.training.subclassed import is_subclassed

    model = model_or_path
    if not isinstance(model, keras.Model):
        raise UserError(f"model_or_path: got a {type(model).__name__}; give a keras.Model or the path of a "
                        ".keras file")
    where = f"model '{model.name}'"
    if is_subclassed(model):
        raise UserError(f"{where} ({type(model).__name__}) is a subclassed model: its head shows only when its "
                        "call() runs, and the doctor reads graphs; build it as a functional or Sequential model "
                        "(keras.Model(inputs, outputs)), or save it and give the .keras file")
    compiled = model.get_compile_config() if model.compiled else {}
    return SavedModel(path=f"{model.name}{IN_MEMORY}", name=model.name, class_name=type(model).__name__,
                      keras_version=keras.__version__, head=find_head(live_config(model), where),
                      compiled_loss=(compiled or {}).get("loss"), compile_config=compiled or None), where


def model_file(checkpoint, key: str = "checkpoint") -> Path:
    """`checkpoint` as the path of a `.keras` model file; UserError naming `key` where it is not one."""
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise UserError(f"{key}={checkpoint}: no such file")
    if path.name.endswith(WEIGHTS_SUFFIX):
        raise UserError(f"{key}={checkpoint}: weights only, not a model (a run saves them for a subclassed "
                        "model that a .keras file would not give back as trained); the doctor needs the model's "
                        "class: build it in your code, load these weights, and save it with model.save('model."
                        "keras'), the class registered with @keras.saving.register_keras_serializable()")
    if path.suffix != ".keras":
        raise UserError(f"{key}={checkpoint}: not a .keras model file; save the model with "
                        "model.save('model.keras') (Keras 3's format)")
    return path


def choose_loss(model: SavedModel, where: str, name, from_logits, prefix: str = "") -> tuple[KerasLoss, str]:
    """The loss to examine and where it came from: the `loss` option, else the model's compiled loss."""
    require_choice(f"{prefix}from_logits", from_logits, (None, True, False))
    choices = [*loss_names(), *KERAS_LOSSES]  # Keras takes a loss by its function or its class name
    if name is not None:
        require_choice(f"{prefix}loss", name, choices)
        return parse(name, from_logits), f"{prefix}loss"
    if model.compiled_loss is None:
        state = "is not compiled" if model.path.endswith(IN_MEMORY) else "was saved without a compiled loss"
        raise UserError(f"{where}: the model {state}; name the loss to examine with "
                        f"{prefix}loss=<{' | '.join(loss_names())}>")
    source = ("compiled into the model" + ("" if model.path.endswith(IN_MEMORY) else " file")
              + (f", from_logits by {prefix}from_logits" if from_logits is not None else ""))
    try:
        return parse(model.compiled_loss, from_logits), source
    except LossOptionError as err:
        raise UserError(f"{where}: {err} (set {prefix}loss to examine one of them instead)") from None


def check_fit(model: SavedModel, where: str, loss: KerasLoss) -> None:
    head = model.head
    if head.kind != "unknown" and not loss.fits(head.kind):
        raise UserError(f"{where}: {loss.code()} does not fit the model's {head.kind} output "
                        f"(layer '{head.layer}'); it takes a {' or '.join(HEADS_FOR[loss.labels])} output")


def _listed(key: str, value, choices, default: list[str]) -> list[str]:
    """A list option: None means `default`; each entry must be one of `choices`."""
    if value is None:
        return list(default)
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise UserError(f"{key}=[]: name at least one of {', '.join(choices)}")
    for v in values:
        require_choice(key, v, choices)
    return values


# --- the measurement -------------------------------------------------------------------------------


def examination(plan: Plan) -> dict:
    """What one worker examines: the head, the loss and the precisions (JSON for the child)."""
    return {"head": dataclasses.asdict(plan.model.head), "loss": dataclasses.asdict(plan.loss),
            "precisions": plan.precisions}


def run_workers(examinations: list[dict], backends: list[str], work_dir: Path,
                key: str = "recipe.backends") -> dict[str, list[dict]]:
    """Each backend's results (one per examination and precision), measured in a child process per backend.

    The children run side by side, and each result is printed as it arrives.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_file = work_dir / "doctor_examinations.json"
    spec_file.write_text(json.dumps(examinations))
    total = sum(len(e["precisions"]) for e in examinations) * len(backends)
    print(f"doctor: measuring {total} combinations on {', '.join(backends)} (one process each)", flush=True)
    for line in skipped_backends(backends, key):
        print(f"doctor: {line}", flush=True)
    began = time.time()

    def measure_on(backend: str) -> list[dict]:
        def arrived(result: dict) -> None:
            print(f"  {backend:10s} {result['precision']:15s} {result['path']:24s} "
                  f"({result['seconds']:.1f}s; {time.time() - began:.0f}s elapsed)", flush=True)

        worker = Worker(backend, ["-m", "keras_loss_recipes.recipes.doctor.worker", str(spec_file)],
                        work_dir / f"doctor-{backend}.log")
        return [{"backend": backend, **result} for result in run_worker(worker, on_result=arrived)]

    return each_backend(backends, measure_on, side_by_side=True)


def measure_here(plan: Plan) -> list[dict]:
    """The plan's results on the current backend, measured in this process (the Keras session is left as it
    was: the worker's measurement without its fresh session, TensorFlow's retracing warnings held back)."""
    from keras_loss_recipes.recipes.doctor import worker

    spec, results = examination(plan), []
    with _tensorflow_warnings_held():
        for precision in plan.precisions:
            began = time.perf_counter()
            result = worker.measure(spec, precision)
            results.append({"backend": plan.backends[0], **result, "spec": 0, "precision": precision,
                            "seconds": round(time.perf_counter() - began, 2)})
    return results


@contextlib.contextmanager
def _tensorflow_warnings_held():
    """TensorFlow's logger at ERROR inside (each probe model traces anew, which it warns about), then as it was."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def examine(plans: list[Plan], work_dir: Path, names: list[str] | None = None) -> list[dict]:
    """The reports of several plans measured in child processes (on the same backends), one per backend.

    `names` name the models in the reports (default: their subjects).
    """
    backends = plans[0].backends
    assert all(p.backends == backends for p in plans), "one child per backend examines every plan"
    by_backend = run_workers([examination(p) for p in plans], backends, work_dir)
    names = names or [p.subject for p in plans]
    return [build_report(p, [r for b in backends for r in by_backend[b] if r["spec"] == i], names[i])
            for i, p in enumerate(plans)]


def build_report(plan: Plan, results: list[dict], name: str | None = None) -> dict:
    """The report (doctor.json) of one model, from its results on every backend measured."""
    model, loss = plan.model, plan.loss
    head = {k: v for k, v in dataclasses.asdict(model.head).items() if k != "layer_config"}
    results = [{k: v for k, v in r.items() if k != "spec"} for r in results]
    report = {
        "status": "ok", "recipe": "doctor", "checkpoint": name or plan.subject,
        "model": {"name": model.name, "class_name": model.class_name, "keras_version": model.keras_version},
        "head": head,
        "loss": {**dataclasses.asdict(loss), "labels": loss.labels, "code": loss.code(),
                 "fixed_code": loss.code(from_logits=True), "source": plan.loss_source},
        "backends": plan.backends, "not_installed": [b for b in BACKENDS if b not in installed_backends()],
        "results": results,
        "verdict": doctor_report.verdict(results), "lossy": doctor_report.lossy_runs(results),
    }
    report["fix"] = doctor_report.fix_lines(report)
    return report


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The doctor's report on one model: `rows` (one per backend x precision), `verdict`, `fix` (what to
    change, in words; none when clean) and `report` (doctor.json's content). `str()` is doctor.md."""

    report: dict

    @property
    def rows(self) -> list[dict]:
        return self.report["results"]

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    @property
    def fix(self) -> list[str]:
        return self.report["fix"]

    def __str__(self) -> str:
        return doctor_report.render_markdown(self.report)

    def _repr_markdown_(self) -> str:
        return str(self)


def measure(plan: Plan, work_dir: Path | None = None) -> Diagnosis:
    """The plan measured: here, or in child processes that keep their logs in `work_dir` (default: a
    temporary directory)."""
    began = time.time()
    if plan.here:
        report = build_report(plan, measure_here(plan))
    elif work_dir is not None:
        [report] = examine([plan], Path(work_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="doctor-") as scratch:
            [report] = examine([plan], Path(scratch))
    report["wall_s"] = round(time.time() - began, 1)
    return Diagnosis(report)


def diagnose(model_or_path, *, loss=None, from_logits=None, backends=None, precisions=None) -> Diagnosis:
    """The loss doctor on `model_or_path` (a keras.Model, or the path of a `.keras` file): which computation
    its loss really is, per backend and precision, the verdict and the fix.

    loss          the loss to examine (categorical_crossentropy, sparse_categorical_crossentropy,
                  binary_crossentropy, or their class names); default: the one the model was compiled with
    from_logits   that loss's from_logits; default: what the model was compiled with (False for `loss=`)
    backends      None (default): the current backend, in this process (quick); "all": every installed
                  backend, or a list of them, each in a child process of its own, as `recipe=doctor` does
    precisions    a list of float32, mixed_float16, mixed_bfloat16; default: all three

    Nothing of the model is changed. Bad input (several outputs, no classifier head, an uncompiled model
    without `loss=`, an unknown loss) is a UserError naming what to change.
    """
    return measure(prepare(model_or_path, loss, from_logits, backends, precisions))
