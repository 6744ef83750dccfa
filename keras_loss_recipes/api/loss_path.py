"""`loss_path(model)`: which computation a live model's compiled loss really performs, on this backend.

The loss doctor's measurement (`keras_loss_recipes.losses.paths.detect_loss_path`, with the model's
own head in its own dtype policy, as `recipes.doctor.worker` builds it), in this process and without
touching the model: the head is read from its config, the loss from `model.loss`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from keras_loss_recipes import losses
from keras_loss_recipes.losses.keras_losses import KerasLoss
from keras_loss_recipes.losses.paths import MEANINGS, detect_loss_path
from keras_loss_recipes.reporting.doctor_report import fix_lines
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.heads import Head


@dataclass(frozen=True)
class LossPathCheck:
    """The measured loss path of one model on one backend, in the precision of its head."""

    backend: str
    precision: str
    path: str  # a key of keras_loss_recipes.losses.paths.MEANINGS
    measured: tuple[float, ...]  # the compiled loss on the probe batches
    exact: tuple[float, ...]  # the exact cross entropy there
    head: Head
    loss: KerasLoss

    @property
    def lossy(self) -> bool:
        return self.path not in losses.EXACT_PATHS

    @property
    def setup(self):
        return self.loss.setup(self.head.kind)

    def advice(self) -> str:
        """One paragraph: what the loss computes here, and the fix (the doctor's words)."""
        text = f"{self.loss.code()} on this model computes {MEANINGS[self.path]} ({self.backend}, {self.precision})."
        report = {"head": dataclasses.asdict(self.head), "verdict": "lossy" if self.lossy else "clean",
                  "loss": {"fixed_code": self.loss.code(from_logits=True), "labels": self.loss.labels}}
        return " ".join([text, *fix_lines(report)])

    def __str__(self) -> str:
        pairs = ", ".join(f"{m:.4g} (exact {e:.4g})" for m, e in zip(self.measured, self.exact))
        return f"loss path on {self.backend} {self.precision}: {self.path}; probe losses {pairs}"


def loss_path(model, loss=None) -> LossPathCheck:
    """Measure the loss path of `model` (compiled, or with `loss=` a name or Keras loss) on this backend.

    The model and its loss are read and checked as `diagnose` reads them (one clear error for a model with
    several outputs, no classifier head, no loss, or a loss the doctor does not know); only the path is
    measured, in the head's own dtype policy, so it takes a fraction of a second.

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(loss="categorical_crossentropy")
    >>> check = loss_path(model)
    >>> check.path in ("rescued_softmax", "clipped_probabilities")  # TensorFlow rescues it; JAX, PyTorch clip
    True
    >>> check.lossy == (keras.backend.backend() != "tensorflow")
    True
    """
    import keras

    from keras_loss_recipes.recipes.doctor.diagnosis import prepare
    from keras_loss_recipes.recipes.doctor.worker import head_layer

    name, from_logits = _named(loss) if loss is not None else (None, None)
    plan = prepare(model, loss=name, from_logits=from_logits)
    head = plan.model.head
    if head.kind == "unknown":
        raise UserError(f"{plan.where}: cannot find its logits: {head.reason}")
    layer = head_layer(dataclasses.asdict(head), head.dtype)
    measured = detect_loss_path(plan.loss.setup(head.kind), head=layer, num_classes=head.width)
    return LossPathCheck(keras.backend.backend(), head.dtype, measured.path, measured.measured, measured.exact,
                         head, plan.loss)


def _named(loss) -> tuple[str, bool | None]:
    """A loss as the doctor takes it: its name, and the `from_logits` of a Keras loss object (None: a name)."""
    if isinstance(loss, str):
        return loss, None
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return type(loss).__name__, config.get("from_logits")
