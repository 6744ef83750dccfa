"""The training machinery: models, their heads, the network, its training steps, callbacks.

The training machinery: model bodies, optimizers, the assembled network, the
StabilityModel with one training step per backend (steps/), its telemetry and
the callbacks of a fit; and the output head of a model, saved or live, read from its graph (`heads`).

May import `keras_loss_recipes.runtime` and `losses`; never the recipes, `reporting` or `data`.
"""
