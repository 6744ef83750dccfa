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

Paths:
    fused_logits              exact, computed from logits (no softmax head)
    rescued_softmax           exact, although the head is a softmax (Keras read the logits back)
    clipped_probabilities     probabilities clipped to [1e-7, 1 - 1e-7]: loss capped, gradient 0
    naive                     log of an underflowed probability: inf/NaN at large gaps
    logits_as_probabilities   logits normalised as if they were probabilities (from_logits missing)
    double_softmax            a softmax applied to probabilities again (from_logits=True on a softmax)
    unknown                   none of the above matched
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from losses.numerics import CLIP_EPSILON, exact_cross_entropy, stable_softmax

LARGE_GAP = 200.0
MATCH_RTOL = 1e-3

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


def probe_batches(num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    moderate = np.zeros((1, num_classes), np.float32)
    moderate[0, :3] = [2.0, 1.0, 0.1]
    large = np.zeros((1, num_classes), np.float32)
    large[0, 0] = LARGE_GAP
    return [(moderate, np.array([2])), (large, np.array([1]))]


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


@dataclass(frozen=True)
class LossPath:
    path: str
    measured: tuple[float, ...]  # the compiled loss on each probe
    exact: tuple[float, ...]  # the exact cross entropy on each probe

    @property
    def warning(self) -> str | None:
        return MISTAKES.get(self.path)

    def describe(self) -> str:
        pairs = ", ".join(f"{m:.4g} vs exact {e:.4g}" for m, e in zip(self.measured, self.exact))
        return f"loss path: {self.path} (probe losses {pairs})"


def classify(head: str, measured: list[float], candidates: list[dict[str, float]]) -> str:
    """Name the path whose candidate values match the measured ones on every probe."""
    if not all(np.isfinite(measured)):
        return "naive"

    def matches(name):
        return all(
            np.isclose(m, c[name], rtol=MATCH_RTOL, atol=1e-5) for m, c in zip(measured, candidates)
        )

    if matches("exact"):
        return "rescued_softmax" if head == "softmax" else "fused_logits"
    for name in ("clipped_probabilities", "logits_as_probabilities", "double_softmax"):
        if matches(name):
            return name
    return "unknown"


def detect_loss_path(setup, head=None) -> LossPath:
    """Measure the path of `setup`'s formulation.

    `head` may be a compiled model's own softmax layer, so that its dtype policy
    (mixed precision) is part of the measurement. Label smoothing and
    temperature are left out: they change the value of the loss, not its path.
    """
    import dataclasses

    from losses.measure import compiled_loss

    plain = dataclasses.replace(setup, label_smoothing=0.0, temperature=1.0)
    num_classes = 10
    measured, exact, candidates = [], [], []
    for logits, labels in probe_batches(num_classes):
        measured.append(compiled_loss(plain, logits, labels, head=head))
        cand = candidate_losses(logits, labels)
        candidates.append(cand)
        exact.append(cand["exact"])
    return LossPath(classify(setup.head, measured, candidates), tuple(measured), tuple(exact))
