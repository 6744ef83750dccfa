"""One colour per loss path, for every figure that shows runs: the path is visible without reading labels."""
from __future__ import annotations

PATH_COLORS = {
    "fused_logits": "#2ca02c", "rescued_softmax": "#1f77b4", "clipped_probabilities": "#ff7f0e",
    "naive": "#d62728", "logits_as_probabilities": "#9467bd", "double_softmax": "#8c564b",
    # The sigmoid family's own two: its rescue and its double activation, beside their softmax kin's colours.
    "rescued_sigmoid": "#17becf", "double_sigmoid": "#e377c2", "unknown": "#7f7f7f",
}


def path_color(path: str | None) -> str:
    """The colour of a measured loss path ("a/b" for a group with several: the first)."""
    return PATH_COLORS.get((path or "unknown").split("/")[0], PATH_COLORS["unknown"])


def path_legend(fig, paths) -> None:
    """A legend of the paths shown, centred below the axes (keep the figure's bottom free for it)."""
    from matplotlib.patches import Patch

    # "-" or None: a group with no measured path (all its runs failed) has no colour to explain.
    measured = {q.split("/")[0] for q in paths if q and q != "-"}
    shown = [p for p in PATH_COLORS if p in measured or (p == "unknown" and measured - set(PATH_COLORS))]
    if not shown:
        return
    fig.legend(handles=[Patch(color=PATH_COLORS[p], label=p) for p in shown], title="colour: the measured loss path",
               loc="lower center", ncol=min(len(shown), 4), frameon=False, bbox_to_anchor=(0.5, 0.0))


def legend_room(fig) -> float:
    """The bottom fraction of the figure to keep free for the path legend (about 0.9 inch)."""
    return min(0.4, 0.9 / fig.get_size_inches()[1])
