"""The recipes a user runs (train, probe, evaluate, calibrate, doctor), each `recipe(cfg, run)` in the job's `Run`.

`registry` names them for `recipe=`. `keras_loss_recipes.cli` runs them from the command line
(train.py); each module's `run(cfg, run_dir)` runs its recipe from Python. They sit on top of the
package's layers; imports point down only:

    cli -> recipes -> lifecycle, evaluation -> config -> training, data, reporting -> runtime -> losses
    cli -> sweeps -> reporting (a sweep's end reads the records its runs wrote)
"""
