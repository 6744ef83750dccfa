"""The loss formulations: each defined once, everything else asks this registry.

A formulation fixes what belongs together:
  * the head on top of the model's logits: none ("logits") or a softmax layer,
  * the label format the loss expects: integer ids ("sparse") or "onehot",
  * the loss callable itself,
  * the loss path Keras takes with it on each backend (`expected_path`): the
    computation `keras_loss_recipes.losses.paths` measures, e.g. a softmax head with a plain
    `CategoricalCrossentropy()` is `rescued_softmax` (exact) on TensorFlow and
    `clipped_probabilities` on JAX and PyTorch. The tests measure every one of
    these on every installed backend.
The README's formulation table is rendered from here: `python -m keras_loss_recipes.losses`.

Example:

>>> setup = get("sparse_from_logits")
>>> setup.head, setup.labels
('logits', 'sparse')
>>> formulation("softmax_ce").expected_path("tensorflow"), formulation("softmax_ce").expected_path("jax")
('rescued_softmax', 'clipped_probabilities')
>>> formulation("tf_nn_logits").expected_path("torch")
'unsupported'
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from keras_loss_recipes.losses.numerics import CLIP_EPSILON

ALL_BACKENDS = ("tensorflow", "jax", "torch")
SOFTMAX_LAYER = "softmax"  # the name `LossSetup.attach_head` gives a softmax head
# The paths that compute the exact cross entropy (a sigmoid head is rescued only in the loss doctor).
EXACT_PATHS = ("fused_logits", "rescued_softmax", "rescued_sigmoid")


class LossOptionError(ValueError):
    """A formulation name or option that cannot be used; the message says why.

    `option` names the offending option ("name", "temperature", ...) so callers
    can point at their own config key.
    """

    def __init__(self, message: str, option: str = "name"):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Formulation:
    name: str
    head: str  # "logits" or "softmax" ("sigmoid" for a user's model, see keras_loss_recipes.losses.keras_losses)
    labels: str  # "sparse" or "onehot" ("binary": one 0/1 target per output unit)
    computes: str  # what the loss computes, in one line
    use_when: str  # advice, shown in the README's formulation table
    # (label_smoothing, **loss_kwargs) -> a keras Loss, or a per-example function
    build: Callable[..., Callable]
    # The loss path measured on TensorFlow, and on JAX and PyTorch where it differs.
    path_on_tensorflow: str = "fused_logits"
    path_elsewhere: str | None = None
    supports_label_smoothing: bool = True
    backends: tuple[str, ...] = ALL_BACKENDS
    # Reproduces a classic user error on purpose, so comparisons can show it.
    is_mistake: bool = False

    def expected_path(self, backend: str) -> str:
        """The loss path Keras takes with this formulation on `backend` ("unsupported" if it cannot run)."""
        if backend not in self.backends:
            return "unsupported"
        if backend == "tensorflow":
            return self.path_on_tensorflow
        return self.path_elsewhere or self.path_on_tensorflow


# --- loss builders (keras / tensorflow are imported only when a loss is built) ---


def _smooth(y, label_smoothing):
    """Keras's label smoothing: y * (1 - ls) + ls / num_classes."""
    if not label_smoothing:
        return y
    num_classes = y.shape[-1]
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def _keras_categorical(from_logits: bool):
    def build(label_smoothing, **loss_kwargs):
        import keras

        return keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing, **loss_kwargs
        )

    return build


def _keras_sparse(from_logits: bool):
    def build(label_smoothing, **loss_kwargs):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, **loss_kwargs)

    return build


def _tf_nn_softmax_logits(label_smoothing, **unused):
    import tensorflow as tf

    def tf_nn_softmax_cross_entropy_with_logits(y_true, logits):
        y = _smooth(tf.cast(y_true, logits.dtype), label_smoothing)
        return tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)

    return tf_nn_softmax_cross_entropy_with_logits


def _tf_nn_sparse_logits(label_smoothing, **unused):
    import tensorflow as tf

    def tf_nn_sparse_softmax_cross_entropy_with_logits(y_true, logits):
        ids = tf.cast(tf.reshape(y_true, tf.shape(logits)[:-1]), tf.int32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)

    return tf_nn_sparse_softmax_cross_entropy_with_logits


def _naive(label_smoothing, **unused):
    from keras import ops

    def naive_cross_entropy(y_true, logits):
        # Deliberately the textbook formula: log of a softmax, nothing guarding
        # log(0). Once a probability underflows to 0 the loss becomes inf/NaN.
        # The softmax is written out because TensorFlow's graph optimiser
        # rewrites log(tf.nn.softmax(z)) into the stable log_softmax(z), which
        # would hide exactly the failure this formulation exists to show.
        y = _smooth(ops.cast(y_true, logits.dtype), label_smoothing)
        e = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        probs = e / ops.sum(e, axis=-1, keepdims=True)
        return -ops.sum(y * ops.log(probs), axis=-1)

    return naive_cross_entropy


