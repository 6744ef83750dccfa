"""Up-front validation of the typed config (`schema.typed`: every key there, of its type), before any data loading or model building.

The types are the schema's; here are the ranges, the choices and the keys that take one of several
kinds (`auto` or a number). Each check names the config key, the bad value and what is allowed, so the
entry point can print one line and exit non-zero. The valid choices come from
the code that builds each thing (models, optimizers, data sources, devices,
precisions, NaN/inf policies); nothing is listed twice. Nothing here imports
Keras or TensorFlow: a typo costs milliseconds, not the framework's start-up time.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from keras_loss_recipes import losses
from keras_loss_recipes.config.model_inputs import check_model_takes
from keras_loss_recipes.config.resolvers import OWN_MODELS
from keras_loss_recipes.data.arrays import load_npz
from keras_loss_recipes.data.embedded import load_embedded
from keras_loss_recipes.data.folder import check_folder, load_folder
from keras_loss_recipes.data.idx import check_directory, load_idx
from keras_loss_recipes.data.inputs import KEY as INPUTS_KEY
from keras_loss_recipes.data.inputs import KINDS as INPUT_KINDS
from keras_loss_recipes.data.tfds_source import DOWNLOAD_MODES, load_tfds
from keras_loss_recipes.data.validation_split import AUTO as VAL_AUTO
from keras_loss_recipes.runtime.backends import BACKENDS, DEVICES
from keras_loss_recipes.runtime.distribution import DISTRIBUTION_BACKENDS, DISTRIBUTIONS, JIT_CHOICES
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.execution import check as check_steps_per_execution
from keras_loss_recipes.reporting.objective import objective
from keras_loss_recipes.runtime.preemption import check as check_preemption_signals
from keras_loss_recipes.runtime.preemption import check_grace as check_preemption_grace
from keras_loss_recipes.runtime.session import PRECISIONS
from keras_loss_recipes.runtime.targets import check_module_exists, resolve_target
from keras_loss_recipes.training.optimizers import BUILDERS as OPTIMIZER_BUILDERS
from keras_loss_recipes.training.save_schedule import parse_every
from keras_loss_recipes.training.steps import NONFINITE_POLICIES

VERBOSITY = (0, 1, 2, "auto")  # what Keras's fit(verbose=...) accepts


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def require_int(key: str, value, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise UserError(f"{key}={value!r}: must be an integer >= {minimum}")


def require_optional_int(key: str, value, minimum: int) -> None:
    if value is not None:
        require_int(key, value, minimum)


def require_positive(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not (math.isfinite(value) and value > 0):
        raise UserError(f"{key}={value!r}: must be a finite number > 0")


def require_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value!r}: valid choices: {', '.join(map(str, choices))}")


def check_loss(cfg, trains: bool = True) -> losses.LossSetup:
    """The loss setup `cfg` describes, checked against its backend and, for a recipe that `trains` with it,
    its task (`task`); a recipe that scores a saved model takes the task alone."""
    task = cfg.task
    require_choice("task", task, losses.TASKS)
    try:
        setup = losses.get(
            cfg.loss.name,
            label_smoothing=cfg.loss.label_smoothing,
            temperature=cfg.loss.temperature,
        )
        setup.check_backend(cfg.backend)
        if trains:
            setup.check_task(task, cfg.backend)
        return setup
    except losses.LossOptionError as err:
        if err.option in ("backend", "task"):
            raise UserError(f"loss={cfg.loss.name}: {err}") from None
        if err.option == "name":
            raise UserError(f"loss.name: {err}") from None
        raise UserError(f"loss.{err}") from None


def check_val_examples(data) -> None:
    """`auto` or an integer >= 1, where validation comes out of a training file."""
    value = data.val_examples
    if value != VAL_AUTO and not (_is_int(value) and value >= 1):
        raise UserError(f"data.val_examples={value!r}: must be {VAL_AUTO} or an integer >= 1")


def _check_embedded(data) -> None:
    """The embedded set's sizes are fixed numbers."""
    require_int("data.val_examples", data.val_examples, 1)
    require_int("data.test_examples", data.test_examples, 1)
    if data.val_examples + data.test_examples >= 5000:
        raise UserError(
            f"data.val_examples + data.test_examples = {data.val_examples + data.test_examples}: "
            "must leave training examples out of the 5,000 embedded digits"
        )


def _check_idx(data) -> None:
    check_val_examples(data)
    check_directory(data.dir)
    require_int("data.num_classes", data.num_classes, 2)


