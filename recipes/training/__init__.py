"""The training machinery: model bodies, optimizers, the assembled network, the
StabilityModel with one training step per backend (steps/), its telemetry and
the callbacks of a fit; and the head of a saved model, read from its graph (`saved_head`).

May import `recipes.runtime` and `losses`; never the recipes, `reporting` or `data`.
"""
