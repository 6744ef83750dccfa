"""A user's own Keras crossentropy loss, as a model file stores it or the command line names it.

The loss doctor examines models this project did not build, so their loss is
not one of the registry's formulations but whatever the user compiled. This
module reads it (the name or the serialized form Keras writes into a `.keras`
file's compile config) and binds it to the model's head as a `LossSetup`, so
that `keras_loss_recipes.losses.paths` measures it exactly as it measures the formulations.

Label smoothing is left out: it changes the value of the loss, not its path.

>>> loss = parse("categorical_crossentropy")
>>> loss.class_name, loss.from_logits, loss.labels
('CategoricalCrossentropy', False, 'onehot')
>>> parse({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}}).code()
'BinaryCrossentropy(from_logits=True)'
>>> parse("SparseCategoricalCrossentropy").setup("softmax").head
'softmax'
>>> parse("mean_squared_error")
Traceback (most recent call last):
...
keras_loss_recipes.losses.formulations.LossOptionError: loss 'mean_squared_error': the doctor knows categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy
"""
from __future__ import annotations

from dataclasses import dataclass

from keras_loss_recipes.losses.formulations import Formulation, LossOptionError, LossSetup

# Keras class name -> (the function name Keras also accepts, the label format the loss takes).
KERAS_LOSSES = {
    "CategoricalCrossentropy": ("categorical_crossentropy", "onehot"),
    "SparseCategoricalCrossentropy": ("sparse_categorical_crossentropy", "sparse"),
    "BinaryCrossentropy": ("binary_crossentropy", "binary"),
}
# The heads each label format fits: a binary loss wants sigmoid units, the others one softmax over the classes.
HEADS_FOR = {"binary": ("sigmoid", "logits"), "onehot": ("softmax", "logits"), "sparse": ("softmax", "logits")}


def names() -> list[str]:
    """The loss names the doctor accepts (each also under its Keras class name)."""
    return [function_name for function_name, _ in KERAS_LOSSES.values()]


@dataclass(frozen=True)
class KerasLoss:
    class_name: str  # a key of KERAS_LOSSES
    from_logits: bool = False

    @property
    def labels(self) -> str:
        return KERAS_LOSSES[self.class_name][1]

    def code(self, from_logits: bool | None = None) -> str:
        """How the user writes this loss in Python (with `from_logits` changed, if given)."""
        value = self.from_logits if from_logits is None else from_logits
        return f"{self.class_name}(from_logits={value})" if value else f"{self.class_name}()"

    def fits(self, head: str) -> bool:
        return head in HEADS_FOR[self.labels]

    def setup(self, head: str) -> LossSetup:
        """This loss on a `head` ("softmax", "sigmoid" or "logits") as a LossSetup the path measurement takes."""
        class_name, from_logits = self.class_name, self.from_logits

        def build(label_smoothing, **loss_kwargs):
            import keras

            return getattr(keras.losses, class_name)(from_logits=from_logits, **loss_kwargs)

        return LossSetup(Formulation(
            name=self.code(), head=head, labels=self.labels, computes=f"{head} -> {self.code()}",
            use_when="the model's own loss", build=build, supports_label_smoothing=False,
        ))


def parse(value, from_logits: bool | None = None) -> KerasLoss:
    """The loss a compile config or the command line gives: a name, or Keras's serialized dict.

    `from_logits` overrides what the value says (the command line's `recipe.from_logits`).
    Raises LossOptionError naming the value and the losses the doctor knows.
    """
    config = {}
    if isinstance(value, dict):
        config = value.get("config") if isinstance(value.get("config"), dict) else {}
        # A plain function (loss=keras.losses.categorical_crossentropy) is stored by its name.
        name = value.get("config") if value.get("class_name") == "function" else value.get("class_name")
    else:
        name = value
    by_function = {function_name: class_name for class_name, (function_name, _) in KERAS_LOSSES.items()}
    class_name = name if name in KERAS_LOSSES else by_function.get(name)
    if class_name is None:
        shown = name if isinstance(name, str) else value  # a list or dict of losses: several outputs
        raise LossOptionError(f"loss {shown!r}: the doctor knows {', '.join(names())}")
    logits = bool(config.get("from_logits", False)) if from_logits is None else bool(from_logits)
    return KerasLoss(class_name, from_logits=logits)