def _clipped(label_smoothing, **unused):
    from keras import ops

    def clipped_probability_cross_entropy(y_true, probs):
        # What Keras does when it cannot see the logits behind `probs`:
        # renormalise, clip to [eps, 1 - eps], take the log. The clip caps the
        # loss at -log(eps) = 16.118 and zeroes the gradient where it bites.
        y = _smooth(ops.cast(y_true, probs.dtype), label_smoothing)
        p = probs / ops.sum(probs, axis=-1, keepdims=True)
        p = ops.clip(p, CLIP_EPSILON, 1.0 - CLIP_EPSILON)
        return -ops.sum(y * ops.log(p), axis=-1)

    return clipped_probability_cross_entropy


_REGISTRY: dict[str, Formulation] = {
    f.name: f
    for f in [
        Formulation(
            "softmax_ce", head="softmax", labels="onehot",
            computes="Dense -> softmax layer -> CategoricalCrossentropy() on probabilities",
            use_when="The classic keras.io pattern. Exact only on TensorFlow, whose Keras backend "
                     "reads the logits back out of the softmax layer; on JAX and PyTorch it is the clipped path.",
            build=_keras_categorical(from_logits=False),
            path_on_tensorflow="rescued_softmax", path_elsewhere="clipped_probabilities",
        ),
        Formulation(
            "sparse_softmax", head="softmax", labels="sparse",
            computes="Dense -> softmax layer -> SparseCategoricalCrossentropy() on probabilities",
            use_when="As softmax_ce, with integer labels.",
            build=_keras_sparse(from_logits=False),
            path_on_tensorflow="rescued_softmax", path_elsewhere="clipped_probabilities",
            supports_label_smoothing=False,
        ),
        Formulation(
            "from_logits", head="logits", labels="onehot",
            computes="logits -> CategoricalCrossentropy(from_logits=True)",
            use_when="Stable on every backend; use it when you need one-hot or soft labels (label smoothing).",
            build=_keras_categorical(from_logits=True),
        ),
        Formulation(
            "sparse_from_logits", head="logits", labels="sparse",
            computes="logits -> SparseCategoricalCrossentropy(from_logits=True)",
            use_when="The default: stable on every backend, integer labels, no one-hot copy.",
            build=_keras_sparse(from_logits=True),
            supports_label_smoothing=False,
        ),
        Formulation(
            "tf_nn_logits", head="logits", labels="onehot",
            computes="logits -> tf.nn.softmax_cross_entropy_with_logits",
            use_when="The fused TensorFlow op; the same numbers as from_logits, TensorFlow backend only.",
            build=_tf_nn_softmax_logits,
            backends=("tensorflow",),
        ),
        Formulation(
            "tf_nn_sparse_logits", head="logits", labels="sparse",
            computes="logits -> tf.nn.sparse_softmax_cross_entropy_with_logits",
            use_when="The fused sparse TensorFlow op; the same numbers as sparse_from_logits, TensorFlow only.",
            build=_tf_nn_sparse_logits,
            supports_label_smoothing=False,
            backends=("tensorflow",),
        ),
        Formulation(
            "naive", head="logits", labels="onehot",
            computes="-sum(y * log(softmax(z))) written out, no clipping",
            use_when="Never: it shows the textbook formula turning into NaN at large logit gaps.",
            build=_naive,
            path_on_tensorflow="naive",
        ),
        Formulation(
            "clipped_probs", head="softmax", labels="onehot",
            computes="softmax -> clip(p, 1e-7, 1 - 1e-7) -> -sum(y * log(p))",
            use_when="Never: it shows what Keras computes when it cannot see the logits behind a softmax "
                     "(loss capped at 16.118, zero gradient where the clip bites).",
            build=_clipped,
            path_on_tensorflow="clipped_probabilities",
        ),
        Formulation(
            "mistake_logits_as_probs", head="logits", labels="onehot",
            computes="logits -> CategoricalCrossentropy() without from_logits: logits read as probabilities",
            use_when="Never: the classic forgotten from_logits=True. Keras normalises and clips the "
                     "logits as if they were probabilities, without a warning.",
            build=_keras_categorical(from_logits=False),
            path_on_tensorflow="logits_as_probabilities",
            is_mistake=True,
        ),
        Formulation(
            "mistake_double_softmax", head="softmax", labels="onehot",
            computes="softmax layer -> CategoricalCrossentropy(from_logits=True)",
            use_when="Never: from_logits=True on a softmax output. Keras on TensorFlow warns and uses "
                     "the logits behind the softmax; JAX and PyTorch apply a second softmax.",
            build=_keras_categorical(from_logits=True),
            path_on_tensorflow="rescued_softmax", path_elsewhere="double_softmax",
            is_mistake=True,
        ),
    ]
}


