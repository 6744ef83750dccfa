"""The stability probe: every formulation against the exact loss, over the logit gap, per dtype.

No training. For each dtype (float32, float16, bfloat16) the logits, the
formulation's head and its loss all run in that dtype, through the same Keras
code that training uses (compiled as training compiles it, so the TensorFlow
backend's softmax rescue applies exactly as in `fit`, and is absent on JAX and
PyTorch exactly as there). The probe example is confidently
wrong: 10 classes, logits (gap, 0, ..., 0), true class 1, so the exact cross
entropy grows like the gap and its gradient stays near sqrt(2).

Writes into the run directory:
    probe.csv            one row per dtype x formulation x gap: loss, exact, errors, gradient norms
    probe_failures.csv   per dtype x formulation: the first gap where it goes wrong, and how
    probe.png            relative error and gradient norm against the gap, one panel per dtype
    probe/               TensorBoard: the figure as an image, the curves as scalars
    metrics.json         status and the failure gaps
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

import losses
from losses.numerics import exact_cross_entropy, stable_softmax
from recipes.results import prepare_run_dir, write_metrics

log = logging.getLogger(__name__)
TRUE_CLASS = 1
FIELDS = ["dtype", "loss", "gap", "value", "exact", "abs_error", "rel_error", "grad_norm", "exact_grad_norm", "ok"]


def tolerance(dtype: str, rel_tol: float) -> float:
    """The relative error a correct computation in `dtype` may still show."""
    import ml_dtypes

    eps = float(ml_dtypes.finfo(dtype).eps) if dtype == "bfloat16" else float(np.finfo(dtype).eps)
    return max(rel_tol, 4 * eps)


def probe_logits(gaps: np.ndarray, num_classes: int) -> np.ndarray:
    logits = np.zeros((len(gaps), num_classes), np.float64)
    logits[:, 0] = gaps
    return logits


def loss_and_logit_grad(setup, logits: np.ndarray, dtype: str):
    """Per-example loss and |d loss / d logits| with head, loss and logits in `dtype`.

    Compiled as training compiles it (tf.function on TensorFlow, jax.jit on
    JAX; PyTorch runs eagerly as Keras's torch trainer does), so what Keras
    rewrites in training it rewrites here too.
    """
    import keras
    from keras import ops

    num_classes = logits.shape[-1]
    head = keras.layers.Activation("softmax", dtype=dtype) if setup.head == "softmax" else None
    loss_fn = setup.make_loss(dtype=dtype, reduction="none")
    y = ops.convert_to_tensor(setup.encode_labels(np.full(len(logits), TRUE_CLASS), num_classes))

    def per_example(z):
        return loss_fn(y, head(z) if head is not None else z)

    z = ops.cast(ops.convert_to_tensor(logits.astype(np.float32)), dtype)
    def as_float64(t):
        return ops.convert_to_numpy(ops.cast(t, "float32")).astype(np.float64)

    values, grads = _LOSS_AND_GRAD[keras.backend.backend()](per_example, z)
    return as_float64(values), np.linalg.norm(as_float64(grads), axis=-1), as_float64(z)


def _tensorflow_loss_and_grad(per_example, z):
    import tensorflow as tf

    @tf.function
    def step(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            values = per_example(z)
            total = tf.reduce_sum(tf.cast(values, tf.float32))
        grads = tape.gradient(total, z)
        return values, tf.zeros_like(z) if grads is None else grads

    return step(z)


def _jax_loss_and_grad(per_example, z):
    import jax
    import jax.numpy as jnp

    def total(z):
        values = per_example(z)
        return jnp.sum(values.astype(jnp.float32)), values

    (_, values), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(z)
    return values, grads


def _torch_loss_and_grad(per_example, z):
    z = z.detach().clone().requires_grad_(True)
    values = per_example(z)
    values.float().sum().backward()
    return values.detach(), z.grad


_LOSS_AND_GRAD = {"tensorflow": _tensorflow_loss_and_grad, "jax": _jax_loss_and_grad, "torch": _torch_loss_and_grad}


def sweep(cfg) -> list[dict]:
    import keras

    gaps = np.linspace(0.0, float(cfg.max_gap), int(cfg.points))
    logits = probe_logits(gaps, int(cfg.num_classes))
    labels = np.full(len(gaps), TRUE_CLASS)
    backend = keras.backend.backend()
    rows = []
    for dtype in cfg.dtypes:
        tol = tolerance(dtype, float(cfg.rel_tol))
        for name in losses.names():
            formulation = losses.formulation(name)
            if backend not in formulation.backends:
                continue
            values, grad_norms, rounded = loss_and_logit_grad(losses.get(name), logits, dtype)
            exact = exact_cross_entropy(rounded, labels)
            exact_grad = stable_softmax(rounded) - np.eye(rounded.shape[-1])[labels]
            exact_grad_norms = np.linalg.norm(exact_grad, axis=-1)
            with np.errstate(all="ignore"):
                abs_err = np.abs(values - exact)
                rel_err = abs_err / np.maximum(np.abs(exact), 1e-12)
            for i, gap in enumerate(gaps):
                ok = bool(np.isfinite(values[i]) and rel_err[i] <= tol)
                rows.append({
                    "dtype": dtype, "loss": name, "gap": float(gap), "value": float(values[i]),
                    "exact": float(exact[i]), "abs_error": float(abs_err[i]), "rel_error": float(rel_err[i]),
                    "grad_norm": float(grad_norms[i]), "exact_grad_norm": float(exact_grad_norms[i]), "ok": ok,
                })
        log.info("probe: %s done", dtype)
    return rows


def first_failures(rows: list[dict]) -> list[dict]:
    """Per dtype and formulation: the first gap that goes wrong (None if none) and how."""
    out = {}
    for row in rows:
        key = (row["dtype"], row["loss"])
        if key not in out:
            out[key] = {"dtype": row["dtype"], "loss": row["loss"], "first_bad_gap": None, "how": "exact throughout"}
        if out[key]["first_bad_gap"] is None and not row["ok"]:
            value = row["value"]
            how = "nan" if math.isnan(value) else "inf" if math.isinf(value) else f"rel_error {row['rel_error']:.2g}"
            out[key].update(first_bad_gap=row["gap"], how=how)
    return list(out.values())


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], failures: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    names = list(dict.fromkeys(r["loss"] for r in rows))
    colors = dict(zip(names, plt.get_cmap("tab10").colors))
    styles = dict(zip(names, ["-", "--", "-.", ":"] * 4))
    bad = {(f["dtype"], f["loss"]): f["first_bad_gap"] for f in failures}
    fig, axes = plt.subplots(2, len(dtypes), figsize=(5.5 * len(dtypes), 8), squeeze=False, sharex=True)
    for col, dtype in enumerate(dtypes):
        for name in names:
            sel = [r for r in rows if r["dtype"] == dtype and r["loss"] == name]
            if not sel:
                continue
            gap = np.array([r["gap"] for r in sel])
            rel = np.array([r["rel_error"] for r in sel])
            grad = np.array([r["grad_norm"] for r in sel])
            # log axes: show exact zeros at the floor, NaN/inf as gaps in the line
            style = dict(color=colors[name], ls=styles[name], label=name, lw=1.4, alpha=0.85)
            axes[0, col].plot(gap, np.clip(rel, 1e-9, None), **style)
            axes[1, col].plot(gap, np.clip(grad, 1e-9, None), **style)
            g = bad[(dtype, name)]
            if g is not None:
                axes[0, col].axvline(g, color=colors[name], ls=":", lw=0.8)
                axes[0, col].plot([g], [1e-9], marker="v", color=colors[name], ms=7)
        axes[0, col].set_title(f"{dtype}: relative error vs exact CE")
        axes[1, col].set_title(f"{dtype}: |d loss / d logits| (exact: about 1.41)")
        for ax in axes[:, col]:
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[1, col].set_xlabel("logit gap (true class is behind by this much)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Where each loss formulation goes wrong (dotted line / triangle: first gap with NaN, inf or error > tolerance)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tensorboard(rows: list[dict], png: Path, log_dir: Path) -> None:
    from recipes.summaries import summary_writer

    with summary_writer(log_dir) as writer:
        writer.png("probe/figure", png)
        for row in rows:
            step = int(round(row["gap"]))
            for field in ("rel_error", "grad_norm"):
                value = row[field]
                writer.scalar(f"probe/{row['dtype']}/{row['loss']}/{field}",
                              value if math.isfinite(value) else float("nan"), step)


def run(cfg, run_dir) -> dict:
    from recipes.settings import validate

    validate(cfg)
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = sweep(cfg.recipe)
    failures = first_failures(rows)
    write_csv(run_dir / "probe.csv", rows, FIELDS)
    write_csv(run_dir / "probe_failures.csv", failures, ["dtype", "loss", "first_bad_gap", "how"])
    plot(rows, failures, run_dir / "probe.png")
    write_tensorboard(rows, run_dir / "probe.png", run_dir / "probe")
    for f in failures:
        log.info("probe %-9s %-24s first goes wrong at gap %s (%s)", f["dtype"], f["loss"],
                 "-" if f["first_bad_gap"] is None else f"{f['first_bad_gap']:g}", f["how"])
    metrics = {"status": "ok", "recipe": "probe", "failures": failures}
    write_metrics(run_dir, metrics)
    log.info("probe written to %s (probe.csv, probe_failures.csv, probe.png, probe/)", run_dir)
    return metrics
