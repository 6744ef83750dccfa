"""Which computation a compiled loss really performs: the "loss path".

Keras decides this silently. On the TensorFlow backend a softmax head feeding
`CategoricalCrossentropy()` is computed from the logits (rescued); on other
backends, under a low-precision softmax, or with an op after the softmax, the
same code takes clipped probabilities. The path is therefore *measured*: the
loss is evaluated on two probe batches and compared with what each candidate
computation gives there.

    moderate probe  logits (2, 1, 0.1, 0, ...), true class 2: every sound path is exact here;
                    logits taken as probabilities or a double softmax are not.
    large probe     logits (G, 0, ..., 0), true class 1, G = 200: exact CE is about 200;
                    clipping caps it at -log(1e-7) = 16.118; the naive formula gives inf/NaN.

A binary loss (BinaryCrossentropy on sigmoid units: the sigmoid family) has probes of its own:
unit 0 at logit 2, then at G, with target 0 (`binary_probe_batches`); there the
clip caps the loss of a unit at -log(1 - (1 - 1e-7)) in float32, about 15.94.

Paths: `MEANINGS` below names each with what it means, in one line.

Where a path breaks, `sweep_gaps` measures: the loss and its logits gradient
for one confidently wrong example per logit gap 0, 1, ..., 200.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_loss_recipes.losses.numerics import CLIP_EPSILON, exact_binary_cross_entropy, exact_cross_entropy, stable_softmax, tolerance

LARGE_GAP = 200.0
MATCH_RTOL = 1e-3
GAPS = np.arange(0.0, LARGE_GAP + 1.0)  # the gap sweep: 0, 1, ..., 200
DEAD_GRADIENT = 1e-2  # a gradient below this fraction of the exact one has died
RESCUED = {"softmax": "rescued_softmax", "sigmoid": "rescued_sigmoid"}  # an exact loss behind this head


def match_rtol(head=None) -> float:
    """How closely a measured loss must match a candidate, given the head layer's compute dtype (a head
    computing in 16 bits rounds its probabilities: the candidates match it within a few of its ulps)."""
    return tolerance(str(getattr(head, "compute_dtype", "float32")), MATCH_RTOL)

# Every path, and what it means for the loss (run summaries and reports quote these).
MEANINGS = {
    "fused_logits": "exact, computed from the logits (no softmax head)",
    "rescued_softmax": "exact, although the head is a softmax: TensorFlow's Keras read the logits back out of it",
    "rescued_sigmoid": "exact, although the head is a sigmoid: TensorFlow's Keras read the logits back out of it",
    "clipped_probabilities": "probabilities clipped to [1e-7, 1 - 1e-7]: the loss is capped and its gradient is 0 "
                             "where the clip bites",
    "naive": "log of an underflowed probability: inf/NaN at large logit gaps",
    "logits_as_probabilities": "logits normalised as if they were probabilities (from_logits missing)",
    "double_softmax": "a softmax applied to probabilities again (from_logits=True on a softmax)",
    "double_sigmoid": "a sigmoid applied to probabilities again (from_logits=True on a sigmoid)",
    "unknown": "none of the known computations matched the measurement",
}

# The paths that silently lose information; the warning text says what to use instead.
MISTAKES = {
    "clipped_probabilities": (
        "the loss is computed from clipped probabilities: it is capped at 16.118 and its "
        "gradient is 0 for confidently wrong examples. Output logits and use "
        "loss=sparse_from_logits (or from_logits)"
    ),
    "logits_as_probabilities": (
        "logits are being treated as probabilities (from_logits=False on a logits head); "
        "the model barely learns. Use loss=sparse_from_logits (or from_logits)"
    ),
    "double_softmax": (
        "a softmax is applied to probabilities again (from_logits=True on a softmax head). "
        "Drop the softmax head and use loss=sparse_from_logits"
    ),
    "naive": (
        "the loss takes log(softmax(z)) without protection and turns into inf/NaN at large "
        "logit gaps. Use loss=sparse_from_logits (or from_logits)"
    ),
}
# The same for the sigmoid family, whose sound formulation is bce_from_logits.
SIGMOID_MISTAKES = {
    "clipped_probabilities": (
        "the loss is computed from clipped probabilities: a unit's loss is capped at 15.94 (16.118 where "
        "its target is 1) and its gradient is 0 for confidently wrong examples. Output logits and use "
        "loss=bce_from_logits"
    ),
    "logits_as_probabilities": (
        "logits are being treated as probabilities (from_logits=False on a logits head): Keras clips "
        "them to [1e-7, 1 - 1e-7]. Use loss=bce_from_logits"
    ),
    "double_sigmoid": (
        "a sigmoid is applied to probabilities again (from_logits=True on a sigmoid head). "
        "Drop the sigmoid head and use loss=bce_from_logits"
    ),
    "naive": (
        "the loss takes log(sigmoid(z)) and log(1 - sigmoid(z)) without protection and turns into "
        "inf/NaN once the sigmoid rounds to 0 or 1. Use loss=bce_from_logits"
    ),
}
WARNINGS = {"softmax": MISTAKES, "sigmoid": SIGMOID_MISTAKES}  # by the formulation's family


def probe_batches(num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The softmax probes; with 2 classes the moderate one is (2, 1), true class 1."""
    values = [2.0, 1.0, 0.1][:num_classes]
    moderate = np.zeros((1, num_classes), np.float32)
    moderate[0, :len(values)] = values
    large = np.zeros((1, num_classes), np.float32)
    large[0, 0] = LARGE_GAP
    return [(moderate, np.array([len(values) - 1])), (large, np.array([1]))]


