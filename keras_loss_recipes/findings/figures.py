"""The findings' figures: every bar and curve coloured by the loss path measured for it.

    findings_stress.png      under stress: test exact CE and accuracy per formulation, a panel per backend
    findings_ordinary.png    no stress: test accuracy per formulation (mean +- std over seeds)
    findings_precision.png   under stress, per precision: test exact CE per formulation
    findings_probe.png       relative error of the loss against the logit gap, per backend and dtype
    findings_calibration.png the temperature each formulation's runs fit, without and under stress, per backend
Legends stand outside the axes, and titles are wrapped, so nothing covers data or is cut.
"""
from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np

from keras_loss_recipes.findings.data import group_label, path_of
from keras_loss_recipes.reporting.palette import legend_room, path_color, path_legend

LINE_STYLES = ["-", "--", "-.", ":"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, rows: list[dict], key: str, log: bool) -> None:
    """Horizontal bars of `key` (mean +- std), one per row, coloured by path; diverged/failed runs noted."""
    y = np.arange(len(rows))
    means = [r[key][0] if r[key] else 0.0 for r in rows]
    stds = [r[key][1] if r[key] else 0.0 for r in rows]
    ax.barh(y, means, xerr=stds, color=[path_color(r["loss_path"]) for r in rows], capsize=2)
    ax.set_yticks(y, [group_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    for yi, r in zip(y, rows):
        if r["ok"] < r["runs"]:
            ax.annotate(f"{r['diverged']} diverged, {r['failed']} failed of {r['runs']}", (0, yi), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7, color="#d62728")
    ax.grid(axis="x", alpha=0.3)


def bar_figure(groups: list[dict], backends: list[str], path: Path, title: str, panels: list[tuple]) -> None:
    """One row of panels per (key, title, log) in `panels`, one column per backend."""
    plt = _plt()
    count = max(1, max(len(groups_of(groups, b)) for b in backends))
    fig, axes = plt.subplots(len(panels), len(backends), figsize=(4.6 * len(backends), 0.32 * count * len(panels) + 2.6),
                             squeeze=False)
    for col, backend in enumerate(backends):
        rows = groups_of(groups, backend)
        for row, (key, panel_title, log) in enumerate(panels):
            ax = axes[row, col]
            if rows:
                _bars(ax, rows, key, log)
            else:
                ax.set_axis_off()
            ax.set_title(f"{backend}: {panel_title}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    path_legend(fig, {r["loss_path"] for r in groups})
    fig.tight_layout(rect=(0, legend_room(fig), 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def groups_of(groups: list[dict], backend: str) -> list[dict]:
    return [r for r in groups if r["backend"] == backend]


def probe_figure(out: Path, backends: list[str], paths: list[dict], path: Path) -> None:
    """Relative error against the gap: a row per backend, a column per dtype; colour = float32 loss path."""
    plt = _plt()
    curves = {b: _probe_rows(out / "runs" / b / "probe" / "probe" / "probe.csv") for b in backends}
    backends = [b for b in backends if curves[b]]
    dtypes = list(dict.fromkeys(r["dtype"] for rows in curves.values() for r in rows))
    fig, axes = plt.subplots(len(backends), len(dtypes), figsize=(5 * len(dtypes), 3.2 * len(backends) + 1.2),
                             squeeze=False, sharex=True)
    for i, backend in enumerate(backends):
        # Only what has a measured path: the colour must be a measurement, never a guess.
        names = [n for n in dict.fromkeys(r["loss"] for r in curves[backend]) if path_of(paths, backend, n)]
        for j, dtype in enumerate(dtypes):
            ax = axes[i, j]
            for k, name in enumerate(names):
                sel = [r for r in curves[backend] if r["dtype"] == dtype and r["loss"] == name]
                gap = [r["gap"] for r in sel]
                rel = [max(r["rel_error"], 1e-9) if math.isfinite(r["rel_error"]) else np.nan for r in sel]
                ax.plot(gap, rel, color=path_color(path_of(paths, backend, name)), ls=LINE_STYLES[k % 4], lw=1.2)
            ax.set_yscale("log")
            ax.set_title(f"{backend}, {dtype}: relative error of the loss", fontsize=9)
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel("|loss - exact| / exact")
    for ax in axes[-1]:
        ax.set_xlabel("logit gap (the true class is behind by this much)")
    fig.suptitle("Where each formulation's loss goes wrong (gaps in a line: NaN or inf)", fontsize=11)
    path_legend(fig, {p["path"] for p in paths})
    fig.tight_layout(rect=(0, legend_room(fig), 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibration_figure(groups: list[dict], backends: list[str], path: Path) -> bool:
    """The fitted temperature (mean +- std over seeds, log axis, T = 1 marked) per formulation: a row per training
    condition (with its label-smoothed twin), a column per backend. False where no run recorded a temperature."""
    from keras_loss_recipes.findings.data import CALIBRATION_GROUPS

    conditions = [(title, [g for g in groups if g["group"] in pair and g["precision"] == "float32"
                           and g.get("temperature")]) for title, pair in zip(("no stress", "under stress"),
                                                                              CALIBRATION_GROUPS)]
    conditions = [(title, rows) for title, rows in conditions if rows]
    if not conditions:
        return False
    plt = _plt()
    count = max(len(groups_of(rows, b)) for _, rows in conditions for b in backends)
    width = max(7.0, 4.6 * len(backends))
    fig, axes = plt.subplots(len(conditions), len(backends), squeeze=False, sharex=True,
                             figsize=(width, 0.32 * count * len(conditions) + 2.6))
    for row, (title, rows) in enumerate(conditions):
        for col, backend in enumerate(backends):
            ax, mine = axes[row, col], groups_of(rows, backend)
            if mine:
                _bars(ax, mine, "temperature", log=True)
                ax.axvline(1.0, color="black", lw=1, ls="--")
            else:
                ax.set_axis_off()
            ax.set_title(f"{backend}, {title}: fitted T", fontsize=9)
    fig.suptitle(textwrap.fill("The temperature each run fits on its validation logits (T > 1: over-confident, "
                               "T < 1: under-confident)", int(width * 11), break_on_hyphens=False), fontsize=11)
    path_legend(fig, {r["loss_path"] for _, rows in conditions for r in rows})
    fig.tight_layout(rect=(0, legend_room(fig), 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _probe_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with csv_path.open() as handle:
        return [{"dtype": r["dtype"], "loss": r["loss"], "gap": float(r["gap"]), "rel_error": float(r["rel_error"])}
                for r in csv.DictReader(handle)]


def write_figures(findings: dict, out: Path, img_dir: Path) -> list[Path]:
    """The PNGs into `img_dir`; also as images in TensorBoard under `out`/findings."""
    img_dir.mkdir(parents=True, exist_ok=True)
    groups, backends = findings["groups"], findings["backends"]
    made = []
    specs = [
        ("findings_stress.png", "stress", "Under stress (logits x300), float32: what each formulation reaches",
         [("test_exact_ce", "test exact CE (log)", True), ("test_accuracy", "test accuracy", False)]),
        ("findings_ordinary.png", "ordinary", "No stress, float32: test accuracy, mean +- std over seeds",
         [("test_accuracy", "test accuracy", False)]),
        ("findings_precision.png", "precision", "Under stress, mixed precision: test exact CE",
         [("test_exact_ce", "test exact CE (log)", True)]),
    ]
    for name, group, title, panels in specs:
        rows = [g for g in groups if g["group"] == group]
        if rows:
            bar_figure(rows, backends, img_dir / name, title, panels)
            made.append(img_dir / name)
    if findings["probe"]:
        probe_figure(out, backends, findings["paths"], img_dir / "findings_probe.png")
        made.append(img_dir / "findings_probe.png")
    if calibration_figure(groups, backends, img_dir / "findings_calibration.png"):
        made.append(img_dir / "findings_calibration.png")
    from keras_loss_recipes.runtime.event_files import summary_writer

    with summary_writer(out / "findings") as writer:
        for png in made:
            writer.png(f"findings/{png.stem}", png)
    return made
