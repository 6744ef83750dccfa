"""The resolvers configs/ uses: model and data names from their `_target_`, the command's name, a figure's direction.

    name: ${model_name:${._target_}}          configs/model/*.yaml: cnn, or the whole target of a builder of yours
    name: ${data_name:mnist,${._target_}}     configs/data/*.yaml: mnist, or the whole target of a callable of yours
    app_name: ${command_name:}                configs/train.yaml's --help: python train.py, or recipes-train
    direction: ${objective_direction:${optimized_metric}}   configs/hparams_search/optuna.yaml

    >>> name_of_target("keras_loss_recipes.training.models.cnn"), name_of_target("my_models.build")
    ('cnn', 'my_models.build')
"""
from __future__ import annotations

from pathlib import Path

from keras_loss_recipes.reporting import objective

OWN_MODELS = "keras_loss_recipes."  # the project's own models and data loaders
COMMAND_RESOLVER = "command_name"
MODEL_NAME_RESOLVER = "model_name"
DATA_NAME_RESOLVER = "data_name"


def name_of_target(target) -> str:
    """A model's name from its config's `_target_`: the function's name for the project's own builders
    (`keras_loss_recipes.training.models.cnn` -> `cnn`), the whole target for anyone else's."""
    target = str(target)
    return target.rsplit(".", 1)[-1] if target.startswith(OWN_MODELS) else target


def data_name(name, target) -> str:
    """A data config's name: its own for the project's loaders, the target for a callable of the user's."""
    return str(name) if str(target).startswith(OWN_MODELS) else str(target)


def command_name() -> str:
    """How the user started this command: `python train.py` in a clone, `recipes-train` once installed."""
    import sys

    name = Path(sys.argv[0]).name
    return f"python {name}" if name.endswith(".py") else name


def register() -> None:
    """Make the resolvers known to OmegaConf (once per process; composing and typing a config need them)."""
    from omegaconf import OmegaConf

    for name, resolver in ((MODEL_NAME_RESOLVER, name_of_target), (DATA_NAME_RESOLVER, data_name),
                           (COMMAND_RESOLVER, command_name), (objective.RESOLVER, objective.direction)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
