"""The recipes a user runs, by the name that `recipe=` picks (configs/recipe/<name>.yaml).

Each is a module of this package with its recipe, `recipe(cfg, run) -> metrics` (the job hands it the
`Run` it opened: keras_loss_recipes/lifecycle/run.py), and the same as `run(cfg, run_dir)` for Python callers.
"""
from __future__ import annotations

from keras_loss_recipes.recipes import calibrate, doctor, evaluate, probe, train
from keras_loss_recipes.runtime.errors import UserError

RECIPES = {"train": train.train, "probe": probe.probe, "evaluate": evaluate.evaluate, "doctor": doctor.doctor,
           "calibrate": calibrate.calibrate_checkpoint}


def get_recipe(name: str):
    """The recipe `name`: `recipe(cfg, run) -> metrics`."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"recipe={name!r}: valid choices: {', '.join(RECIPES)}") from None
