"""The library: the project's answers inside a user's own Keras script (`from keras_loss_recipes import ...`).

A layer on top, beside `cli`: it calls the same code the recipes run (the doctor's measurement,
the stability figures, the origin of a NaN), and changes nothing of the user's model.
docs/api.md shows each name with an example.
"""
