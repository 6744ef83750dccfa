"""The stability probe: every formulation against the exact loss, over the logit gap, per dtype.

No training. For each dtype (float32, float16, bfloat16) the logits, the
formulation's head and its loss all run in that dtype, through the same Keras
code that training uses (compiled as training compiles it, so the TensorFlow
backend's softmax rescue applies exactly as in `fit`, and is absent on JAX and
PyTorch exactly as there). The probe example is confidently
wrong: 10 classes, logits (gap, 0, ..., 0), true class 1, so the exact cross
entropy grows like the gap and its gradient stays near sqrt(2).

    1. validate the config and prepare the run directory;
    2. sweep: per dtype and formulation, the loss and its gradient at every gap
       (`losses.measure.loss_and_logit_grad`), against the exact values;
    3. report (`reporting.probe_report`): probe.csv, probe_failures.csv,
       probe.png, TensorBoard under probe/, and metrics.json with the failure gaps.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

import losses
from losses.measure import loss_and_logit_grad
from losses.numerics import exact_cross_entropy, stable_softmax
from recipes.reporting import probe_report
from recipes.reporting.results import prepare_run_dir, write_metrics
from recipes.settings import validate

log = logging.getLogger(__name__)
TRUE_CLASS = 1


def tolerance(dtype: str, rel_tol: float) -> float:
    """The relative error a correct computation in `dtype` may still show."""
    import ml_dtypes

    eps = float(ml_dtypes.finfo(dtype).eps) if dtype == "bfloat16" else float(np.finfo(dtype).eps)
    return max(rel_tol, 4 * eps)


def probe_logits(gaps: np.ndarray, num_classes: int) -> np.ndarray:
    logits = np.zeros((len(gaps), num_classes), np.float64)
    logits[:, 0] = gaps
    return logits


def sweep(cfg) -> list[dict]:
    """One row per dtype x formulation x gap (the formulations the backend runs)."""
    import keras

    gaps = np.linspace(0.0, float(cfg.max_gap), int(cfg.points))
    logits = probe_logits(gaps, int(cfg.num_classes))
    labels = np.full(len(gaps), TRUE_CLASS)
    backend = keras.backend.backend()
    rows = []
    for dtype in cfg.dtypes:
        tol = tolerance(dtype, float(cfg.rel_tol))
        for name in losses.names():
            if backend in losses.formulation(name).backends:
                rows.extend(measure_rows(name, gaps, logits, labels, dtype, tol))
        log.info("probe: %s done", dtype)
    return rows


def measure_rows(name: str, gaps, logits, labels, dtype: str, tol: float) -> list[dict]:
    """Formulation `name` in `dtype` at every gap: its loss and gradient against the exact ones."""
    values, grad_norms, rounded = loss_and_logit_grad(losses.get(name), logits, labels, dtype)
    exact = exact_cross_entropy(rounded, labels)
    exact_grad = stable_softmax(rounded) - np.eye(rounded.shape[-1])[labels]
    exact_grad_norms = np.linalg.norm(exact_grad, axis=-1)
    with np.errstate(all="ignore"):
        abs_err = np.abs(values - exact)
        rel_err = abs_err / np.maximum(np.abs(exact), 1e-12)
    return [{
        "dtype": dtype, "loss": name, "gap": float(gap), "value": float(values[i]),
        "exact": float(exact[i]), "abs_error": float(abs_err[i]), "rel_error": float(rel_err[i]),
        "grad_norm": float(grad_norms[i]), "exact_grad_norm": float(exact_grad_norms[i]),
        "ok": bool(np.isfinite(values[i]) and rel_err[i] <= tol),
    } for i, gap in enumerate(gaps)]


def run(cfg, run_dir) -> dict:
    validate(cfg)
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = sweep(cfg.recipe)
    failures = probe_report.first_failures(rows)
    probe_report.write_all(run_dir, rows, failures)
    for f in failures:
        log.info("probe %-9s %-24s first goes wrong at gap %s (%s)", f["dtype"], f["loss"],
                 "-" if f["first_bad_gap"] is None else f"{f['first_bad_gap']:g}", f["how"])
    metrics = {"status": "ok", "recipe": "probe", "failures": failures}
    write_metrics(run_dir, metrics)
    log.info("probe written to %s (probe.csv, probe_failures.csv, probe.png, probe/)", run_dir)
    return metrics
