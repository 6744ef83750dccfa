"""A live model's logits and its head, read without changing the model (for figures taken beside a user's fit).

The training recipe takes a user's softmax off for good (`models.without_head`). A callback
in the user's own `model.fit` may not: the model must stay as the user built it. `LogitsView`
finds the head from the model's config (`heads.find_head`), and computes the logits by calling
the model with the head layer made linear for that call only (the layer's `activation`, or a
Softmax layer's `call`, put back afterwards). Its weights are the model's own: nothing is copied.

>>> import keras
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
>>> view = LogitsView(model)
>>> view.head.kind, view.head.layer == model.layers[-1].name
('softmax', True)
>>> x = keras.ops.ones((1, 3))
>>> bool(keras.ops.all(keras.ops.isclose(view.outputs(view.logits(x)), model(x))))
True
>>> model.layers[-1].activation.__name__  # put back
'softmax'
"""
from __future__ import annotations

import contextlib

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import Head, find_head, live_config


class LogitsView:
    """The logits behind `model`'s softmax or sigmoid head (or its output, if it outputs logits)."""

    def __init__(self, model, where: str | None = None):
        from keras_loss_recipes.training.models import find_layer

        self.model = model
        self.where = where or f"model '{model.name}'"
        if len(getattr(model, "outputs", None) or [None]) != 1:
            raise UserError(f"{self.where} has {len(model.outputs)} outputs; a classifier here has one "
                            "(its logits or probabilities)")
        self.head: Head = find_head(live_config(model), self.where)
        if self.head.kind == "unknown":
            raise UserError(f"{self.where}: cannot find its logits: {self.head.reason}")
        self._layer = None if self.head.kind == "logits" else find_layer(model, self.head.layer)

    def logits(self, x, training: bool = False):
        """The model's logits on `x`: the model called with its head made linear for this call."""
        with self.linear_head():
            return self.model(x, training=training)

    def outputs(self, logits):
        """What the model outputs for `logits`: its head's activation applied to them."""
        import keras

        if self.head.kind == "logits":
            return logits
        return getattr(keras.activations, self.head.kind)(logits)

    @contextlib.contextmanager
    def linear_head(self):
        """Inside: the head layer passes its logits on (traced functions keep what they saw while tracing)."""
        import keras

        layer = self._layer
        if layer is None:
            yield
        elif hasattr(layer, "activation"):
            kept = layer.activation
            layer.activation = keras.activations.linear
            try:
                yield
            finally:
                layer.activation = kept
        else:  # a Softmax layer: its own call is the head
            layer.call = lambda inputs, *args, **kwargs: inputs
            try:
                yield
            finally:
                del layer.call