def _check_tfds(data) -> None:
    check_val_examples(data)
    require_choice("data.download", str(data.download).lower(), DOWNLOAD_MODES)
    require_int("data.num_classes", data.num_classes, 2)


def _check_split_off_test(data) -> None:
    """Sources whose test images may be split off the training ones: `auto` or a number."""
    check_val_examples(data)
    if data.test_examples != VAL_AUTO:
        require_int("data.test_examples", data.test_examples, 1)


def _check_folder(data) -> None:
    _check_split_off_test(data)
    check_folder(data)


def _check_npz(data) -> None:
    _check_split_off_test(data)
    require_optional_int("data.num_classes", data.num_classes, 2)


# The checks of the project's own loaders, by the loader a data config's `_target_` names.
DATA_CHECKS = {load_embedded: _check_embedded, load_idx: _check_idx, load_tfds: _check_tfds,
               load_folder: _check_folder, load_npz: _check_npz}


def check_data(data) -> None:
    require_optional_int("data.max_train_examples", data.max_train_examples, 1)
    if "inputs" in data:
        require_choice(INPUTS_KEY, data.inputs, INPUT_KINDS)
    require_int("data.split_seed", data.split_seed, 0)
    target = data._target_
    check_module_exists(target, "data._target_")
    if str(target).startswith(OWN_MODELS):  # the project's: importing it costs nothing
        DATA_CHECKS.get(resolve_target(target, "data._target_"), _check_split_off_test)(data)
    else:  # a callable of the user's (it may import Keras): its arrays are checked once it returns them
        _check_split_off_test(data)


def check_optimizer(opt) -> None:
    require_choice("optimizer.name", opt.name, tuple(OPTIMIZER_BUILDERS))
    require_positive("optimizer.learning_rate", opt.learning_rate)
    if opt.name == "sgd":
        momentum = opt.momentum
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum < 1:
            raise UserError(f"optimizer.momentum={momentum!r}: must be in [0, 1)")


def check_trainer(trainer) -> None:
    require_int("trainer.epochs", trainer.epochs, 1)
    require_int("trainer.batch_size", trainer.batch_size, 1)
    require_choice("trainer.verbose", trainer.verbose, VERBOSITY)
    require_choice("trainer.precision", trainer.precision, PRECISIONS)
    require_choice("trainer.on_nonfinite", trainer.on_nonfinite, NONFINITE_POLICIES)
    require_optional_int("trainer.threads", trainer.threads, 1)
    require_choice("trainer.device", trainer.device, DEVICES)
    require_choice("trainer.distribution", trainer.distribution, DISTRIBUTIONS)
    require_choice("trainer.jit_compile", trainer.jit_compile, JIT_CHOICES)
    require_positive("trainer.stall_timeout_s", trainer.stall_timeout_s)
    parse_every(trainer.backup_every)
    check_preemption_signals(trainer.preemption_signals)
    check_preemption_grace(trainer.preemption_grace_s)
    if trainer.distribution == "mirrored" and trainer.on_nonfinite == "skip":
        raise UserError("trainer.on_nonfinite=skip does not work with trainer.distribution=mirrored; "
                        "use stop or continue there")


def check_stress(stress) -> None:
    require_positive("stress.logit_scale", stress.logit_scale)
    if stress.head_init_std is not None:
        require_positive("stress.head_init_std", stress.head_init_std)


def check_telemetry(telemetry) -> None:
    require_optional_int("telemetry.every_n_steps", telemetry.every_n_steps, 1)


def validate(cfg) -> losses.LossSetup:
    """Check the whole config; return the loss setup it describes."""
    require_int("seed", cfg.seed, 0)
    require_choice("backend", cfg.backend, BACKENDS)
    distribution = cfg.trainer.distribution
    if distribution in DISTRIBUTION_BACKENDS and cfg.backend != DISTRIBUTION_BACKENDS[distribution]:
        raise UserError(f"trainer.distribution={distribution} needs backend={DISTRIBUTION_BACKENDS[distribution]}, "
                        f"not {cfg.backend}")
    check_trainer(cfg.trainer)
    check_steps_per_execution(cfg.trainer.steps_per_execution, cfg.backend)
    check_stress(cfg.stress)
    check_telemetry(cfg.telemetry)
    check_optimizer(cfg.optimizer)
    check_module_exists(cfg.model._target_, "model._target_")
    setup = check_loss(cfg, trains=cfg.recipe.name == "train")
    check_data(cfg.data)
    if cfg.recipe.name == "train":  # the one recipe that builds model= (the others load a checkpoint's)
        check_model_takes(cfg.model, cfg.data)
    objective(cfg.optimized_metric)
    return setup
