"""The recipes a user runs, each with `run(cfg, run_dir)`: `train`, `probe`, `evaluate` and the `doctor`
package; `registry` names them for `recipe=`. `keras_loss_recipes.cli` runs them from the command line
(train.py). They sit on top of the package's layers; imports point down only:

    recipes, cli -> training, reporting, data -> runtime -> losses
"""
