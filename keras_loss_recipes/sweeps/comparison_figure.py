"""comparison.png of a grid sweep: each group's test figures and validation curve, drawn to be read at a glance.

The drawing decisions, each a function of its own (tests/test_sweeps.py checks them on made-up numbers):
    ties     groups whose figures differ by less than the resolution are drawn at one value, and labelled
             "tied": the resolution of a group is its own spread (the std over its ok runs' seeds), and at
             least RELATIVE_RESOLUTION of its value (all that a group of one run has); the figure says so
    scale    a log axis only where the values span more than LOG_SPAN (then dots: a bar's length on a log
             axis means nothing); otherwise bars from 0
    ticks    plain numbers (no offset, no `1.84833 x 10^0`), whole epochs
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from keras_loss_recipes.reporting.palette import legend_room, path_color, path_legend
from keras_loss_recipes.runtime import atomic

RELATIVE_RESOLUTION = 1e-6
LOG_SPAN = 10.0  # max / min of the values above which the axis is logarithmic
RESOLUTION_NOTE = f"values closer than the std over seeds (at least {RELATIVE_RESOLUTION:g} × the value) drawn equal"
LABEL_DIGITS = (4, 10)  # significant digits of the value labels: the fewest in this range that tell ties apart


def resolution(mean: float, std: float | None) -> float:
    """How far apart two figures must be to be drawn apart: the group's spread over seeds, or a relative floor."""
    return max(std or 0.0, RELATIVE_RESOLUTION * abs(mean))


def ties(pairs: list[tuple]) -> list[int | None]:
    """A tie number for each (mean, std) pair, None where there is no mean; pairs of one number are drawn as
    equal. Taken smallest first: a tie holds the pairs within the resolution of its smallest member (the larger
    of the two resolutions), so a chain of small steps never joins values far apart."""
    order = sorted((i for i, (mean, _) in enumerate(pairs) if mean is not None), key=lambda i: pairs[i][0])
    tie_of: list[int | None] = [None] * len(pairs)
    first, number = None, -1
    for i in order:
        mean, std = pairs[i]
        if first is None or mean - pairs[first][0] > max(resolution(*pairs[first]), resolution(mean, std)):
            first, number = i, number + 1
        tie_of[i] = number
    return tie_of


def drawn_values(pairs: list[tuple]) -> tuple[list[float | None], list[int | None]]:
    """The value each pair is drawn at (its tie's mean) and its tie number."""
    tie_of = ties(pairs)
    levels = {t: statistics.fmean(pairs[i][0] for i in range(len(pairs)) if tie_of[i] == t)
              for t in set(tie_of) - {None}}
    return [None if t is None else levels[t] for t in tie_of], tie_of


def value_labels(drawn: list[float | None], tie_of: list[int | None]) -> list[str]:
    """Each drawn value with the fewest significant digits (LABEL_DIGITS) that tell different ties apart;
    "(tied)" where a tie holds several groups."""
    levels = sorted({v for v in drawn if v is not None})
    digits = next((d for d in range(*LABEL_DIGITS) if len({f"{v:.{d}g}" for v in levels}) == len(levels)),
                  LABEL_DIGITS[1])
    sizes = {t: tie_of.count(t) for t in set(tie_of) - {None}}
    return ["" if v is None else f"{v:#.{digits}g}" + (" (tied)" if sizes[t] > 1 else "")
            for v, t in zip(drawn, tie_of)]


