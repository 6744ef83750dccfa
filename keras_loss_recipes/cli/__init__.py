"""From the command line (`python train.py`, `recipes-train`) to the recipe it runs.

    command    the command: config files and choices checked, the backend chosen, Hydra started
    job        one job of it: the recipe that `recipe=` names, run; its errors handled in one place
    settings   the composed config checked up front, each layer asked for its valid choices
    compare    `python -m keras_loss_recipes.cli.compare <sweep dir>`: the report of a sweep, built again
"""
