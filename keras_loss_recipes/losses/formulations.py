"""The loss formulations: each defined once, everything else asks this registry.

A formulation fixes what belongs together:
  * the head on top of the model's logits: none ("logits"), a softmax or a sigmoid layer,
  * the label format the loss expects: integer ids ("sparse"), "onehot", or "binary"
    (one 0/1 target per output unit),
  * the loss callable itself,
  * the loss path Keras takes with it on each backend (`expected_path`): the
    computation `keras_loss_recipes.losses.paths` measures, e.g. a softmax head with a plain
    `CategoricalCrossentropy()` is `rescued_softmax` (exact) on TensorFlow and
    `clipped_probabilities` on JAX and PyTorch. The tests measure every one of
    these on every installed backend.
Two families: the softmax family (one softmax over the classes: what the training
recipe trains, a multiclass classifier) and the sigmoid family (a sigmoid per output
unit, binary cross entropy: binary and multi-label outputs).
The README's formulation table is rendered from here: `python -m keras_loss_recipes.losses`.

Example:

>>> setup = get("sparse_from_logits")
>>> setup.head, setup.labels
('logits', 'sparse')
>>> formulation("softmax_ce").expected_path("tensorflow"), formulation("softmax_ce").expected_path("jax")
('rescued_softmax', 'clipped_probabilities')
>>> formulation("tf_nn_logits").expected_path("torch")
'unsupported'
>>> formulation("sigmoid_bce").family, formulation("sigmoid_bce").expected_path("jax")
('sigmoid', 'clipped_probabilities')
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from keras_loss_recipes.losses.numerics import CLIP_EPSILON

ALL_BACKENDS = ("tensorflow", "jax", "torch")
SOFTMAX_LAYER = "softmax"  # the name `LossSetup.attach_head` gives a softmax head
SIGMOID_LAYER = "sigmoid"  # ... and a sigmoid head
# The paths that compute the exact cross entropy.
EXACT_PATHS = ("fused_logits", "rescued_softmax", "rescued_sigmoid")
# What each family's output is and what it is trained on (the error lines quote these).
FAMILIES = {"softmax": "one softmax over the classes", "sigmoid": "a sigmoid per output unit, 0/1 targets"}
# The tasks a run trains (`task=`): one class of several (integer class ids), yes or no (one logit, a 0/1
# label), several yes-or-no labels at once (K logits, labels (N, K) of 0/1); and the family that fits each.
MULTICLASS, BINARY, MULTILABEL = "multiclass", "binary", "multilabel"
TASK_FAMILIES = {MULTICLASS: "softmax", BINARY: "sigmoid", MULTILABEL: "sigmoid"}
TASKS = tuple(TASK_FAMILIES)


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
    head: str  # "logits", "softmax" or "sigmoid"
    labels: str  # "sparse" or "onehot" (the softmax family), "binary" (the sigmoid family: a 0/1 target per unit)
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

    @property
    def family(self) -> str:
        """The key of FAMILIES: "sigmoid" for a binary cross entropy (a 0/1 target per unit), else "softmax"."""
        return "sigmoid" if self.labels == "binary" else "softmax"


# --- loss builders (keras / tensorflow are imported only when a loss is built) ---


def _smooth(y, label_smoothing):
    """Keras's label smoothing: y * (1 - ls) + ls / num_classes."""
    if not label_smoothing:
        return y
    num_classes = y.shape[-1]
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def _smooth_binary(y, label_smoothing):
    """Keras's binary label smoothing: each unit is a two-class problem, y * (1 - ls) + ls / 2."""
    if not label_smoothing:
        return y
    return y * (1.0 - label_smoothing) + 0.5 * label_smoothing


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


def _keras_binary(from_logits: bool):
    def build(label_smoothing, **loss_kwargs):
        import keras

        return keras.losses.BinaryCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing, **loss_kwargs
        )

    return build


def _tf_nn_sigmoid_logits(label_smoothing, **unused):
    import tensorflow as tf

    def tf_nn_sigmoid_cross_entropy_with_logits(y_true, logits):
        y = _smooth_binary(tf.cast(y_true, logits.dtype), label_smoothing)
        # The op gives one loss per unit; BinaryCrossentropy's mean over the units makes the two comparable.
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits), axis=-1)

    return tf_nn_sigmoid_cross_entropy_with_logits


def _bce_naive(label_smoothing, **unused):
    from keras import ops

    def naive_binary_cross_entropy(y_true, logits):
        # Deliberately the textbook formula, nothing guarding log(0): once sigmoid(z)
        # rounds to 1 (or underflows to 0) the loss is inf/NaN. The backends' own sigmoid
        # op, unlike 1 / (1 + exp(-z)) written out: TensorFlow's vectorised division rounds
        # that to 1 - 2**-24 on a batch, hiding the failure behind a plateau at 16.6.
        # (TensorFlow's graph optimiser leaves log(sigmoid(z)) as it is: the tests measure the inf.)
        y = _smooth_binary(ops.cast(y_true, logits.dtype), label_smoothing)
        p = ops.sigmoid(logits)
        return -ops.mean(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p), axis=-1)

    return naive_binary_cross_entropy


