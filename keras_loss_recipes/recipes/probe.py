"""The stability probe: every formulation against the exact loss, over the logit gap, per dtype.

No training. For each dtype (float32, float16, bfloat16) the logits, the
formulation's head and its loss all run in that dtype, through the same Keras
code that training uses (compiled as training compiles it, so the TensorFlow
backend's softmax rescue applies exactly as in `fit`, and is absent on JAX and
PyTorch exactly as there). The probe example is confidently
wrong (`keras_loss_recipes.losses.paths.gap_batch`):
  * the softmax family: 10 classes, logits (gap, 0, ..., 0), true class 1, so the
    exact cross entropy grows like the gap and its gradient stays near sqrt(2);
  * the sigmoid family: one logit per example, at the gap, target 0, so the exact
    binary cross entropy (`numerics.exact_binary_cross_entropy`) grows like the
    logit's magnitude and its gradient stays near 1.

    1. prepare the run directory (the job has checked the config);
    2. sweep: per dtype and formulation, the loss and its gradient at every gap
       (`keras_loss_recipes.losses.paths.sweep_gaps`), against the exact values;
    3. report (`reporting.probe_report`): probe.csv, probe_failures.csv,
       probe.png, TensorBoard under probe/, and metrics.json with the failure gaps.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np

from keras_loss_recipes import losses
from keras_loss_recipes.losses.numerics import tolerance
from keras_loss_recipes.losses.paths import sweep_gaps
from keras_loss_recipes.reporting import probe_report
from keras_loss_recipes.lifecycle.run import Run, in_process
from keras_loss_recipes.runtime.quiet import start_backend

log = logging.getLogger(__name__)


def sweep(cfg) -> list[dict]:
    """One row per dtype x formulation x gap (the formulations the backend runs)."""
    import keras

    gaps = np.linspace(0.0, float(cfg.max_gap), int(cfg.points))
    backend = keras.backend.backend()
    rows = []
    for dtype in cfg.dtypes:
        tol = tolerance(dtype, float(cfg.rel_tol))
        for name in losses.names():
            if backend in losses.formulation(name).backends:
                rows.extend(measure_rows(name, gaps, int(cfg.num_classes), dtype, tol))
        log.info("probe: %s done", dtype)
    return rows


SIGMOID_UNITS = 1  # the sigmoid family's probe: one logit per example, a binary classifier's


def measure_rows(name: str, gaps, num_classes: int, dtype: str, tol: float) -> list[dict]:
    """Formulation `name` in `dtype` at every gap: its loss and gradient against the exact ones
    (`num_classes` for the softmax family; the sigmoid family has one logit)."""
    units = SIGMOID_UNITS if losses.formulation(name).family == "sigmoid" else num_classes
    curve = sweep_gaps(losses.get(name), dtype, units, gaps=gaps)
    abs_err, rel_err, ok = np.abs(curve.values - curve.exact), curve.relative_errors(), curve.within(tol)
    return [{
        "dtype": dtype, "loss": name, "gap": float(gap), "value": float(curve.values[i]),
        "exact": float(curve.exact[i]), "abs_error": float(abs_err[i]), "rel_error": float(rel_err[i]),
        "grad_norm": float(curve.grad_norms[i]), "exact_grad_norm": float(curve.exact_grad_norms[i]),
        "ok": bool(ok[i]),
    } for i, gap in enumerate(gaps)]


# Keras warns when `from_logits=True` meets a softmax or sigmoid output. The probe runs
# mistake_double_softmax and mistake_double_sigmoid on purpose: the warning is that mistake,
# which probe.csv measures and reports, not a problem of the run, so it is not printed.
DOUBLE_HEAD_WARNING = r".*received `from_logits=True`, but the `output` argument was produced by a (Softmax|Sigmoid)"


@contextlib.contextmanager
def mistakes_measured_on_purpose():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DOUBLE_HEAD_WARNING, category=UserWarning)
        yield


def probe(cfg, run: Run) -> dict:
    """The probe's rows and first failures, into `run`'s directory."""
    run.prepare()
    run_dir = run.dir
    start_backend()
    with mistakes_measured_on_purpose():
        rows = sweep(cfg.recipe)
    failures = probe_report.first_failures(rows)
    probe_report.write_all(run_dir, rows, failures)
    for f in failures:
        log.info("probe %-9s %-24s first goes wrong at gap %s (%s)", f["dtype"], f["loss"],
                 "-" if f["first_bad_gap"] is None else f"{f['first_bad_gap']:g}", f["how"])
    metrics = {"status": "ok", "recipe": "probe", "failures": failures}
    run.write_metrics(metrics)
    log.info("probe written to %s (probe.csv, probe_failures.csv, probe.png, probe/)", run_dir)
    return metrics


run = in_process(probe)
