"""The probe's records: where each formulation first goes wrong, the CSV files, the figure, TensorBoard.

    probe.csv            one row per dtype x formulation x gap: loss, exact, errors, gradient norms
    probe_failures.csv   per dtype x formulation: the first gap where it goes wrong, and how
    probe.png            relative error and gradient norm against the gap, a column per dtype, two rows per family
    probe/               TensorBoard: the figure as an image, the curves as scalars
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from keras_loss_recipes import losses

ROW_FIELDS = ["dtype", "loss", "gap", "value", "exact", "abs_error", "rel_error", "grad_norm", "exact_grad_norm", "ok"]
FAILURE_FIELDS = ["dtype", "loss", "first_bad_gap", "how"]


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


FAMILY_LOSS = {"softmax": "exact CE", "sigmoid": "exact BCE (one logit)"}


def plot(rows: list[dict], failures: list[dict], path: Path) -> None:
    """Relative error and gradient norm against the gap: a column per dtype, two rows per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    names = list(dict.fromkeys(r["loss"] for r in rows))
    families = list(dict.fromkeys(losses.formulation(n).family for n in names))
    fig, axes = plt.subplots(2 * len(families), len(dtypes), figsize=(5.5 * len(dtypes), 8 * len(families)),
                             squeeze=False, sharex=True)
    for at, family in enumerate(families):
        members = [n for n in names if losses.formulation(n).family == family]
        _plot_family(axes[2 * at:2 * at + 2], rows, failures, dtypes, members, FAMILY_LOSS[family])
    for col in range(len(dtypes)):
        axes[-1, col].set_xlabel("logit gap (the truth is behind by this much; one logit: its magnitude)")
    fig.suptitle("Where each loss formulation goes wrong (dotted line / triangle: first gap with NaN, inf or error > tolerance)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_family(axes, rows: list[dict], failures: list[dict], dtypes: list[str], names: list[str], exact: str) -> None:
    """One family's formulations: relative error in the first row of `axes`, gradient norm in the second."""
    import matplotlib.pyplot as plt

    colors = dict(zip(names, plt.get_cmap("tab10").colors))
    styles = dict(zip(names, ["-", "--", "-.", ":"] * 3))
    bad = {(f["dtype"], f["loss"]): f["first_bad_gap"] for f in failures}
    for col, dtype in enumerate(dtypes):
        exact_grad = None
        for name in names:
            sel = [r for r in rows if r["dtype"] == dtype and r["loss"] == name]
            if not sel:
                continue
            gap = np.array([r["gap"] for r in sel])
            rel = np.array([r["rel_error"] for r in sel])
            grad = np.array([r["grad_norm"] for r in sel])
            exact_grad = sel[-1]["exact_grad_norm"]
            # log axes: show exact zeros at the floor, NaN/inf as gaps in the line
            style = dict(color=colors[name], ls=styles[name], label=name, lw=1.4, alpha=0.85)
            axes[0, col].plot(gap, np.clip(rel, 1e-9, None), **style)
            axes[1, col].plot(gap, np.clip(grad, 1e-9, None), **style)
            g = bad[(dtype, name)]
            if g is not None:
                axes[0, col].axvline(g, color=colors[name], ls=":", lw=0.8)
                axes[0, col].plot([g], [1e-9], marker="v", color=colors[name], ms=7)
        axes[0, col].set_title(f"{dtype}: relative error vs {exact}")
        about = "" if exact_grad is None else f" (exact: about {exact_grad:.2f})"
        axes[1, col].set_title(f"{dtype}: |d loss / d logits|{about}")
        for ax in axes[:, col]:
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left")


def write_tensorboard(rows: list[dict], png: Path, log_dir: Path) -> None:
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(log_dir) as writer:
        writer.png("probe/figure", png)
        for row in rows:
            step = int(round(row["gap"]))
            for field in ("rel_error", "grad_norm"):
                value = row[field]
                writer.scalar(f"probe/{row['dtype']}/{row['loss']}/{field}",
                              value if math.isfinite(value) else float("nan"), step)


def write_all(run_dir: Path, rows: list[dict], failures: list[dict]) -> None:
    """probe.csv, probe_failures.csv, probe.png and probe/ (TensorBoard) in `run_dir`."""
    write_csv(run_dir / "probe.csv", rows, ROW_FIELDS)
    write_csv(run_dir / "probe_failures.csv", failures, FAILURE_FIELDS)
    plot(rows, failures, run_dir / "probe.png")
    write_tensorboard(rows, run_dir / "probe.png", run_dir / "probe")
