"""Train classifiers that output logits, and compare the ways of forming their loss.

keras-loss-recipes shows how each way of forming the cross-entropy loss behaves, for stability and
accuracy, on every Keras backend.

One import package, so that nothing it installs shadows a user's own `losses.py`, `models.py`,
`data.py` or `recipes.py`. Its subpackages, one layer each; imports point down only:

    recipes, cli -> training, reporting, data -> runtime -> losses

    losses      the formulations and their numerics (`python -m keras_loss_recipes.losses`)
    runtime     backends, processes, signals, files: what every layer above runs on
    data        the data sources and the input pipeline
    training    models, heads, steps, callbacks, backups
    reporting   what a run, a sweep or the doctor writes
    recipes     what a user runs: train, probe, evaluate, doctor
    cli         from the command line (train.py, `recipes-train`) to a recipe
"""