def binary_probe_batches(units: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The probes of a binary loss: unit 0 at logit 2, then at LARGE_GAP, target 0; the others 0, target 1.

    >>> [(z.tolist(), y.tolist()) for z, y in binary_probe_batches(1)]
    [([[2.0]], [[0.0]]), ([[200.0]], [[0.0]])]
    """
    batches = []
    for logit in (2.0, LARGE_GAP):
        logits = np.zeros((1, units), np.float32)
        logits[0, 0] = logit
        targets = np.ones((1, units), np.float32)
        targets[0, 0] = 0.0
        batches.append((logits, targets))
    return batches


def _clipped_ce(probs, labels):
    p = probs / np.sum(probs, axis=-1, keepdims=True)
    p = np.clip(p, CLIP_EPSILON, 1.0 - CLIP_EPSILON)
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


def candidate_losses(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What each known computation gives on this probe (float64 numpy)."""
    z = logits.astype(np.float64)
    probs = stable_softmax(z)
    with np.errstate(all="ignore"):
        return {
            "exact": float(exact_cross_entropy(z, labels).mean()),
            "clipped_probabilities": _clipped_ce(probs, labels),
            "logits_as_probabilities": _clipped_ce(z, labels),
            "double_softmax": float(exact_cross_entropy(probs, labels).mean()),
        }


def _sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _clipped_bce(probs, targets):
    # Keras clips in the loss's float32: 1 - 1e-7 rounds to 1 - 2**-23, so a target-0 unit caps at 15.94.
    eps, one = np.float32(CLIP_EPSILON), np.float32(1.0)
    p = np.clip(np.asarray(probs, np.float32), eps, one - eps).astype(np.float64)
    return float(np.mean(-(targets * np.log(p) + (1.0 - targets) * np.log(1.0 - p))))


def binary_candidate_losses(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """What each known computation of a binary crossentropy gives on this probe.

    >>> {k: round(v, 2) for k, v in binary_candidate_losses(np.array([[200.0]]), np.array([[0.0]])).items()}
    {'exact': 200.0, 'clipped_probabilities': 15.94, 'logits_as_probabilities': 15.94, 'double_sigmoid': 1.31}
    """
    z, y = logits.astype(np.float64), targets.astype(np.float64)
    with np.errstate(all="ignore"):
        return {
            "exact": float(exact_binary_cross_entropy(z, y).mean()),
            "clipped_probabilities": _clipped_bce(_sigmoid(z), y),
            "logits_as_probabilities": _clipped_bce(z, y),
            "double_sigmoid": float(exact_binary_cross_entropy(_sigmoid(z), y).mean()),
        }


@dataclass(frozen=True)
class LossPath:
    path: str
    measured: tuple[float, ...]  # the compiled loss on each probe
    exact: tuple[float, ...]  # the exact cross entropy on each probe
    family: str = "softmax"  # the formulation's (its warning names that family's sound formulation)

    @property
    def warning(self) -> str | None:
        return WARNINGS[self.family].get(self.path)

    def describe(self) -> str:
        pairs = ", ".join(f"{m:.4g} vs exact {e:.4g}" for m, e in zip(self.measured, self.exact))
        return f"loss path: {self.path} (probe losses {pairs})"


def classify(head: str, measured: list[float], candidates: list[dict[str, float]], rtol: float = MATCH_RTOL) -> str:
    """Name the path whose candidate values match the measured ones on every probe."""
    if not all(np.isfinite(measured)):
        return "naive"

    def matches(name):
        return all(
            np.isclose(m, c[name], rtol=rtol, atol=1e-5) for m, c in zip(measured, candidates)
        )

    if matches("exact"):
        return RESCUED.get(head, "fused_logits")
    for name in candidates[0]:
        if name != "exact" and matches(name):
            return name
    return "unknown"


def detect_loss_path(setup, head=None, num_classes: int = 10) -> LossPath:
    """Measure the path of `setup`'s formulation.

    `head` may be a compiled model's own head layer, so that its dtype policy
    (mixed precision) is part of the measurement; `num_classes` is its width
    (for a binary loss: its output units). Label smoothing and temperature
    are left out: they change the value of the loss, not its path.
    """
    import dataclasses

    from keras_loss_recipes.losses.measure import compiled_loss

    plain = dataclasses.replace(setup, label_smoothing=0.0, temperature=1.0)
    binary = setup.labels == "binary"
    batches = binary_probe_batches(num_classes) if binary else probe_batches(num_classes)
    measured, exact, candidates = [], [], []
    for logits, labels in batches:
        measured.append(compiled_loss(plain, logits, labels, head=head))
        cand = binary_candidate_losses(logits, labels) if binary else candidate_losses(logits, labels)
        candidates.append(cand)
        exact.append(cand["exact"])
    path = classify(setup.head, measured, candidates, rtol=match_rtol(head))
    return LossPath(path, tuple(measured), tuple(exact), family=setup.formulation.family)


@dataclass(frozen=True)
class GapSweep:
    """The loss and |d loss / d logits| against the logit gap, beside the exact ones (float64 arrays)."""

    gaps: np.ndarray
    values: np.ndarray
    exact: np.ndarray
    grad_norms: np.ndarray
    exact_grad_norms: np.ndarray

    def relative_errors(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.abs(self.values - self.exact) / np.maximum(np.abs(self.exact), 1e-12)

    def within(self, rtol: float) -> np.ndarray:
        """Per gap: the loss is finite and within `rtol` of the exact one."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(self.values) & (self.relative_errors() <= rtol)

    def first_dead_gradient(self) -> float | None:
        """The first gap whose gradient is NaN/inf or below DEAD_GRADIENT of the exact one (None: never)."""
        with np.errstate(invalid="ignore"):
            dead = ~np.isfinite(self.grad_norms) | (self.grad_norms < DEAD_GRADIENT * self.exact_grad_norms)
        return float(self.gaps[np.argmax(dead)]) if dead.any() else None


def gap_batch(gaps: np.ndarray, num_classes: int, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """One confidently wrong example per gap: unit 0 at logit `gap`, the rest 0; the truth is elsewhere.

    Softmax: true class 1. Binary: every target 0, so unit 0 says yes with confidence `gap`.

    >>> z, y = gap_batch(np.array([0.0, 5.0]), 3, binary=False)
    >>> z.tolist(), y.tolist()
    ([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]], [1, 1])
    """
    logits = np.zeros((len(gaps), num_classes), np.float64)
    logits[:, 0] = gaps
    labels = np.zeros_like(logits) if binary else np.full(len(gaps), 1)
    return logits, labels


def sweep_gaps(setup, dtype: str, num_classes: int = 10, head=None, loss_dtype=None, gaps=GAPS) -> GapSweep:
    """The loss of `setup` (on `head`, see `measure.loss_and_logit_grad`) at every gap, with logits in `dtype`."""
    from keras_loss_recipes.losses.measure import loss_and_logit_grad

    binary = setup.labels == "binary"
    logits, labels = gap_batch(np.asarray(gaps, np.float64), num_classes, binary)
    values, grad_norms, rounded = loss_and_logit_grad(setup, logits, labels, dtype, head=head, loss_dtype=loss_dtype)
    if binary:
        exact = exact_binary_cross_entropy(rounded, labels)
        exact_grad = (_sigmoid(rounded) - labels) / num_classes  # the loss is a mean over the units
    else:
        exact = exact_cross_entropy(rounded, labels)
        exact_grad = stable_softmax(rounded) - np.eye(num_classes)[labels]
    return GapSweep(np.asarray(gaps, np.float64), values, exact, grad_norms, np.linalg.norm(exact_grad, axis=-1))
