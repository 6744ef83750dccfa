"""Train classifiers that output logits, and compare the ways of forming their loss.

keras-loss-recipes shows how each way of forming the cross-entropy loss behaves, for stability and
accuracy, on every Keras backend.

One import package, so that nothing it installs shadows a user's own `losses.py`, `models.py`,
`data.py` or `recipes.py`. Its subpackages, one layer each; imports point down only:

    cli -> recipes -> config -> training, data, reporting -> runtime -> losses
    cli -> sweeps -> reporting (a sweep's end reads the records its runs wrote)

Each subpackage's job: docs/layout.md, generated from their docstrings.
"""
