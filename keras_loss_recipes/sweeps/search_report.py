"""The report of a search (e.g. `hparams_search=optuna`): trials ranked by the objective, the best, the progress.

The objective is the validation figure `optimized_metric` names (by default the validation
accuracy), what train.py returns to the sweeper (keras_loss_recipes/reporting/objective.py).
    comparison.md    what was searched, the best trial's values (to the digits
                     that matter, `search_precision`) as overrides to paste, and
                     every trial ranked best first; trials without an objective last
    comparison.png   the objective of each trial and the best so far, in trial order
A trial is a job of the sweep, numbered as Hydra launched it (`hydra.job.num`).
"""
from __future__ import annotations

import math
from pathlib import Path

from keras_loss_recipes.sweeps.search_precision import RESOLUTION, format_value, parse_space
from keras_loss_recipes.sweeps.record import Search
from keras_loss_recipes.runtime import atomic

def has_objective(run: dict, search: Search) -> bool:
    value = run.get(search.objective.key)
    return isinstance(value, (int, float)) and math.isfinite(value)


def ranked(runs: list[dict], search: Search) -> list[dict]:
    """Best first; trials without an objective (failed, or NaN) last, in trial order."""
    sign, key = -1 if search.maximize else 1, search.objective.key
    scored = sorted((r for r in runs if has_objective(r, search)), key=lambda r: (sign * r[key], _order(r)))
    return scored + sorted((r for r in runs if not has_objective(r, search)), key=_order)


def _order(run: dict):
    return (run.get("job") is None, run.get("job") or 0, run["run"])


def progress(runs: list[dict], search: Search) -> list[tuple[int, float, float]]:
    """(trial, objective, best so far) in trial order, for the trials that have an objective."""
    better, key = max if search.maximize else min, search.objective.key
    points, best = [], None
    for run in sorted((r for r in runs if has_objective(r, search) and r.get("job") is not None), key=_order):
        best = run[key] if best is None else better(best, run[key])
        points.append((run["job"], run[key], best))
    return points


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key (`learning_rate`), the whole key where that is ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _num(value, digits=4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _trial(run: dict) -> str:
    return "?" if run.get("job") is None else str(run["job"])


class SearchReport:
    """The ranked trials of one search, with each searched value shown to the digits that matter."""

    def __init__(self, runs: list[dict], search: Search, keys: list[str]):
        self.search, self.keys = search, keys
        self.objective = search.objective
        self.trials = ranked(runs, search)
        spaces = {k: parse_space(k, search.spaces.get(k)) for k in keys}
        self.values = [{k: format_value(r["flat_config"].get(k), spaces[k]) for k in keys} for r in self.trials]
        self.best = self.trials[0] if self.trials and has_objective(self.trials[0], search) else None

    def best_overrides(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values[0].items()) if self.best else ""

    def best_line(self) -> str:
        if self.best is None:
            return f"no trial finished with a {self.objective.name}"
        return (f"best: trial {_trial(self.best)}, {self.objective.name} {_num(self.best[self.objective.key])} "
                f"(test accuracy {_num(self.best.get('test_accuracy'))}): {self.best_overrides()}")

    def rows(self) -> list[list[str]]:
        return [[str(rank), _trial(r), str(r.get("status", "?")), _num(r.get(self.objective.key)), _num(r.get("test_accuracy")),
                 _num(r.get("test_exact_ce")), *values.values()]
                for rank, (r, values) in enumerate(zip(self.trials, self.values), start=1)]

    def header(self) -> list[str]:
        return ["rank", "trial", "status", self.objective.column, "test_acc", "test_CE", *short_names(self.keys).values()]

    def text_table(self) -> str:
        """The end-of-sweep summary: fixed-width columns, no run directory names."""
        table = [self.header(), *self.rows()]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip() for row in table)

    def markdown_table(self) -> str:
        lines = ["| " + " | ".join(self.header()) + " |", "|" + "---|" * len(self.header())]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines) + "\n"

    def markdown(self, sweep_dir: Path) -> str:
        spaces = ", ".join(f"`{k}` {self.search.spaces[k]}" for k in self.keys if k in self.search.spaces)
        name = self.objective.name
        best = (f"**Best: trial {_trial(self.best)}**, {name} {_num(self.best[self.objective.key])} "
                f"(test accuracy {_num(self.best.get('test_accuracy'))}, test exact CE "
                f"{_num(self.best.get('test_exact_ce'))}), run `{self.best['run']}`:\n\n"
                f"    {self.best_overrides()}\n\n") if self.best else f"No trial finished with a {name}.\n\n"
        return (
            f"# Search of {len(self.trials)} trials in {sweep_dir}\n\n"
            f"{self.search.sweeper} set to {self.search.direction} the {name} that train.py returns "
            f"(`optimized_metric={self.objective.key}`)"
            + (f", over {spaces}" if spaces else "") + ".\n\n" + best +
            f"Values are shown to {RESOLUTION:.0%} of each searched range (of its logarithm on a log scale), "
            "the steps the search tells apart; comparison.csv has them in full. Trials are ranked best first; "
            f"trials without a {name} (failed) come last. comparison.png: the {name} of "
            "each trial and the best so far.\n\n" + self.markdown_table()
        )


def plot_progress(points: list[tuple[int, float, float]], failed: list[int], search: Search, path: Path) -> None:
    """The objective of each trial (dots) and the best so far (a step line), in trial order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    if points:
        trials, values, best = zip(*points)
        ax.plot(trials, values, "o", color="#1f77b4", label="trial", zorder=3)
        ax.step(trials, best, where="post", color="#2ca02c", lw=2, label="best so far")
    if failed:
        # No objective to place them by: marked along the bottom edge.
        ax.plot(failed, [0.03] * len(failed), "x", color="#d62728", ms=8, transform=ax.get_xaxis_transform(),
                label=f"no {search.objective.name} (failed)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(search.objective.name)
    ax.set_title(f"{search.sweeper}: {search.direction} {search.objective.name}", fontsize=10)
    ax.grid(alpha=0.3)
    if points or failed:
        ax.legend(fontsize=8, loc="lower right" if search.maximize else "upper right")
    with atomic.replacing(path) as partial:
        fig.savefig(partial, dpi=100)
    plt.close(fig)


def write_search_report(sweep_dir: Path, runs: list[dict], search: Search, keys: list[str]) -> dict:
    """comparison.md and comparison.png of a search; the texts the sweep prints."""
    sweep_dir = Path(sweep_dir)
    report = SearchReport(runs, search, keys)
    atomic.write_text(sweep_dir / "comparison.md", report.markdown(sweep_dir))
    failed = sorted(r["job"] for r in runs if not has_objective(r, search) and r.get("job") is not None)
    plot_progress(progress(runs, search), failed, search, sweep_dir / "comparison.png")
    return {"kind": "search", "runs": runs, "trials": report.trials, "table": report.markdown_table(),
            "summary": report.text_table(), "best": report.best_line(), "objective": search.objective.name}
