"""The recipes a user runs, by the name that `recipe=` picks (configs/recipe/<name>.yaml).

Each is a module of this package with `run(cfg, run_dir) -> metrics`.
"""
from __future__ import annotations

from keras_loss_recipes.recipes import doctor, evaluate, probe, train
from keras_loss_recipes.runtime.errors import UserError

RECIPES = {"train": train.run, "probe": probe.run, "evaluate": evaluate.run, "doctor": doctor.run}


def get_recipe(name: str):
    """The `run` function of recipe `name`."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"recipe={name!r}: valid choices: {', '.join(RECIPES)}") from None
