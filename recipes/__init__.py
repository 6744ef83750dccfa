"""Hydra recipes that train MNIST-style classifiers and show how each loss formulation behaves.

The top level lists the recipes: `train`, `probe`, `evaluate` and the `doctor`
package, each with `run(cfg, run_dir)`, and `registry`, which names them for
`recipe=`. `cli` runs them from the command line (train.py). Below, one
subpackage per layer; imports point down only:

    recipes (this level), cli -> training, reporting, data -> runtime -> losses
"""