def use_log_scale(values) -> bool:
    """Only where the values are all positive and span more than LOG_SPAN: else a linear axis from 0."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 2 or min(values) <= 0:
        return False
    return max(values) / min(values) > LOG_SPAN


def plain_number(value: float, _position=None) -> str:
    """A tick label as a number is written: `0.5`, `200`, `1e-05`; never an offset or a power of ten."""
    return f"{value:g}"


def integer_ticks(axis) -> None:
    """Whole numbers only on `axis` (epochs, trials)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def scale_axis(ax, lows: list[float], highs: list[float], log: bool) -> None:
    """The value axis of a panel: room on the right for the labels, readable ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if log:
        ax.set_xscale("log")
        low, high = math.log10(min(lows)), math.log10(max(highs))
        decades = high - low
        ax.set_xlim(10 ** (low - 0.1 * decades - 0.05), 10 ** (high + 0.3 * decades + 0.1))
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, max(highs, default=1.0) * 1.4 or 1.0)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))  # 0.2, not 0.15
    ax.xaxis.set_major_formatter(FuncFormatter(plain_number))


def _wrapped(group: str) -> str:
    """One `key=value` a line: labels of several long keys on one line leave no room for the axes."""
    return group.replace(", ", "\n")


def _outcome_note(row: dict) -> str:
    if row["ok"] == row["runs"]:
        return ""
    counts = f"{row['diverged']} diverged, {row['failed']} failed"
    return f"; {counts}" if row["ok"] else f"no ok run: {counts}"


def value_panel(ax, rows: list[dict], key: str, title: str, log_allowed: bool) -> None:
    """One figure per group: bars from 0 (dots on a log axis), ties drawn equal, each labelled."""
    pairs = [r[key] for r in rows]
    drawn, tie_of = drawn_values(pairs)
    log = log_allowed and use_log_scale(drawn)
    stds = [(std or 0.0) if value is not None else 0.0 for value, (_, std) in zip(drawn, pairs)]
    ypos = list(range(len(rows)))
    colors = [path_color(r["loss_path"]) for r in rows]
    shown = [i for i in ypos if drawn[i] is not None]
    if log:
        ax.scatter([drawn[i] for i in shown], shown, c=[colors[i] for i in shown], s=60, zorder=3)
    else:
        ax.barh(shown, [drawn[i] for i in shown], color=[colors[i] for i in shown])
    spread = [i for i in shown if stds[i] > 0]  # no error bar where there is no spread: a cap alone reads as one
    if spread:
        ax.errorbar([drawn[i] for i in spread], spread, xerr=[stds[i] for i in spread], fmt="none", ecolor="black",
                    capsize=3, zorder=2)
    # An error bar reaching below 0 has no place on a log axis: the axis starts by the value itself then.
    lows = [drawn[i] - stds[i] if drawn[i] - stds[i] > 0 or not log else drawn[i] for i in shown]
    scale_axis(ax, lows or [1.0], [drawn[i] + stds[i] for i in shown] or [1.0], log)
    for y, (row, label) in enumerate(zip(rows, value_labels(drawn, tie_of))):
        note = _outcome_note(row)
        if drawn[y] is None:  # nothing drawn: the note at the axis's left edge
            ax.annotate(note, (0, y), xycoords=("axes fraction", "data"), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8, color="tab:red")
        else:  # beside the bar's end, past its error bar
            ax.annotate(label + note, (drawn[y] + stds[y], y), xytext=(5, 0), textcoords="offset points",
                        va="center", fontsize=8, color="tab:red" if note else "black")
    ax.set_yticks(ypos, [_wrapped(r["group"]) for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first group on top
    ax.set_title(f"{title}\n(ok runs, mean ± std; {'log' if log else 'linear'} scale)", fontsize=10)
    ax.set_xlabel(RESOLUTION_NOTE.replace(" (", "\n("), fontsize=7)


def mean_curve(curves: list[list[float]]) -> list[tuple[float, float]]:
    """(mean, std) per epoch over the runs' curves, as long as the shortest; [] where there is none."""
    curves = [c for c in curves if c]
    if not curves:
        return []
    epochs = [[c[e] for c in curves] for e in range(min(len(c) for c in curves))]
    return [(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for v in epochs]


def same_as_earlier(curves: list[list[tuple[float, float]]]) -> list[int | None]:
    """For each curve, the first earlier one it equals within the resolution at every epoch (it hides behind
    that one on the figure); None where there is none."""
    def same(a, b) -> bool:
        return len(a) == len(b) and all(abs(ma - mb) <= max(resolution(ma, sa), resolution(mb, sb))
                                        for (ma, sa), (mb, sb) in zip(a, b))

    return [next((j for j in range(i) if curves[j] and same(curves[j], curve)), None) if curve else None
            for i, curve in enumerate(curves)]


def curves_panel(ax, rows: list[dict]) -> None:
    """The mean validation accuracy per epoch of each group's ok runs; a curve drawn over an equal one says so."""
    curves = [mean_curve(r["val_curves"]) for r in rows]
    for i, (r, curve, under) in enumerate(zip(rows, curves, same_as_earlier(curves))):
        if curve:
            label = _wrapped(r["group"]) + ("" if under is None else f"\n(the same curve as {rows[under]['group']})")
            # Colour: the path; line style and marker: the group (groups can share a path).
            ax.plot(range(1, len(curve) + 1), [mean for mean, _ in curve], color=path_color(r["loss_path"]),
                    label=label, ls=["-", "--", "-.", ":"][i % 4], marker="osD^v<>"[i % 7], ms=4)
    ax.set_title("validation accuracy per epoch\n(mean over ok runs)", fontsize=10)
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.yaxis.set_major_formatter(plain_number)
    ax.grid(alpha=0.3)
    # Group names beside the curves, outside the axes: a legend inside would cover them.
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def draw(rows: list[dict]):
    """The figure: test accuracy and exact CE per group (coloured by loss path), validation accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines_per_label = max(_wrapped(r["group"]).count("\n") + 1 for r in rows)
    fig, axes = plt.subplots(1, 3, figsize=(18, 3.2 + 0.45 * len(rows) * lines_per_label))
    value_panel(axes[0], rows, "test_accuracy", "test accuracy", log_allowed=False)
    value_panel(axes[1], rows, "test_exact_ce", "test exact cross entropy", log_allowed=True)
    axes[1].tick_params(labelleft=False)  # the same rows as the first panel, whose labels name them
    curves_panel(axes[2], rows)
    path_legend(fig, {r["loss_path"] for r in rows})
    fig.tight_layout(rect=(0, legend_room(fig), 1, 1))
    return fig


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = draw(rows)
    with atomic.replacing(path) as partial:
        fig.savefig(partial, dpi=100, bbox_inches="tight")
    plt.close(fig)
