"""Hydra recipes that train MNIST-style classifiers and show how each loss formulation behaves.

The top level holds what a user runs: the recipes (`train`, `probe`, `evaluate`,
`doctor`, listed in `registry`), the sweep report (`compare`), the config check
(`settings`) and `cli`, which train.py calls. Below it, one subpackage per layer;
imports point down only:

    recipes (this level) -> training, reporting, data -> runtime -> losses
"""
