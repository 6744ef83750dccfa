"""The recipes a user runs (train, probe, evaluate, doctor), each with `run(cfg, run_dir)`.

`registry` names them for `recipe=`. `keras_loss_recipes.cli` runs them from the command line
(train.py). They sit on top of the package's layers; imports point down only:

    cli -> recipes -> config -> training, data, reporting -> runtime -> losses
    cli -> sweeps -> reporting (a sweep's end reads the records its runs wrote)
"""