@functools.cache
def _function_loss_class():
    import keras

    class FunctionLoss(keras.losses.Loss):
        """A per-example loss function as a keras Loss (dtype cast, reduction)."""

        def __init__(self, fn, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn

        def call(self, y_true, y_pred):
            return self.fn(y_true, y_pred)

    return FunctionLoss


def names() -> list[str]:
    """All formulation names, in registry order."""
    return list(_REGISTRY)


def formulation(name: str) -> Formulation:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LossOptionError(
            f"unknown loss formulation {name!r}; valid choices: {', '.join(names())}"
        ) from None


@dataclass(frozen=True)
class LossSetup:
    """A formulation bound to its options, ready to be attached to a model."""

    formulation: Formulation
    label_smoothing: float = 0.0
    temperature: float = 1.0

    @property
    def name(self) -> str:
        return self.formulation.name

    @property
    def head(self) -> str:
        return self.formulation.head

    @property
    def labels(self) -> str:
        return self.formulation.labels

    def check_backend(self, backend: str) -> None:
        if backend not in self.formulation.backends:
            raise LossOptionError(
                f"loss {self.name!r} needs the {' or '.join(self.formulation.backends)} "
                f"backend, but Keras is running on {backend!r}",
                option="backend",
            )

    def make_loss(self, dtype=None, reduction="sum_over_batch_size"):
        """The keras Loss for `model.compile`.

        `dtype` is the dtype Keras casts the model output to before computing
        the loss (default float32, also under mixed precision); `reduction="none"`
        gives per-example values.
        """
        import keras

        self.check_backend(keras.backend.backend())
        loss = self.formulation.build(self.label_smoothing, dtype=dtype, reduction=reduction)
        if isinstance(loss, keras.losses.Loss):
            return loss
        # Plain functions get what `compile` would give them: a Loss that casts
        # the output to `dtype` and reduces per-example values.
        return _function_loss_class()(loss, name=loss.__name__, dtype=dtype, reduction=reduction)

    def attach_head(self, logits, dtype="float32"):
        """Temperature and head on top of a logits tensor.

        Returns ``(scaled_logits, outputs)``: the logits the loss (or the softmax)
        sees, and the model output the loss receives. `dtype` is the dtype of
        these layers: float32 by default, so mixed precision cannot silently
        break the softmax; None leaves them in the global policy's dtype.
        """
        import keras

        if self.temperature != 1.0:
            logits = keras.layers.Rescaling(1.0 / self.temperature, dtype=dtype, name="temperature")(logits)
        if self.head == "softmax":
            return logits, keras.layers.Activation("softmax", dtype=dtype, name=SOFTMAX_LAYER)(logits)
        return logits, logits

    def accuracy_metric(self):
        import keras

        if self.labels == "sparse":
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy")

    def encode_labels(self, ids: np.ndarray, num_classes: int) -> np.ndarray:
        """Integer class ids in the format this formulation's loss expects.

        Binary losses take one target per output unit: `ids` are those targets already.
        """
        ids = np.asarray(ids)
        if self.labels == "binary":
            return ids.astype(np.float32)
        if self.labels == "sparse":
            return ids.astype(np.int32)
        return np.eye(num_classes, dtype=np.float32)[ids]


def get(name: str, label_smoothing: float = 0.0, temperature: float = 1.0) -> LossSetup:
    """The formulation `name` with its options checked.

    Raises LossOptionError with the bad value and the valid choices.
    """
    f = formulation(name)
    try:
        temperature = float(temperature)
        label_smoothing = float(label_smoothing)
    except (TypeError, ValueError):
        raise LossOptionError(
            f"temperature={temperature!r} and label_smoothing={label_smoothing!r} must be numbers",
            option="temperature",
        ) from None
    if not (temperature > 0 and np.isfinite(temperature)):
        raise LossOptionError(
            f"temperature={temperature!r}: must be a finite number > 0", option="temperature"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise LossOptionError(
            f"label_smoothing={label_smoothing!r}: must be in [0, 1)", option="label_smoothing"
        )
    if label_smoothing and not f.supports_label_smoothing:
        able = [n for n, g in _REGISTRY.items() if g.supports_label_smoothing]
        raise LossOptionError(
            f"label_smoothing={label_smoothing!r}: {name!r} takes integer labels and cannot "
            f"smooth them; formulations that can: {', '.join(able)}",
            option="label_smoothing",
        )
    return LossSetup(f, label_smoothing=label_smoothing, temperature=temperature)