def _bce_clipped(label_smoothing, **unused):
    from keras import ops

    def clipped_probability_binary_cross_entropy(y_true, probs):
        # What Keras does when it cannot see the logits behind a sigmoid: clip to
        # [eps, 1 - eps], take the logs. In float32 1 - 1e-7 rounds to 1 - 2**-23, so
        # a unit whose target is 0 caps at 15.94 (target 1: 16.118); the gradient is 0 there.
        y = _smooth_binary(ops.cast(y_true, probs.dtype), label_smoothing)
        p = ops.clip(probs, CLIP_EPSILON, 1.0 - CLIP_EPSILON)
        return -ops.mean(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p), axis=-1)

    return clipped_probability_binary_cross_entropy


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
        # --- the sigmoid family: a sigmoid per output unit (binary and multi-label outputs) ---
        Formulation(
            "sigmoid_bce", head="sigmoid", labels="binary",
            computes="Dense -> sigmoid layer -> BinaryCrossentropy() on probabilities",
            use_when="The classic binary pattern. Exact only on TensorFlow, whose Keras backend reads the "
                     "logits back out of the sigmoid layer; on JAX and PyTorch it is the clipped path.",
            build=_keras_binary(from_logits=False),
            path_on_tensorflow="rescued_sigmoid", path_elsewhere="clipped_probabilities",
        ),
        Formulation(
            "bce_from_logits", head="logits", labels="binary",
            computes="logits -> BinaryCrossentropy(from_logits=True)",
            use_when="The sigmoid family's sound choice: stable on every backend.",
            build=_keras_binary(from_logits=True),
        ),
        Formulation(
            "tf_nn_sigmoid_logits", head="logits", labels="binary",
            computes="logits -> tf.nn.sigmoid_cross_entropy_with_logits, mean over the units",
            use_when="The fused TensorFlow op; the same numbers as bce_from_logits, TensorFlow only.",
            build=_tf_nn_sigmoid_logits,
            backends=("tensorflow",),
        ),
        Formulation(
            "bce_naive", head="logits", labels="binary",
            computes="-mean(y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z))), no clipping",
            use_when="Never: it shows the textbook formula turning into inf/NaN once the sigmoid rounds to 1.",
            build=_bce_naive,
            path_on_tensorflow="naive",
        ),
        Formulation(
            "bce_clipped_probs", head="sigmoid", labels="binary",
            computes="sigmoid -> clip(p, 1e-7, 1 - 1e-7) -> -mean(y * log(p) + (1 - y) * log(1 - p))",
            use_when="Never: it shows what Keras computes when it cannot see the logits behind a sigmoid "
                     "(a loss of 30 reads 15.94 in float32, zero gradient where the clip bites).",
            build=_bce_clipped,
            path_on_tensorflow="clipped_probabilities",
        ),
        Formulation(
            "mistake_bce_logits_as_probs", head="logits", labels="binary",
            computes="logits -> BinaryCrossentropy() without from_logits: logits read as probabilities",
            use_when="Never: the forgotten from_logits=True of the sigmoid family. Keras clips the logits "
                     "to [1e-7, 1 - 1e-7] as if they were probabilities, without a warning.",
            build=_keras_binary(from_logits=False),
            path_on_tensorflow="logits_as_probabilities",
            is_mistake=True,
        ),
        Formulation(
            "mistake_double_sigmoid", head="sigmoid", labels="binary",
            computes="sigmoid layer -> BinaryCrossentropy(from_logits=True)",
            use_when="Never: from_logits=True on a sigmoid output. Keras on TensorFlow warns and uses "
                     "the logits behind the sigmoid; JAX and PyTorch apply a second sigmoid.",
            build=_keras_binary(from_logits=True),
            path_on_tensorflow="rescued_sigmoid", path_elsewhere="double_sigmoid",
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


def names(family: str | None = None) -> list[str]:
    """All formulation names, in registry order; those of one family ("softmax", "sigmoid") if given."""
    return [n for n, f in _REGISTRY.items() if family is None or f.family == family]


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

    def check_task(self, task: str, backend: str | None = None) -> None:
        """Refuse a formulation of the family that does not fit `task` (a key of TASK_FAMILIES),
        naming the ones that do (those that run on `backend`, if given)."""
        family = TASK_FAMILIES[task]
        if self.formulation.family != family:
            fit = [n for n in names(family) if backend is None or backend in formulation(n).backends]
            raise LossOptionError(
                f"a {self.formulation.family} formulation ({FAMILIES[self.formulation.family]}) cannot train "
                f"a {task} classifier ({FAMILIES[family]}); formulations that fit: {', '.join(fit)}",
                option="task",
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
        if self.head == "sigmoid":
            return logits, keras.layers.Activation("sigmoid", dtype=dtype, name=SIGMOID_LAYER)(logits)
        return logits, logits

    def accuracy_metric(self):
        import keras

        if self.labels == "sparse":
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        if self.labels == "binary":  # a logit says yes above 0, a probability above 0.5
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if self.head == "logits" else 0.5)
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
        able = [n for n in names(f.family) if formulation(n).supports_label_smoothing]
        raise LossOptionError(
            f"label_smoothing={label_smoothing!r}: {name!r} takes integer labels and cannot "
            f"smooth them; formulations that can: {', '.join(able)}",
            option="label_smoothing",
        )
    return LossSetup(f, label_smoothing=label_smoothing, temperature=temperature)
