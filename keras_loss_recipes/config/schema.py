"""The config's schema: a dataclass per config group, the type of every key; `typed(cfg)` applies it.

The values and their comments stay in configs/ (each default written once, there); a field here is
`MISSING` unless no YAML file can give its value (a data callable of yours: `UserData`). A key that
takes one of several kinds (`auto` or an integer, `30s` or an integer, a list or null) is `Any`: its
check is in settings.py, which runs on the typed config and checks ranges and choices.

Which dataclass types a group follows from the composed config itself: data and model by their
`_target_` (a callable of yours gets the open base, whose other keys pass to it untyped), the
recipe by its name, the optimizer by its name. So the schema is applied to the composed config
(`typed`), not registered in Hydra's ConfigStore: a schema bound to a YAML file cannot follow a
`model._target_=...` given on the command line, and Hydra reports a type error in several lines
with exit code 1, where a bad value here is one `error:` line and exit code 2.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any, List, Optional

from keras_loss_recipes.config import resolvers
from keras_loss_recipes.data.arrays import load_npz
from keras_loss_recipes.data.embedded import load_embedded
from keras_loss_recipes.data.folder import load_folder
from keras_loss_recipes.data.idx import load_idx
from keras_loss_recipes.data.inputs import IMAGES, STANDARDIZE
from keras_loss_recipes.data.sklearn_tables import load_breast_cancer, load_wine
from keras_loss_recipes.data.table import load_csv
from keras_loss_recipes.data.tfds_source import load_tfds
from keras_loss_recipes.data.validation_split import AUTO
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training import models, zoo

MISSING = "???"  # OmegaConf's mark of a value the config must give


# --- recipe: by recipe.name -------------------------------------------------------------------

@dataclass
class Recipe:
    name: str = MISSING


@dataclass
class TrainRecipe(Recipe):
    run_name: str = MISSING


@dataclass
class EvaluateRecipe(Recipe):
    bins: int = MISSING


@dataclass
class ProbeRecipe(Recipe):
    max_gap: float = MISSING
    points: int = MISSING
    num_classes: int = MISSING
    dtypes: List[str] = MISSING
    rel_tol: float = MISSING


@dataclass
class DoctorRecipe(Recipe):
    loss: Optional[str] = MISSING
    from_logits: Optional[bool] = MISSING
    backends: Any = MISSING  # a list, one name, or null
    precisions: Any = MISSING  # a list, one name, or null
    strict: bool = MISSING
    fix: bool = MISSING
    calibrate: bool = MISSING


RECIPES = {"train": TrainRecipe, "evaluate": EvaluateRecipe, "probe": ProbeRecipe, "doctor": DoctorRecipe,
           "calibrate": Recipe}  # calibrate takes no option of its own: checkpoint= and data= say what it needs


# --- data: by data._target_; each class lists its file's keys in the file's order ------------------

@dataclass
class DataSource:
    """What every data config has; other keys of a callable of yours pass to it untyped."""
    name: str = MISSING
    _target_: str = MISSING


@dataclass
class UserData(DataSource):
    inputs: str = IMAGES  # images | features | tokens: what the arrays hold
    standardize: bool = STANDARDIZE  # features only: standardised with the training split's figures
    val_examples: Any = MISSING  # auto | an integer
    test_examples: Any = AUTO  # where the callable returns no test split: auto | an integer
    num_classes: Optional[int] = None  # null: one more than the largest label
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class EmbeddedData(DataSource):
    val_examples: Any = MISSING
    test_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class TfdsData(DataSource):
    tfds_name: str = MISSING
    data_dir: Optional[str] = MISSING
    download: Any = MISSING  # auto | true | false
    num_classes: int = MISSING
    label_offset: int = MISSING
    val_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class FolderData(DataSource):
    dir: Optional[str] = MISSING
    image_size: Optional[List[int]] = MISSING
    color_mode: str = MISSING
    val_examples: Any = MISSING
    test_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class IdxFiles:
    train_images: str = MISSING
    train_labels: str = MISSING
    test_images: str = MISSING
    test_labels: str = MISSING


@dataclass
class IdxData(DataSource):
    dir: Optional[str] = MISSING
    files: IdxFiles = dataclasses.field(default_factory=IdxFiles)
    num_classes: int = MISSING
    val_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class NpzData(DataSource):
    path: Optional[str] = MISSING
    inputs: str = MISSING
    standardize: bool = MISSING
    num_classes: Optional[int] = MISSING
    val_examples: Any = MISSING
    test_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class CsvData(DataSource):
    path: Optional[str] = MISSING
    label: Optional[str] = MISSING
    inputs: str = MISSING
    standardize: bool = MISSING
    val_examples: Any = MISSING
    test_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


@dataclass
class SklearnData(DataSource):
    inputs: str = MISSING
    standardize: bool = MISSING
    val_examples: Any = MISSING
    test_examples: Any = MISSING
    split_seed: int = MISSING
    max_train_examples: Optional[int] = MISSING


def _target(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


DATA = {_target(load_embedded): EmbeddedData, _target(load_tfds): TfdsData, _target(load_folder): FolderData,
        _target(load_idx): IdxData, _target(load_npz): NpzData, _target(load_csv): CsvData,
        _target(load_breast_cancer): SklearnData, _target(load_wine): SklearnData}


# --- model: by model._target_ -----------------------------------------------------------------

@dataclass
class Model:
    """What every model config has; other keys of a builder of yours pass to it untyped."""
    _target_: str = MISSING
    name: str = MISSING


@dataclass
class CnnModel(Model):
    dropout: float = MISSING


@dataclass
class MlpModel(Model):
    hidden_units: int = MISSING


@dataclass
class EmbeddingBagModel(Model):
    vocabulary_size: Optional[int] = MISSING
    embedding_dim: int = MISSING
    mask_zero: bool = MISSING


@dataclass
class KerasAppModel(Model):
    architecture: str = MISSING
    weights: Optional[str] = MISSING


MODELS = {_target(models.cnn): CnnModel, _target(models.mlp): MlpModel,
          _target(models.embedding_bag): EmbeddingBagModel, _target(zoo.keras_application): KerasAppModel}


# --- the other groups --------------------------------------------------------------------------

@dataclass
class Loss:
    name: str = MISSING
    label_smoothing: float = MISSING
    temperature: float = MISSING


@dataclass
class Optimizer:
    name: str = MISSING
    learning_rate: float = MISSING


@dataclass
class SgdOptimizer(Optimizer):
    momentum: float = MISSING
    nesterov: bool = MISSING


OPTIMIZERS = {"adam": Optimizer, "sgd": SgdOptimizer}


@dataclass
class Trainer:
    epochs: int = MISSING
    batch_size: int = MISSING
    verbose: Any = MISSING  # 0 | 1 | 2 | auto
    precision: str = MISSING
    on_nonfinite: str = MISSING
    threads: Optional[int] = MISSING
    backup_every: Any = MISSING  # epochs, or a duration (30s)
    preemption_signals: Optional[List[str]] = MISSING
    preemption_grace_s: Optional[float] = MISSING
    overwrite: bool = MISSING
    device: str = MISSING
    distribution: str = MISSING
    devices: Any = MISSING  # a list of devices, a count, or null
    jit_compile: Any = MISSING  # auto | true | false
    steps_per_execution: Any = MISSING  # auto | an integer
    stall_timeout_s: float = MISSING


@dataclass
class Stress:
    logit_scale: float = MISSING
    head_init_std: Optional[float] = MISSING
    unsafe_head_dtype: bool = MISSING


@dataclass
class Telemetry:
    enabled: bool = MISSING
    every_n_steps: Optional[int] = MISSING


@dataclass
class Config:
    """configs/train.yaml: the groups (typed by `schema_of`), then its own keys."""
    recipe: Any = MISSING
    data: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    trainer: Any = MISSING
    stress: Any = MISSING
    telemetry: Any = MISSING
    seed: int = MISSING
    task: str = MISSING
    backend: str = MISSING
    checkpoint: Optional[str] = MISSING
    optimized_metric: str = MISSING


GROUPS = ("recipe", "data", "model", "loss", "optimizer", "trainer", "stress", "telemetry")
OPEN_GROUPS = ("data", "model")  # a callable of yours takes keyword arguments of its own


def schema_of(group: str, values) -> type:
    """The dataclass that group `group`'s `values` (a mapping) follow."""
    values = values if isinstance(values, dict) else {}
    if group == "recipe":
        return RECIPES.get(values.get("name"), Recipe)
    if group == "data":
        return DATA.get(values.get("_target_"), UserData)
    if group == "model":  # a builder's keys where the config holds them: model._target_=...mlp over model=cnn
        own = MODELS.get(values.get("_target_"), Model)  # has not hidden_units, and mlp() takes its own default
        return own if all(key in values for key in _fields(own)) else Model
    if group == "optimizer":
        return OPTIMIZERS.get(values.get("name"), Optimizer)
    return {"loss": Loss, "trainer": Trainer, "stress": Stress, "telemetry": Telemetry}[group]


def _fields(kind) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


# --- typed(cfg) ----------------------------------------------------------------------------------

def typed(cfg):
    """The composed config `cfg` checked against the schema: every schema key present, each value of its
    type (`1` given for a float becomes 1.0), interpolations resolved (the backend among them, decided here
    once). A bad type, a missing value or an unknown key is a UserError naming the key and the value."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    resolvers.register()  # a job that a launcher started in a process of its own resolves here first
    values = _resolved(cfg)
    top = {key: value for key, value in values.items() if key not in GROUPS}
    out = _merged("", Config, top, is_open=False)
    for group in GROUPS:
        node = _merged(f"{group}.", schema_of(group, values.get(group)), values.get(group, {}),
                       is_open=group in OPEN_GROUPS or schema_of(group, values.get(group)) in (Recipe, Optimizer))
        try:
            out[group] = node
        except OmegaConfBaseException:  # not a mapping at all
            raise UserError(f"{group}={values.get(group)!r}: must be a group of keys (configs/{group}/)") from None
    missing = sorted(OmegaConf.missing_keys(out))
    if missing:
        group = missing[0].split(".")[0]
        raise UserError(f"{missing[0]}: no value; give it one (a file of yours in a group starts from one of "
                        f"configs/{group}/, e.g. `defaults: [default]`)")
    return out


def _resolved(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise UserError(f"{err.full_key}: {str(err).splitlines()[0]}") from None


def _merged(prefix: str, schema: type, values, is_open: bool):
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    node = OmegaConf.structured(schema)
    OmegaConf.set_struct(node, not is_open)
    if not isinstance(values, dict):
        raise UserError(f"{prefix.rstrip('.')}={values!r}: must be a group of keys")
    try:
        return OmegaConf.merge(node, values)
    except ConfigKeyError as err:
        known = ", ".join(_fields(schema))
        raise UserError(f"{prefix}{err.full_key}: no such key (the keys here: {known})") from None
    except OmegaConfBaseException as err:
        field = re.match(r"[^.\[]+", str(err.full_key))[0]
        expected = _words(typing.get_type_hints(schema)[field])
        raise UserError(f"{prefix}{err.full_key}={_shown(err)}: must be {expected}") from None


def _shown(err) -> str:
    """The value as the command line writes it: 'abc', 1.5, true, null."""
    value = getattr(err, "value", None)
    if isinstance(value, str):
        return repr(value)
    return {None: "null", True: "true", False: "false"}.get(value, str(value)) if not isinstance(value, (int, float)) \
        or isinstance(value, bool) else str(value)


WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _words(kind) -> str:
    """A field's type as a user reads it: `an integer or null`, `a list of strings`."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union:
        return f"{_words(args[0])} or null"
    if typing.get_origin(kind) in (list, List):
        return f"a list of {_words(args[0]).split(' ', 1)[1]}s"
    if dataclasses.is_dataclass(kind):
        return f"a group of keys ({', '.join(f.name for f in dataclasses.fields(kind))})"
    return WORDS.get(kind, str(kind))
